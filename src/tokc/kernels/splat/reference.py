"""Gaussian splatting spec in plain torch (GPSToken's renderer), dense; autograd gives the backward.

Pixel centres: xs = linspace(-1, 1, width), ys = linspace(-1, 1, height) (align-corners).
For Gaussian m with mean (mx, my), sigmas (sx, sy), correlation rho and feature f (C,):
  dx = xs − mx, dy = ys − my, a = dx/sx, b = dy/sy,
  w = exp(−(a² − 2ρ·a·b + b²) / (2(1 − ρ²)))  if |dx| ≤ cutoff·sx and |dy| ≤ cutoff·sy, else 0,
  out[y, x, :] = Σ_m w_m(y, x) · f_m.   Computed in fp32; the output has features' dtype.
"""

from __future__ import annotations

import torch


def pixel_grid(height: int, width: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ys, xs) fp32 pixel-centre coordinates, shared by the reference and the launcher."""
    ys = torch.linspace(-1.0, 1.0, height, dtype=torch.float32, device=device)
    xs = torch.linspace(-1.0, 1.0, width, dtype=torch.float32, device=device)
    return ys, xs


def check(means, sigmas, rhos, features) -> None:
    m = means.shape[0]
    if means.shape != (m, 2) or sigmas.shape != (m, 2) or rhos.shape != (m,) or features.ndim != 2 \
            or features.shape[0] != m:
        raise ValueError(
            "means (M, 2), sigmas (M, 2), rhos (M,), features (M, C) expected, got "
            f"{tuple(means.shape)}, {tuple(sigmas.shape)}, {tuple(rhos.shape)}, {tuple(features.shape)}")


def weights(means, sigmas, rhos, height: int, width: int, cutoff: float = 3.0) -> torch.Tensor:
    """(..., M, H, W) fp32 weights of every Gaussian at every pixel (any leading batch dims)."""
    ys, xs = pixel_grid(height, width, means.device)
    mx, my = means[..., 0].float(), means[..., 1].float()
    sx, sy = sigmas[..., 0].float(), sigmas[..., 1].float()
    rho = rhos.float()
    dx = xs - mx[..., None]  # (..., M, W)
    dy = ys - my[..., None]  # (..., M, H)
    a = (dx / sx[..., None])[..., None, :]
    b = (dy / sy[..., None])[..., :, None]
    q = a * a - 2.0 * rho[..., None, None] * a * b + b * b
    w = torch.exp(-q / (2.0 * (1.0 - rho * rho))[..., None, None])
    inside_x = (dx.abs() <= cutoff * sx[..., None])[..., None, :]
    inside_y = (dy.abs() <= cutoff * sy[..., None])[..., :, None]
    return torch.where(inside_x & inside_y, w, torch.zeros((), device=w.device))


def splat(means, sigmas, rhos, features, height: int, width: int, cutoff: float = 3.0) -> torch.Tensor:
    check(means, sigmas, rhos, features)
    w = weights(means, sigmas, rhos, height, width, cutoff)  # (M, H, W)
    m = w.shape[0]
    out = w.reshape(m, height * width).T @ features.float()  # the dense matmul
    return out.reshape(height, width, -1).to(features.dtype)
