"""Rectified-flow update spec in plain torch (fp32 math, output in x's dtype).

Guided velocity:
  cfg:  v = v_u + w·(v_c − v_u)                       (v = v_c when v_uncond is None)
  apg:  per sample (all dims but the first), d = v_c − v_u,
        s = min(1, r / ||d||) if r > 0 else 1,  k = (d·v_c) / (v_c·v_c + 1e-12),
        v = v_c + (w − 1)·s·(d − (1 − η)·k·v_c)
        (adaptive projected guidance, Sadat et al. 2024, without momentum: the orthogonal part
        of the rescaled difference plus η times its parallel part, applied to the velocity.)
Update:
  euler:         x_next = x − dt·v
  heun corrector (x_pred = the Euler predictor x − dt·v₁, v the guided velocity at x_pred):
                 x_next = ½(x + x_pred) − ½·dt·v  (= x − dt·(v₁ + v)/2)
"""

from __future__ import annotations

import torch

MODES = ("cfg", "apg")
APG_EPS = 1e-12


def apg_scalars(v_cond: torch.Tensor, v_uncond: torch.Tensor, norm_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (s, k) of APG from the three sums d·v_c, v_c·v_c, d·d (fp32, shape (B,))."""
    vc = v_cond.float().reshape(v_cond.shape[0], -1)
    d = vc - v_uncond.float().reshape(vc.shape)
    return scalars_from_sums((d * vc).sum(1), (vc * vc).sum(1), (d * d).sum(1), norm_threshold)


def scalars_from_sums(dvc, vcvc, dd, norm_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    k = dvc / (vcvc + APG_EPS)
    if norm_threshold > 0:
        s = torch.clamp(norm_threshold / torch.sqrt(dd).clamp_min(APG_EPS), max=1.0)
    else:
        s = torch.ones_like(k)
    return s, k


def guided_velocity(v_cond, v_uncond, guidance: float, mode: str = "cfg", apg_eta: float = 0.0,
                    apg_norm_threshold: float = 0.0) -> torch.Tensor:
    vc = v_cond.float()
    if v_uncond is None:
        return vc
    vu = v_uncond.float()
    if mode == "cfg":
        return vu + guidance * (vc - vu)
    if mode != "apg":
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    s, k = apg_scalars(vc, vu, apg_norm_threshold)
    shape = (-1,) + (1,) * (vc.ndim - 1)
    s, k = s.reshape(shape), k.reshape(shape)
    return vc + (guidance - 1.0) * s * ((vc - vu) - (1.0 - apg_eta) * k * vc)


def flow_step(x, v_cond, v_uncond, dt: float, guidance: float, *, x_pred=None, mode: str = "cfg",
              apg_eta: float = 0.0, apg_norm_threshold: float = 0.0) -> torch.Tensor:
    v = guided_velocity(v_cond, v_uncond, guidance, mode, apg_eta, apg_norm_threshold)
    if x_pred is None:
        out = x.float() - dt * v
    else:
        out = 0.5 * (x.float() + x_pred.float()) - (0.5 * dt) * v
    return out.to(x.dtype)
