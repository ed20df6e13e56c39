"""Group-wise lookup-free quantization (WeTok's GFQ) on :mod:`tokc.kernels.lfq`.

Sign per channel (+0.0 and −0.0 both give −1), channels grouped contiguously (group g is
channels [bits·g, bits·g + bits)), each group's bits packed LSB first into one index.
"""

from __future__ import annotations

import torch
from torch import nn

from tokc.kernels.lfq import lfq_quantize

__all__ = ["GroupLFQ"]


class GroupLFQ(nn.Module):
    """Group-wise lookup-free quantiser: sign per channel, LSB-first packing per group."""

    def __init__(self, groups: int, bits: int):
        super().__init__()
        self.groups, self.bits = groups, bits
        self.register_buffer("mask", 2 ** torch.arange(bits, dtype=torch.int64), persistent=False)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> straight-through +-1 values, as the official eval forward."""
        q = torch.where(x > 0, torch.ones_like(x), -torch.ones_like(x))
        return x + (q - x)

    def codes_to_indices(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) latents or codes -> int64 (B, H, W, groups).

        Runs ``tokc.kernels.lfq_quantize`` (Triton on CUDA, the torch reference elsewhere and
        while a graph is traced for export): its convention is this quantiser's (bit = z > 0 so
        both zeros give -1, contiguous groups on the last axis, LSB first), so the indices are
        identical.
        """
        return lfq_quantize(x.permute(0, 2, 3, 1), self.bits)[1]

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """int64 (B, H, W, groups) -> float +-1 codes (B, C, H, W)."""
        b, h, w, g = indices.shape
        bits = torch.bitwise_and(indices.unsqueeze(-1), self.mask) != 0
        codes = bits.to(torch.float32) * 2.0 - 1.0
        return codes.reshape(b, h, w, g * self.bits).permute(0, 3, 1, 2)
