"""Group-wise sign quantization (WeTok-style LFQ): ±1 codes, LSB-first indices, both directions."""

from __future__ import annotations

import torch

from tokc.kernels._dispatch import check_indices, choose, triton_module
from tokc.kernels.lfq import reference

__all__ = ["lfq_quantize", "lfq_codes_to_indices", "lfq_indices_to_codes"]


def lfq_quantize(z: torch.Tensor, group_bits: int = 8,
                 impl: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """z (..., G·group_bits) -> (codes ±1 like z, indices (..., G) int64)."""
    if choose(impl, z) == "triton":
        return triton_module("lfq").lfq_quantize(z, group_bits)
    return reference.lfq_quantize(z, group_bits)


def lfq_codes_to_indices(codes: torch.Tensor, group_bits: int = 8) -> torch.Tensor:
    """Pack ±1 codes to LSB-first group indices (plain torch)."""
    return reference.codes_to_indices(codes, group_bits)


def lfq_indices_to_codes(indices: torch.Tensor, group_bits: int = 8, dtype=torch.float32,
                         impl: str | None = None) -> torch.Tensor:
    """indices (..., G), each in [0, 2**group_bits) -> codes (..., G·group_bits) of ±1."""
    check_indices(indices, 1 << group_bits, "LFQ")
    if choose(impl, indices) == "triton":
        return triton_module("lfq").indices_to_codes(indices, group_bits, dtype)
    return reference.indices_to_codes(indices, group_bits, dtype)
