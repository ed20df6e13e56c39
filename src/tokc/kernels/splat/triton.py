"""Tiled Gaussian splatting: forward over pixel tiles with per-tile culling of Gaussian blocks
(Gaussians sorted by the tile of their centre so blocks are compact), backward over Gaussian
blocks visiting only the pixel tiles inside the block's cut-off box."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tokc.kernels._dispatch import device_guard, interpreting, next_pow2
from tokc.kernels.splat.reference import check, pixel_grid

_SLACK = 1e-5  # culling is conservative; the per-pixel test decides exactly


@triton.jit
def _gauss(px, py, mx, my, sx, sy, rho, valid, cutoff):
    """Weights (P, BM) of BM Gaussians at P pixels, plus the terms the backward needs."""
    dx = px[:, None] - mx[None, :]
    dy = py[:, None] - my[None, :]
    a = dx / sx[None, :]
    b = dy / sy[None, :]
    q = a * a - 2.0 * rho[None, :] * a * b + b * b
    d = 1.0 - rho * rho
    w = tl.exp(-q / (2.0 * d)[None, :])
    inside = (tl.abs(dx) <= cutoff * sx[None, :]) & (tl.abs(dy) <= cutoff * sy[None, :])
    w = tl.where(inside & valid[None, :], w, 0.0)
    return w, a, b, q, d


@triton.jit
def _load_params(mean_ptr, sig_ptr, rho_ptr, g, M):
    ok = g < M
    mx = tl.load(mean_ptr + 2 * g, mask=ok, other=0.0).to(tl.float32)
    my = tl.load(mean_ptr + 2 * g + 1, mask=ok, other=0.0).to(tl.float32)
    sx = tl.load(sig_ptr + 2 * g, mask=ok, other=1.0).to(tl.float32)
    sy = tl.load(sig_ptr + 2 * g + 1, mask=ok, other=1.0).to(tl.float32)
    rho = tl.load(rho_ptr + g, mask=ok, other=0.0).to(tl.float32)
    return mx, my, sx, sy, rho, ok


@triton.jit
def _splat_fwd_kernel(
    mean_ptr, sig_ptr, rho_ptr, feat_ptr, xs_ptr, ys_ptr, out_ptr,
    M, H, W, C, n_tiles_x, cutoff, slack,
    TILE_H: tl.constexpr, TILE_W: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
):
    tile = tl.program_id(0)
    ty0 = (tile // n_tiles_x) * TILE_H
    tx0 = (tile % n_tiles_x) * TILE_W
    p = tl.arange(0, TILE_H * TILE_W)
    iy = ty0 + p // TILE_W
    ix = tx0 + p % TILE_W
    pix_ok = (iy < H) & (ix < W)
    px = tl.load(xs_ptr + ix, mask=ix < W, other=0.0)
    py = tl.load(ys_ptr + iy, mask=iy < H, other=0.0)
    # the tile's extent in [-1, 1] coordinates
    tx_lo = tl.min(tl.where(pix_ok, px, float("inf")), axis=0)
    tx_hi = tl.max(tl.where(pix_ok, px, -float("inf")), axis=0)
    ty_lo = tl.min(tl.where(pix_ok, py, float("inf")), axis=0)
    ty_hi = tl.max(tl.where(pix_ok, py, -float("inf")), axis=0)
    cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = cs < C
    acc = tl.zeros((TILE_H * TILE_W, BLOCK_C), tl.float32)
    gs = tl.arange(0, BLOCK_M)
    for m0 in range(0, M, BLOCK_M):
        g = m0 + gs
        mx, my, sx, sy, rho, ok = _load_params(mean_ptr, sig_ptr, rho_ptr, g, M)
        rx = cutoff * sx * (1.0 + slack) + slack
        ry = cutoff * sy * (1.0 + slack) + slack
        hit = ok & (mx - rx <= tx_hi) & (mx + rx >= tx_lo) & (my - ry <= ty_hi) & (my + ry >= ty_lo)
        if tl.max(hit.to(tl.int32), axis=0) > 0:  # per-tile culling of the whole block
            w, a, b, q, d = _gauss(px, py, mx, my, sx, sy, rho, hit, cutoff)
            f = tl.load(feat_ptr + g[:, None].to(tl.int64) * C + cs[None, :],
                        mask=ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
            acc += tl.dot(w, f, input_precision="ieee")
    offs = (iy.to(tl.int64) * W + ix)[:, None] * C + cs[None, :]
    tl.store(out_ptr + offs, acc, mask=pix_ok[:, None] & c_ok[None, :])


@triton.jit
def _box(mx, my, sx, sy, ok, cutoff, slack, H, W):
    """Pixel-index range [lo, hi] (inclusive) covering the block's cut-off boxes."""
    hx = (W - 1) * 0.5
    hy = (H - 1) * 0.5
    rx = cutoff * sx * (1.0 + slack) + slack
    ry = cutoff * sy * (1.0 + slack) + slack
    x_lo = tl.min(tl.where(ok, tl.floor((mx - rx + 1.0) * hx) - 1.0, float("inf")), axis=0)
    x_hi = tl.max(tl.where(ok, tl.ceil((mx + rx + 1.0) * hx) + 1.0, -float("inf")), axis=0)
    y_lo = tl.min(tl.where(ok, tl.floor((my - ry + 1.0) * hy) - 1.0, float("inf")), axis=0)
    y_hi = tl.max(tl.where(ok, tl.ceil((my + ry + 1.0) * hy) + 1.0, -float("inf")), axis=0)
    x_lo = tl.minimum(tl.maximum(x_lo, 0.0), W - 1.0).to(tl.int32)
    x_hi = tl.minimum(tl.maximum(x_hi, 0.0), W - 1.0).to(tl.int32)
    y_lo = tl.minimum(tl.maximum(y_lo, 0.0), H - 1.0).to(tl.int32)
    y_hi = tl.minimum(tl.maximum(y_hi, 0.0), H - 1.0).to(tl.int32)
    return x_lo, x_hi, y_lo, y_hi


@triton.jit
def _tile_weights(ty0, tx0, p, TILE_W: tl.constexpr, y_hi, x_hi, xs_ptr, ys_ptr,
                  mx, my, sx, sy, rho, ok, cutoff):
    """Backward passes: the pixels of the tile at (ty0, tx0) inside the block's box, and the
    block's Gaussian weights there (zero outside the box)."""
    iy = ty0 + p // TILE_W
    ix = tx0 + p % TILE_W
    pix_ok = (iy <= y_hi) & (ix <= x_hi)
    px = tl.load(xs_ptr + ix, mask=pix_ok, other=0.0)
    py = tl.load(ys_ptr + iy, mask=pix_ok, other=0.0)
    w, a, b, q, d = _gauss(px, py, mx, my, sx, sy, rho, ok, cutoff)
    return iy, ix, pix_ok, tl.where(pix_ok[:, None], w, 0.0), a, b, q, d


@triton.jit
def _splat_bwd_params_kernel(
    mean_ptr, sig_ptr, rho_ptr, feat_ptr, xs_ptr, ys_ptr, gout_ptr,
    gmean_ptr, gsig_ptr, grho_ptr,
    M, H, W, C, cutoff, slack,
    TILE_H: tl.constexpr, TILE_W: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
):
    g = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    mx, my, sx, sy, rho, ok = _load_params(mean_ptr, sig_ptr, rho_ptr, g, M)
    x_lo, x_hi, y_lo, y_hi = _box(mx, my, sx, sy, ok, cutoff, slack, H, W)
    acc_mx = tl.zeros((BLOCK_M,), tl.float32)
    acc_my = tl.zeros((BLOCK_M,), tl.float32)
    acc_sx = tl.zeros((BLOCK_M,), tl.float32)
    acc_sy = tl.zeros((BLOCK_M,), tl.float32)
    acc_rho = tl.zeros((BLOCK_M,), tl.float32)
    p = tl.arange(0, TILE_H * TILE_W)
    cs0 = tl.arange(0, BLOCK_C)
    for ty0 in range(y_lo, y_hi + 1, TILE_H):
        for tx0 in range(x_lo, x_hi + 1, TILE_W):
            iy, ix, pix_ok, w, a, b, q, d = _tile_weights(
                ty0, tx0, p, TILE_W, y_hi, x_hi, xs_ptr, ys_ptr, mx, my, sx, sy, rho, ok, cutoff)
            gw = tl.zeros((TILE_H * TILE_W, BLOCK_M), tl.float32)
            for c0 in range(0, C, BLOCK_C):
                cs = c0 + cs0
                c_ok = cs < C
                go = tl.load(gout_ptr + (iy.to(tl.int64) * W + ix)[:, None] * C + cs[None, :],
                             mask=pix_ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
                ft = tl.load(feat_ptr + g[None, :].to(tl.int64) * C + cs[:, None],
                             mask=ok[None, :] & c_ok[:, None], other=0.0).to(tl.float32)
                gw += tl.dot(go, ft, input_precision="ieee")
            t = gw * w
            inv_d = 1.0 / d
            ga = (a - rho[None, :] * b) * inv_d[None, :]
            gb = (b - rho[None, :] * a) * inv_d[None, :]
            acc_mx += tl.sum(t * ga, axis=0)
            acc_my += tl.sum(t * gb, axis=0)
            acc_sx += tl.sum(t * ga * a, axis=0)
            acc_sy += tl.sum(t * gb * b, axis=0)
            acc_rho += tl.sum(t * (a * b * inv_d[None, :] - q * (rho * inv_d * inv_d)[None, :]), axis=0)
    tl.store(gmean_ptr + 2 * g, acc_mx / sx, mask=ok)
    tl.store(gmean_ptr + 2 * g + 1, acc_my / sy, mask=ok)
    tl.store(gsig_ptr + 2 * g, acc_sx / sx, mask=ok)
    tl.store(gsig_ptr + 2 * g + 1, acc_sy / sy, mask=ok)
    tl.store(grho_ptr + g, acc_rho, mask=ok)


@triton.jit
def _splat_bwd_feat_kernel(
    mean_ptr, sig_ptr, rho_ptr, xs_ptr, ys_ptr, gout_ptr, gfeat_ptr,
    M, H, W, C, cutoff, slack,
    TILE_H: tl.constexpr, TILE_W: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
):
    g = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = cs < C
    mx, my, sx, sy, rho, ok = _load_params(mean_ptr, sig_ptr, rho_ptr, g, M)
    x_lo, x_hi, y_lo, y_hi = _box(mx, my, sx, sy, ok, cutoff, slack, H, W)
    acc = tl.zeros((BLOCK_M, BLOCK_C), tl.float32)
    p = tl.arange(0, TILE_H * TILE_W)
    for ty0 in range(y_lo, y_hi + 1, TILE_H):
        for tx0 in range(x_lo, x_hi + 1, TILE_W):
            iy, ix, pix_ok, w, a, b, q, d = _tile_weights(
                ty0, tx0, p, TILE_W, y_hi, x_hi, xs_ptr, ys_ptr, mx, my, sx, sy, rho, ok, cutoff)
            go = tl.load(gout_ptr + (iy.to(tl.int64) * W + ix)[:, None] * C + cs[None, :],
                         mask=pix_ok[:, None] & c_ok[None, :], other=0.0).to(tl.float32)
            acc += tl.dot(tl.trans(w), go, input_precision="ieee")
    tl.store(gfeat_ptr + g[:, None].to(tl.int64) * C + cs[None, :], acc,
             mask=ok[:, None] & c_ok[None, :])


def _config(c: int, backward: bool = False) -> tuple[int, int, int, int, int]:
    """(TILE_H, TILE_W, BLOCK_M, BLOCK_C, num_warps). Untuned: no GPU was lent when this was
    written. The forward's accumulator is TILE_H*TILE_W x BLOCK_C float32 per program: 16x16
    pixels x 32 channels over 8 warps is 32 registers a thread (64 channels over 4 warps was
    128, which spills); wider features take more channel programs (grid axis 1). The backward
    keeps ~7 (pixels x Gaussians) temporaries live, so it gets smaller tiles on a GPU; the
    interpreter prefers few large steps. `register_report` gives n_regs / n_spills."""
    if interpreting():
        return 16, 16, 32, max(16, min(64, next_pow2(c))), 4
    block_c = max(16, min(32, next_pow2(c)))
    if backward:
        return 8, 8, 32, block_c, 4
    return 16, 16, 32, block_c, 8


def _sort_by_tile(means: torch.Tensor, height: int, width: int, tile_h: int, tile_w: int) -> torch.Tensor:
    """Order Gaussians by the pixel tile holding their centre so each block is compact."""
    ix = ((means[:, 0].float() + 1) * 0.5 * (width - 1) / tile_w).floor().clamp(-1, width // tile_w + 1)
    iy = ((means[:, 1].float() + 1) * 0.5 * (height - 1) / tile_h).floor().clamp(-1, height // tile_h + 1)
    return torch.argsort(iy * (width // tile_w + 3) + ix, stable=True)


def _forward(means, sigmas, rhos, features, height, width, cutoff):
    m, c = features.shape
    ys, xs = pixel_grid(height, width, features.device)
    out = torch.zeros(height, width, c, dtype=torch.float32, device=features.device)
    if m == 0 or c == 0 or height == 0 or width == 0:
        return out
    th, tw, bm, bc, warps = _config(c)
    ntx = triton.cdiv(width, tw)
    grid = (triton.cdiv(height, th) * ntx, triton.cdiv(c, bc))
    with device_guard(features):
        compiled = _splat_fwd_kernel[grid](
            means, sigmas, rhos, features, xs, ys, out, m, height, width, c, ntx, float(cutoff),
            _SLACK, TILE_H=th, TILE_W=tw, BLOCK_M=bm, BLOCK_C=bc, num_warps=warps)
    _last_launch["forward"] = compiled
    return out


def _backward(means, sigmas, rhos, features, grad_out, height, width, cutoff):
    m, c = features.shape
    ys, xs = pixel_grid(height, width, features.device)
    gm = torch.zeros(m, 2, dtype=torch.float32, device=features.device)
    gs = torch.zeros_like(gm)
    gr = torch.zeros(m, dtype=torch.float32, device=features.device)
    gf = torch.zeros(m, c, dtype=torch.float32, device=features.device)
    if m == 0 or c == 0 or height == 0 or width == 0:
        return gm, gs, gr, gf
    th, tw, bm, bc, warps = _config(c, backward=True)
    args = (m, height, width, c, float(cutoff), _SLACK)
    meta = dict(TILE_H=th, TILE_W=tw, BLOCK_M=bm, BLOCK_C=bc, num_warps=warps)
    with device_guard(features):
        _last_launch["backward_params"] = _splat_bwd_params_kernel[(triton.cdiv(m, bm),)](
            means, sigmas, rhos, features, xs, ys, grad_out, gm, gs, gr, *args, **meta)
        _last_launch["backward_features"] = _splat_bwd_feat_kernel[(triton.cdiv(m, bm), triton.cdiv(c, bc))](
            means, sigmas, rhos, xs, ys, grad_out, gf, *args, **meta)
    return gm, gs, gr, gf


_last_launch: dict = {}  # the compiled kernels of the last launches (None under the interpreter)


def register_report(channels: int = 64, gaussians: int = 512, size: int = 128) -> dict:
    """Registers and spills per thread of the forward and backward kernels at a channel count,
    from the compiled kernels (a GPU; the interpreter compiles nothing: None)."""
    gen = torch.Generator().manual_seed(0)
    dev = "cuda" if torch.cuda.is_available() and not interpreting() else "cpu"
    means = (torch.rand(gaussians, 2, generator=gen) * 2 - 1).to(dev).requires_grad_()
    sigmas = (torch.rand(gaussians, 2, generator=gen) * 0.05 + 0.01).to(dev)
    rhos = torch.zeros(gaussians, device=dev)
    feats = torch.randn(gaussians, channels, generator=gen).to(dev)
    splat(means, sigmas, rhos, feats, size, size).sum().backward()
    out = {}
    for name, k in _last_launch.items():
        out[name] = None if k is None else {"n_regs": getattr(k, "n_regs", None),
                                             "n_spills": getattr(k, "n_spills", None)}
    return out


def _prep(t: torch.Tensor) -> torch.Tensor:
    return t.float().contiguous()


class _Splat(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, sigmas, rhos, features, height, width, cutoff):
        th, tw, _, _, _ = _config(features.shape[1])
        order = _sort_by_tile(means.detach(), height, width, th, tw)
        p = [_prep(t.detach()[order]) for t in (means, sigmas, rhos, features)]
        out = _forward(*p, height, width, cutoff)
        ctx.save_for_backward(order, *p)
        ctx.meta = (height, width, cutoff)
        ctx.dtypes = (means.dtype, sigmas.dtype, rhos.dtype, features.dtype)
        return out.to(features.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        order, *p = ctx.saved_tensors
        height, width, cutoff = ctx.meta
        grads = _backward(*p, _prep(grad_out), height, width, cutoff)
        result = []
        for grad, dtype, needed in zip(grads, ctx.dtypes, ctx.needs_input_grad[:4]):
            if not needed:
                result.append(None)
                continue
            unsorted = torch.empty_like(grad)
            unsorted[order] = grad
            result.append(unsorted.to(dtype))
        return (*result, None, None, None)


def splat(means, sigmas, rhos, features, height: int, width: int, cutoff: float = 3.0) -> torch.Tensor:
    check(means, sigmas, rhos, features)
    return _Splat.apply(means, sigmas, rhos, features, int(height), int(width), float(cutoff))
