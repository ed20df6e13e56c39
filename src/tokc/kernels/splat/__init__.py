"""Render M anisotropic 2D Gaussians onto an (H, W, C) map (GPSToken's renderer), with backward."""

from __future__ import annotations

import torch

from tokc.kernels._dispatch import choose, triton_module
from tokc.kernels.splat import reference

__all__ = ["splat"]


def splat(means: torch.Tensor, sigmas: torch.Tensor, rhos: torch.Tensor, features: torch.Tensor,
          height: int, width: int, cutoff: float = 3.0, impl: str | None = None) -> torch.Tensor:
    """means (M, 2) as (x, y) in [-1, 1] align-corners coordinates, sigmas (M, 2) as (σx, σy),
    rhos (M,), features (M, C) -> (height, width, C) map; differentiable in all four."""
    if choose(impl, means, sigmas, rhos, features) == "triton":
        return triton_module("splat").splat(means, sigmas, rhos, features, height, width, cutoff)
    return reference.splat(means, sigmas, rhos, features, height, width, cutoff)
