"""Finite scalar quantization (Mentzer et al. 2023, as FlexTok uses it) on :mod:`tokc.kernels.fsq`.

Levels L_i: bound tanh(z + shift)·half_l − offset, round half to even, codes = q / ⌊L_i/2⌋ in
[−1, 1]; index = Σ digit_i·Π_{j<i} L_j (first dimension least significant). No parameters.
Torch and the kernels are imported when a method runs, not with this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["LEVELS_64K", "FSQ"]

LEVELS_64K = (8, 8, 8, 5, 5, 5)  # the paper's levels for a 2^16 codebook: 64 000 codes (FlexTok's)


class FSQ:
    """A finite scalar quantizer over ``levels`` (one entry per code dimension)."""

    def __init__(self, levels: Sequence[int] = LEVELS_64K):
        self.levels = tuple(int(v) for v in levels)
        if not self.levels or min(self.levels) < 2:
            raise ValueError(f"levels must be integers >= 2, got {list(levels)}")

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    @property
    def dim(self) -> int:
        return len(self.levels)

    def quantize(self, z, impl: str | None = None):
        """z (..., dim) -> (codes (..., dim) in [−1, 1], indices (...) int64 in [0, codebook_size))."""
        from tokc.kernels import fsq_quantize

        return fsq_quantize(z, self.levels, impl=impl)

    def codes_to_indices(self, codes):
        from tokc.kernels import fsq_codes_to_indices

        return fsq_codes_to_indices(codes, self.levels)

    def indices_to_codes(self, indices, dtype=None, impl: str | None = None):
        import torch

        from tokc.kernels import fsq_indices_to_codes

        if indices.dtype.is_floating_point or (indices.numel() and not (
                0 <= int(indices.min()) and int(indices.max()) < self.codebook_size)):
            raise ValueError(f"indices must be integers in [0, {self.codebook_size})")
        return fsq_indices_to_codes(indices, self.levels, dtype or torch.float32, impl=impl)
