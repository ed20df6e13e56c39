"""Rectified-flow decoding: the fused update (Euler / Heun, CFG / APG) and a driver."""

from __future__ import annotations

from collections.abc import Callable

import torch

from tokc.kernels._dispatch import choose, triton_module
from tokc.kernels.flow_step import reference

__all__ = ["flow_step", "flow_decode"]

METHODS = ("euler", "heun")


def flow_step(x: torch.Tensor, v_cond: torch.Tensor, v_uncond: torch.Tensor | None, dt: float,
              guidance: float, impl: str | None = None, *, x_pred: torch.Tensor | None = None,
              mode: str = "cfg", apg_eta: float = 0.0, apg_norm_threshold: float = 0.0) -> torch.Tensor:
    """x_next = x − dt·v with v the guided velocity (see reference.py for the formulas).

    ``mode`` "cfg" (v_u + w·(v_c − v_u)) or "apg"; ``v_uncond=None`` means no guidance.
    ``x_pred`` (the Euler predictor) turns this into Heun's corrector.
    """
    if mode not in reference.MODES:
        raise ValueError(f"mode must be one of {reference.MODES}, got {mode!r}")
    for name, t in (("v_cond", v_cond), ("v_uncond", v_uncond), ("x_pred", x_pred)):
        if t is not None and t.shape != x.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, x has {tuple(x.shape)}")
    kw = dict(x_pred=x_pred, mode=mode, apg_eta=apg_eta, apg_norm_threshold=apg_norm_threshold)
    if choose(impl, x, v_cond, v_uncond, x_pred) == "triton":
        return triton_module("flow_step").flow_step(x, v_cond, v_uncond, dt, guidance, **kw)
    return reference.flow_step(x, v_cond, v_uncond, dt, guidance, **kw)


def _split(v) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(v, (tuple, list)):
        v_cond, v_uncond = v
        return v_cond, v_uncond
    return v, None


def flow_decode(velocity_fn: Callable, x0: torch.Tensor, steps: int, *, guidance: float = 1.0,
                method: str = "euler", mode: str = "cfg", apg_eta: float = 0.0,
                apg_norm_threshold: float = 0.0, t_start: float = 1.0, t_end: float = 0.0,
                impl: str | None = None) -> torch.Tensor:
    """Integrate dx/dt = v from t_start (noise, x0) to t_end with ``steps`` uniform steps.

    ``velocity_fn(x, t)`` returns v, or (v_cond, v_uncond) for guidance; t is a float.
    Each step is x ← x − dt·v (dt = (t_start − t_end)/steps); Heun costs two calls per step.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if steps < 1:
        raise ValueError("steps must be >= 1")
    dt = (t_start - t_end) / steps
    kw = dict(mode=mode, apg_eta=apg_eta, apg_norm_threshold=apg_norm_threshold, impl=impl)
    x = x0
    for i in range(steps):
        t = t_start - i * dt
        vc, vu = _split(velocity_fn(x, t))
        x_pred = flow_step(x, vc, vu, dt, guidance, **kw)
        if method == "heun":
            vc, vu = _split(velocity_fn(x_pred, t - dt))
            x_pred = flow_step(x, vc, vu, dt, guidance, x_pred=x_pred, **kw)
        x = x_pred
    return x
