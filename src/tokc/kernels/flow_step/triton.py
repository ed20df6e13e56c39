"""The flow update fused into one pass over x (CFG), plus one reduction pass for APG."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tokc.kernels._dispatch import device_guard, interpreting, kernel_dtype
from tokc.kernels.flow_step.reference import scalars_from_sums


@triton.jit
def _apg_sums_kernel(vc_ptr, vu_ptr, part_ptr, per_sample, n_blocks, BLOCK: tl.constexpr):
    pid = tl.program_id(0)  # (sample, block) flattened on axis 0: axes 1 and 2 stop at 65,535
    b = pid // n_blocks
    blk = pid % n_blocks
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    ok = offs < per_sample
    base = b.to(tl.int64) * per_sample
    vc = tl.load(vc_ptr + base + offs, mask=ok, other=0.0).to(tl.float32)
    vu = tl.load(vu_ptr + base + offs, mask=ok, other=0.0).to(tl.float32)
    d = vc - vu
    out = part_ptr + (b.to(tl.int64) * n_blocks + blk) * 3
    tl.store(out, tl.sum(d * vc, axis=0))
    tl.store(out + 1, tl.sum(vc * vc, axis=0))
    tl.store(out + 2, tl.sum(d * d, axis=0))


@triton.jit
def _flow_step_kernel(
    x_ptr, vc_ptr, vu_ptr, xp_ptr, sk_ptr, out_ptr,
    total, per_sample, dt, w, eta,
    HAS_VU: tl.constexpr, HEUN: tl.constexpr, APG: tl.constexpr, BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < total
    x = tl.load(x_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    vc = tl.load(vc_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    if HAS_VU:
        vu = tl.load(vu_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        if APG:
            sample = offs // per_sample
            s = tl.load(sk_ptr + 2 * sample, mask=ok, other=1.0)
            k = tl.load(sk_ptr + 2 * sample + 1, mask=ok, other=0.0)
            v = vc + (w - 1.0) * s * ((vc - vu) - (1.0 - eta) * k * vc)
        else:
            v = vu + w * (vc - vu)
    else:
        v = vc
    if HEUN:
        xp = tl.load(xp_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        out = 0.5 * (x + xp) - (0.5 * dt) * v
    else:
        out = x - dt * v
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=ok)


def _block() -> int:
    return 4096 if interpreting() else 1024


def apg_sums_grid(batch: int, per_sample: int, block: int) -> tuple[tuple[int], int]:
    """(launch grid, blocks per sample) of the APG reduction: every program on axis 0 (up to
    2**31 - 1 programs; grid axes 1 and 2 stop at 65,535, which would cap a sample at 67 M
    elements)."""
    nb = triton.cdiv(per_sample, block)
    return (batch * nb,), nb


def flow_step(x, v_cond, v_uncond, dt: float, guidance: float, *, x_pred=None, mode: str = "cfg",
              apg_eta: float = 0.0, apg_norm_threshold: float = 0.0) -> torch.Tensor:
    xk = kernel_dtype(x).contiguous()
    vc = kernel_dtype(v_cond).contiguous()
    vu = kernel_dtype(v_uncond).contiguous() if v_uncond is not None else vc
    xp = kernel_dtype(x_pred).contiguous() if x_pred is not None else xk
    out = torch.empty_like(xk)
    total = xk.numel()
    if total == 0:
        return out.to(x.dtype)
    per_sample = total // x.shape[0] if x.ndim else total
    apg = mode == "apg" and v_uncond is not None
    block = _block()
    sk = torch.zeros(1, dtype=torch.float32, device=x.device)
    with device_guard(xk):
        if apg:
            b = x.shape[0]
            grid, nb = apg_sums_grid(b, per_sample, block)
            part = torch.empty(b, nb, 3, dtype=torch.float32, device=x.device)
            _apg_sums_kernel[grid](vc, vu, part, per_sample, nb, BLOCK=block)
            sums = part.sum(1)
            s, k = scalars_from_sums(sums[:, 0], sums[:, 1], sums[:, 2], apg_norm_threshold)
            sk = torch.stack([s, k], 1).contiguous()
        _flow_step_kernel[(triton.cdiv(total, block),)](
            xk, vc, vu, xp, sk, out, total, per_sample, float(dt), float(guidance), float(apg_eta),
            HAS_VU=v_uncond is not None, HEUN=x_pred is not None, APG=apg, BLOCK=block)
    return out.to(x.dtype)
