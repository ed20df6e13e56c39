"""Finite scalar quantization (FlexTok-style): codes and mixed-radix indices, both directions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from tokc.kernels._dispatch import check_indices, choose, triton_module
from tokc.kernels.fsq import reference

__all__ = ["fsq_quantize", "fsq_codes_to_indices", "fsq_indices_to_codes"]


def fsq_quantize(z: torch.Tensor, levels: Sequence[int],
                 impl: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """z (..., len(levels)) -> (codes like z in [-1, 1], indices (...) int64)."""
    if choose(impl, z) == "triton":
        return triton_module("fsq").fsq_quantize(z, levels)
    return reference.fsq_quantize(z, levels)


def fsq_codes_to_indices(codes: torch.Tensor, levels: Sequence[int]) -> torch.Tensor:
    """Mixed-radix index of codes already on the grid (plain torch: a tiny op)."""
    return reference.codes_to_indices(codes, levels)


def fsq_indices_to_codes(indices: torch.Tensor, levels: Sequence[int], dtype=torch.float32,
                         impl: str | None = None) -> torch.Tensor:
    """indices (...) in [0, prod(levels)) -> codes (..., len(levels)) in [-1, 1]."""
    check_indices(indices, math.prod(int(v) for v in levels), "FSQ")
    if choose(impl, indices) == "triton":
        return triton_module("fsq").indices_to_codes(indices, levels, dtype)
    return reference.indices_to_codes(indices, levels, dtype)
