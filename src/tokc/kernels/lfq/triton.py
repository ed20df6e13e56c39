"""Sign quantization + LSB-first packing in one pass; and the unpacking back to ±1 codes."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tokc.kernels._dispatch import device_guard, interpreting, kernel_dtype, next_pow2
from tokc.kernels.lfq.reference import _check


@triton.jit
def _lfq_quantize_kernel(z_ptr, codes_ptr, idx_ptr, R, G,
                         BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)  # one row = one group
    cols = tl.arange(0, BLOCK_G)
    row_ok = rows < R
    m = row_ok[:, None] & (cols[None, :] < G)
    offs = rows[:, None].to(tl.int64) * G + cols[None, :]
    z = tl.load(z_ptr + offs, mask=m, other=0.0)
    bit = (z > 0) & m
    tl.store(codes_ptr + offs, tl.where(bit, 1.0, -1.0).to(codes_ptr.dtype.element_ty), mask=m)
    packed = tl.sum(bit.to(tl.int64) << cols[None, :].to(tl.int64), axis=1)
    tl.store(idx_ptr + rows, packed, mask=row_ok)


@triton.jit
def _lfq_codes_kernel(idx_ptr, codes_ptr, R, G, BLOCK_R: tl.constexpr, BLOCK_G: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_G)
    row_ok = rows < R
    m = row_ok[:, None] & (cols[None, :] < G)
    idx = tl.load(idx_ptr + rows, mask=row_ok, other=0).to(tl.int64)
    bit = (idx[:, None] >> cols[None, :].to(tl.int64)) & 1
    tl.store(codes_ptr + rows[:, None].to(tl.int64) * G + cols[None, :],
             (bit * 2 - 1).to(codes_ptr.dtype.element_ty), mask=m)


def _block_r(r: int, g: int) -> int:
    cap = 1024 if interpreting() else 128
    return max(16, min(cap, next_pow2(r), 8192 // next_pow2(g)))


def lfq_quantize(z: torch.Tensor, group_bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    _check(z.shape[-1], group_bits)
    zk = kernel_dtype(z).contiguous().reshape(-1, group_bits)
    r = zk.shape[0]
    codes = torch.empty_like(zk)
    idx = torch.empty(r, dtype=torch.int64, device=z.device)
    if r:
        br = _block_r(r, group_bits)
        with device_guard(zk):
            _lfq_quantize_kernel[(triton.cdiv(r, br),)](
                zk, codes, idx, r, group_bits, BLOCK_R=br, BLOCK_G=next_pow2(group_bits))
    groups = z.shape[-1] // group_bits
    return codes.to(z.dtype).reshape(z.shape), idx.reshape(*z.shape[:-1], groups)


def indices_to_codes(indices: torch.Tensor, group_bits: int = 8, dtype=torch.float32) -> torch.Tensor:
    idx = indices.reshape(-1).to(torch.int64).contiguous()
    r = idx.numel()
    kdtype = torch.float32 if dtype == torch.bfloat16 else dtype
    codes = torch.empty(r, group_bits, dtype=kdtype, device=indices.device)
    if r:
        br = _block_r(r, group_bits)
        with device_guard(idx):
            _lfq_codes_kernel[(triton.cdiv(r, br),)](
                idx, codes, r, group_bits, BLOCK_R=br, BLOCK_G=next_pow2(group_bits))
    return codes.to(dtype).reshape(*indices.shape[:-1], indices.shape[-1] * group_bits)
