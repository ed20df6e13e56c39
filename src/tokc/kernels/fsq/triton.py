"""FSQ in one pass: codes and mixed-radix indices together; and indices back to codes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from tokc.kernels._dispatch import device_guard, interpreting, kernel_dtype, next_pow2
from tokc.kernels.fsq.reference import constants

try:  # CUDA's correctly rounded tanhf, the function torch.tanh calls on the GPU
    from triton.language.extra import libdevice
except ImportError:  # older Triton
    libdevice = None

# Exactness on a GPU (the reference is the spec; indices must match it): divisions are
# correctly rounded (div_rn, not the approximate divide `/` compiles to), multiply-adds are
# not fused (enable_fp_fusion=False at launch: torch rounds after each op), and tanh is
# libdevice's, as torch's. The interpreter (CPU) has no libdevice: there tanh is computed from
# exp, whose last bit may differ from torch.tanh, so an index can differ where the bounded value
# lies within an ulp of a .5 boundary (benchmarks/gpu_check.sh counts the mismatches on a GPU).
EXACT = {"enable_fp_fusion": False}


@triton.jit
def _round_half_even(x):
    f = tl.floor(x)
    diff = x - f
    odd = (f - 2.0 * tl.floor(f * 0.5)) != 0.0
    up = (diff > 0.5) | ((diff == 0.5) & odd)
    return tl.where(up, f + 1.0, f)


@triton.jit
def _tanh(x, LIBDEVICE: tl.constexpr):
    if LIBDEVICE:
        return libdevice.tanh(x)
    e = tl.exp(-2.0 * tl.abs(x))
    t = tl.math.div_rn(1.0 - e, 1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _fsq_quantize_kernel(
    z_ptr, codes_ptr, idx_ptr, half_l_ptr, offset_ptr, shift_ptr, hw_ptr, basis_ptr,
    N, D, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, LIBDEVICE: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_D)
    row_ok = rows < N
    col_ok = cols < D
    m = row_ok[:, None] & col_ok[None, :]
    offs = rows[:, None].to(tl.int64) * D + cols[None, :]
    z = tl.load(z_ptr + offs, mask=m, other=0.0).to(tl.float32)
    half_l = tl.load(half_l_ptr + cols, mask=col_ok, other=1.0)
    offset = tl.load(offset_ptr + cols, mask=col_ok, other=0.0)
    shift = tl.load(shift_ptr + cols, mask=col_ok, other=0.0)
    hw = tl.load(hw_ptr + cols, mask=col_ok, other=1.0)
    basis = tl.load(basis_ptr + cols, mask=col_ok, other=0)
    bounded = _tanh(z + shift[None, :], LIBDEVICE) * half_l[None, :] - offset[None, :]
    q = _round_half_even(bounded)
    hw2 = q * 0.0 + hw[None, :]
    tl.store(codes_ptr + offs, tl.math.div_rn(q, hw2).to(codes_ptr.dtype.element_ty), mask=m)
    digits = (q + hw[None, :]).to(tl.int64)
    digits = tl.where(m, digits, 0)
    tl.store(idx_ptr + rows, tl.sum(digits * basis[None, :], axis=1), mask=row_ok)


@triton.jit
def _fsq_codes_kernel(
    idx_ptr, codes_ptr, levels_ptr, basis_ptr, hw_ptr,
    N, D, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_D)
    row_ok = rows < N
    col_ok = cols < D
    m = row_ok[:, None] & col_ok[None, :]
    idx = tl.load(idx_ptr + rows, mask=row_ok, other=0).to(tl.int64)
    lv = tl.load(levels_ptr + cols, mask=col_ok, other=1)
    basis = tl.load(basis_ptr + cols, mask=col_ok, other=1)
    hw = tl.load(hw_ptr + cols, mask=col_ok, other=1.0)
    digits = (idx[:, None] // basis[None, :]) % lv[None, :]
    centred = digits.to(tl.float32) - hw[None, :]
    codes = tl.math.div_rn(centred, centred * 0.0 + hw[None, :])
    tl.store(codes_ptr + rows[:, None].to(tl.int64) * D + cols[None, :],
             codes.to(codes_ptr.dtype.element_ty), mask=m)


def _block_n(n: int, d: int) -> int:
    cap = 1024 if interpreting() else 128
    return max(16, min(cap, next_pow2(n), 4096 // next_pow2(d)))


def fsq_quantize(z: torch.Tensor, levels: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    if z.shape[-1] != len(levels):
        raise ValueError(f"z's last dim {z.shape[-1]} != len(levels) {len(levels)}")
    k = constants(levels, z.device)
    zk = kernel_dtype(z).reshape(-1, len(levels)).contiguous()
    n, d = zk.shape
    codes = torch.empty_like(zk)
    idx = torch.empty(n, dtype=torch.int64, device=z.device)
    if n:
        bn = _block_n(n, d)
        with device_guard(zk):
            _fsq_quantize_kernel[(triton.cdiv(n, bn),)](
                zk, codes, idx, k["half_l"], k["offset"], k["shift"], k["half_width"], k["basis"],
                n, d, BLOCK_N=bn, BLOCK_D=next_pow2(d),
                LIBDEVICE=libdevice is not None and not interpreting(), **EXACT)
    return codes.to(z.dtype).reshape(z.shape), idx.reshape(z.shape[:-1])


def indices_to_codes(indices: torch.Tensor, levels: Sequence[int], dtype=torch.float32) -> torch.Tensor:
    k = constants(levels, indices.device)
    idx = indices.reshape(-1).to(torch.int64).contiguous()
    n, d = idx.numel(), len(levels)
    kdtype = torch.float32 if dtype == torch.bfloat16 else dtype
    codes = torch.empty(n, d, dtype=kdtype, device=indices.device)
    if n:
        bn = _block_n(n, d)
        with device_guard(idx):
            _fsq_codes_kernel[(triton.cdiv(n, bn),)](
                idx, codes, k["levels"], k["basis"], k["half_width"], n, d,
                BLOCK_N=bn, BLOCK_D=next_pow2(d), **EXACT)
    return codes.to(dtype).reshape(*indices.shape, d)
