"""Group-wise sign quantization (WeTok-style LFQ) spec in plain torch.

z (..., G·group_bits): bit_j = z_j > 0 (zero maps to bit 0); codes = 2·bit − 1 (±1, z's dtype);
indices (..., G) int64 with group g's index = Σ_j bit_{g·group_bits + j} · 2^j (LSB first).
"""

from __future__ import annotations

import torch


def _check(dim: int, group_bits: int) -> None:
    if not 1 <= group_bits <= 62:
        raise ValueError(f"group_bits must be in [1, 62], got {group_bits}")
    if dim % group_bits:
        raise ValueError(f"last dim {dim} is not a multiple of group_bits={group_bits}")


def lfq_quantize(z: torch.Tensor, group_bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    _check(z.shape[-1], group_bits)
    bits = z > 0
    codes = torch.where(bits, 1.0, -1.0).to(z.dtype)
    return codes, _pack(bits, group_bits)


def _pack(bits: torch.Tensor, group_bits: int) -> torch.Tensor:
    g = bits.reshape(*bits.shape[:-1], -1, group_bits).to(torch.int64)
    # a constant, not ``ones << arange``: torch.onnx has no translation of an int64 shift
    weights = torch.tensor([1 << j for j in range(group_bits)], dtype=torch.int64, device=bits.device)
    return (g * weights).sum(-1)


def codes_to_indices(codes: torch.Tensor, group_bits: int = 8) -> torch.Tensor:
    _check(codes.shape[-1], group_bits)
    return _pack(codes > 0, group_bits)


def indices_to_codes(indices: torch.Tensor, group_bits: int = 8, dtype=torch.float32) -> torch.Tensor:
    shifts = torch.arange(group_bits, device=indices.device)
    bits = (indices.to(torch.int64)[..., None] >> shifts) & 1
    codes = (bits * 2 - 1).to(dtype)
    return codes.reshape(*indices.shape[:-1], indices.shape[-1] * group_bits)
