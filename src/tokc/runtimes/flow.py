"""Rectified-flow sampling in numpy, without torch: the twin of :mod:`tokc.kernels.flow_step`'s
reference (the spec; the same formulas in fp32), driven by a velocity function such as an
exported FlexTok decoder graph (:mod:`tokc.runtimes.exported`).

Guided velocity: cfg v = v_u + w·(v_c − v_u); apg (per sample) d = v_c − v_u,
s = min(1, r/||d||) (r > 0, else 1), k = (d·v_c)/(v_c·v_c + 1e-12),
v = v_c + (w − 1)·s·(d − (1 − η)·k·v_c). Update: Euler x − dt·v; Heun's corrector
½(x + x_pred) − ½·dt·v.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MODES = ("cfg", "apg")
METHODS = ("euler", "heun")
APG_EPS = 1e-12


def guided_velocity(v_cond: np.ndarray, v_uncond: np.ndarray | None, guidance: float, mode: str = "cfg",
                    apg_eta: float = 0.0, apg_norm_threshold: float = 0.0) -> np.ndarray:
    vc = np.asarray(v_cond, dtype=np.float32)
    if v_uncond is None:
        return vc
    vu = np.asarray(v_uncond, dtype=np.float32)
    if mode == "cfg":
        return vu + guidance * (vc - vu)
    if mode != "apg":
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    flat = vc.reshape(vc.shape[0], -1)
    d = flat - vu.reshape(flat.shape)
    k = (d * flat).sum(1) / ((flat * flat).sum(1) + APG_EPS)
    if apg_norm_threshold > 0:
        s = np.minimum(apg_norm_threshold / np.maximum(np.sqrt((d * d).sum(1)), APG_EPS), 1.0)
    else:
        s = np.ones_like(k)
    shape = (-1,) + (1,) * (vc.ndim - 1)
    s, k = s.astype(np.float32).reshape(shape), k.astype(np.float32).reshape(shape)
    return vc + (guidance - 1.0) * s * ((vc - vu) - (1.0 - apg_eta) * k * vc)


def flow_step(x: np.ndarray, v_cond: np.ndarray, v_uncond: np.ndarray | None, dt: float, guidance: float, *,
              x_pred: np.ndarray | None = None, mode: str = "cfg", apg_eta: float = 0.0,
              apg_norm_threshold: float = 0.0) -> np.ndarray:
    v = guided_velocity(v_cond, v_uncond, guidance, mode, apg_eta, apg_norm_threshold)
    xf = np.asarray(x, dtype=np.float32)
    if x_pred is None:
        out = xf - dt * v
    else:
        out = 0.5 * (xf + np.asarray(x_pred, dtype=np.float32)) - (0.5 * dt) * v
    return out.astype(x.dtype)


def flow_decode(velocity_fn: Callable, x0: np.ndarray, steps: int, *, guidance: float = 1.0,
                method: str = "euler", mode: str = "cfg", apg_eta: float = 0.0,
                apg_norm_threshold: float = 0.0, t_start: float = 1.0, t_end: float = 0.0) -> np.ndarray:
    """Integrate dx/dt = v from t_start (noise x0) to t_end in ``steps`` uniform steps, as
    :func:`tokc.kernels.flow_decode`: ``velocity_fn(x, t)`` returns v or (v_cond, v_uncond)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if steps < 1:
        raise ValueError("steps must be >= 1")
    dt = (t_start - t_end) / steps
    kw = dict(mode=mode, apg_eta=apg_eta, apg_norm_threshold=apg_norm_threshold)

    def split(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, None)

    x = x0
    for i in range(steps):
        t = t_start - i * dt
        vc, vu = split(velocity_fn(x, t))
        x_pred = flow_step(x, vc, vu, dt, guidance, **kw)
        if method == "heun":
            vc, vu = split(velocity_fn(x_pred, t - dt))
            x_pred = flow_step(x, vc, vu, dt, guidance, x_pred=x_pred, **kw)
        x = x_pred
    return x
