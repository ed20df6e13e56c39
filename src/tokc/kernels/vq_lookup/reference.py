"""vq_lookup spec in plain torch.

Euclidean: argmin_k ||c_k||² − 2·x·c_k  (||x||² is the same for every k, so it is dropped).
Cosine:    argmin_k −x·ĉ_k with ĉ_k = c_k / max(||c_k||, eps)  (x is not normalised: a positive
           per-row scale does not change the argmax, and skipping it keeps the spec exact).
All in fp32; ties go to the lowest index (torch.argmin returns the first minimum).
"""

from __future__ import annotations

import torch

from tokc.kernels._dispatch import _tracing

METRICS = ("euclidean", "cosine")
_EPS = 1e-12
_CHUNK = 1 << 24  # elements of the N×K distance block materialised at once


def prepare_codebook(codebook: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 codebook used in the dot products, and the per-code bias added to −2·dot or −dot.

    Shared by the reference and the Triton launcher so both see the same numbers.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    c = codebook.float()
    if metric == "euclidean":
        return c, (c * c).sum(-1)
    norm = c.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    return c / norm, torch.zeros(c.shape[0], dtype=torch.float32, device=c.device)


def distances(x: torch.Tensor, c: torch.Tensor, bias: torch.Tensor, metric: str) -> torch.Tensor:
    dots = x.float() @ c.T
    scale = 2.0 if metric == "euclidean" else 1.0
    return bias[None, :] - scale * dots


def vq_lookup(x: torch.Tensor, codebook: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    if x.ndim != 2 or codebook.ndim != 2 or x.shape[1] != codebook.shape[1]:
        raise ValueError(f"x (N, D) and codebook (K, D) expected, got {tuple(x.shape)}, {tuple(codebook.shape)}")
    c, bias = prepare_codebook(codebook, metric)
    n, k = x.shape[0], c.shape[0]
    if _tracing() or n * k <= _CHUNK:  # one graph for export; chunks only to bound eager memory
        return distances(x, c, bias, metric).argmin(dim=1)
    rows = max(1, _CHUNK // max(k, 1))
    out = torch.empty(n, dtype=torch.int64, device=x.device)
    for s in range(0, n, rows):
        out[s : s + rows] = distances(x[s : s + rows], c, bias, metric).argmin(dim=1)
    return out


def indices_to_codes(indices: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    return codebook[indices]
