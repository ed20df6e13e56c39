"""Nearest-codeword lookup (Euclidean or cosine) and the codebook gather."""

from __future__ import annotations

import torch

from tokc.kernels._dispatch import check_indices, choose, triton_module
from tokc.kernels.vq_lookup import reference

__all__ = ["vq_lookup", "indices_to_codes"]


def vq_lookup(x: torch.Tensor, codebook: torch.Tensor, metric: str = "euclidean",
              impl: str | None = None) -> torch.Tensor:
    """Indices (N,) int64 of the nearest codeword for x (N, D) in codebook (K, D)."""
    if metric not in reference.METRICS:
        raise ValueError(f"metric must be one of {reference.METRICS}, got {metric!r}")
    if choose(impl, x, codebook) == "triton":
        return triton_module("vq_lookup").vq_lookup(x, codebook, metric)
    return reference.vq_lookup(x, codebook, metric)


def indices_to_codes(indices: torch.Tensor, codebook: torch.Tensor,
                     impl: str | None = None) -> torch.Tensor:
    """codebook[indices]: (..., D) for indices of any shape, each in [0, K) (IndexError
    otherwise)."""
    check_indices(indices, codebook.shape[0], "codebook")
    if choose(impl, indices, codebook) == "triton":
        return triton_module("vq_lookup").indices_to_codes(indices, codebook)
    return reference.indices_to_codes(indices, codebook)
