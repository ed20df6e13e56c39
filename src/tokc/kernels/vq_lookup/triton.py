"""Fused distance + argmin over K tiles (never builds N×K), and the codebook gather."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tokc.kernels._dispatch import device_guard, interpreting, kernel_dtype, next_pow2
from tokc.kernels.vq_lookup.reference import prepare_codebook


@triton.jit
def _vq_lookup_kernel(
    x_ptr, c_ptr, bias_ptr, out_ptr,
    N, K, D, stride_x, stride_c,
    SCALE: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    best = tl.full((BLOCK_N,), float("inf"), tl.float32)
    best_idx = tl.zeros((BLOCK_N,), tl.int64)
    offs_k = tl.arange(0, BLOCK_K)
    offs_d = tl.arange(0, BLOCK_D)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + offs_k
        k_ok = ks < K
        acc = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
        for d0 in range(0, D, BLOCK_D):
            ds = d0 + offs_d
            d_ok = ds < D
            xt = tl.load(x_ptr + rows[:, None].to(tl.int64) * stride_x + ds[None, :],
                         mask=row_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
            ct = tl.load(c_ptr + ks[None, :].to(tl.int64) * stride_c + ds[:, None],
                         mask=k_ok[None, :] & d_ok[:, None], other=0.0).to(tl.float32)
            acc += tl.dot(xt, ct, input_precision="ieee")
        bias = tl.load(bias_ptr + ks, mask=k_ok, other=0.0)
        dist = bias[None, :] - SCALE * acc
        dist = tl.where(k_ok[None, :], dist, float("inf"))
        tile_min = tl.min(dist, axis=1)
        # lowest index among the tile's minima
        cand = tl.where(dist == tile_min[:, None], ks[None, :], K)
        tile_idx = tl.min(cand, axis=1).to(tl.int64)
        better = tile_min < best  # strict: an equal later tile keeps the earlier index
        best_idx = tl.where(better, tile_idx, best_idx)
        best = tl.where(better, tile_min, best)
    tl.store(out_ptr + rows, best_idx, mask=row_ok)


@triton.jit
def _gather_kernel(idx_ptr, c_ptr, out_ptr, N, D, stride_c,
                   BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    row_ok = rows < N
    m = row_ok[:, None] & (cols[None, :] < D)
    idx = tl.load(idx_ptr + rows, mask=row_ok, other=0).to(tl.int64)
    v = tl.load(c_ptr + idx[:, None] * stride_c + cols[None, :], mask=m)
    tl.store(out_ptr + rows[:, None].to(tl.int64) * D + cols[None, :], v, mask=m)


def _blocks(n: int, k: int, d: int) -> tuple[int, int, int]:
    if interpreting():  # fewer, larger tiles: the interpreter pays per program and per step
        return min(64, max(16, next_pow2(n))), min(256, max(16, next_pow2(k))), min(128, max(16, next_pow2(d)))
    return 64, 64, min(64, max(16, next_pow2(d)))


def vq_lookup(x: torch.Tensor, codebook: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    if x.ndim != 2 or codebook.ndim != 2 or x.shape[1] != codebook.shape[1]:
        raise ValueError(f"x (N, D) and codebook (K, D) expected, got {tuple(x.shape)}, {tuple(codebook.shape)}")
    c, bias = prepare_codebook(codebook, metric)
    x = kernel_dtype(x).contiguous()
    c = c.contiguous()
    n, d = x.shape
    k = c.shape[0]
    out = torch.empty(n, dtype=torch.int64, device=x.device)
    if n == 0:
        return out
    if k == 0:
        raise ValueError("empty codebook")
    bn, bk, bd = _blocks(n, k, d)
    with device_guard(x):
        _vq_lookup_kernel[(triton.cdiv(n, bn),)](
            x, c, bias, out, n, k, d, x.stride(0), c.stride(0),
            SCALE=2.0 if metric == "euclidean" else 1.0,
            BLOCK_N=bn, BLOCK_K=bk, BLOCK_D=bd,
        )
    return out


def indices_to_codes(indices: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    shape = indices.shape
    idx = indices.reshape(-1).contiguous()
    cb = kernel_dtype(codebook).contiguous()
    n, d = idx.numel(), cb.shape[1]
    out = torch.empty(n, d, dtype=cb.dtype, device=cb.device)
    if n:
        bn, bd = 64, min(128, next_pow2(d))
        with device_guard(cb):
            _gather_kernel[(triton.cdiv(n, bn), triton.cdiv(d, bd))](
                idx, cb, out, n, d, cb.stride(0), BLOCK_N=bn, BLOCK_D=bd)
    return out.to(codebook.dtype).reshape(*shape, d)
