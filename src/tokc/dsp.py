"""Fixed signal transforms shared by the audio model (torch) and the audio codec (numpy):
the MDCT of tokc-audio-v1, its framing and its companding. Plain numpy, no torch.

MDCT with hop N and a 2N sine window (Princen-Bradley), orthonormal scaling: frame t covers
samples [t*N, t*N + 2N) of the padded signal, and overlap-adding the inverse transforms of
consecutive frames restores every sample covered by two frames exactly (TDAC).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=4)
def mdct_basis(n: int) -> np.ndarray:
    """(n, 2n) float64: row k is the windowed MDCT basis function of coefficient k, so that
    X = basis @ frame and frame_part = basis.T @ X (then overlap-add)."""
    t = np.arange(2 * n) + 0.5
    window = np.sin(np.pi * t / (2 * n))
    k = np.arange(n)[:, None] + 0.5
    return np.sqrt(2.0 / n) * window * np.cos(np.pi / n * (t + n / 2) * k)


def frames_for(samples: int, hop: int, multiple: int = 1) -> int:
    """Frames T that cover `samples` signal samples placed after `hop` samples of padding:
    the padded signal is (T + 1) * hop long; T is rounded up to a multiple of `multiple`."""
    t = -(-(samples + hop) // hop)
    return -(-t // multiple) * multiple


def pad_signal(x: np.ndarray, hop: int, frames: int) -> np.ndarray:
    """(..., L) -> (..., (frames + 1) * hop): hop zeros before, zeros after."""
    total = (frames + 1) * hop
    pad = [(0, 0)] * (x.ndim - 1) + [(hop, total - hop - x.shape[-1])]
    return np.pad(x, pad)


def mdct(x: np.ndarray, hop: int) -> np.ndarray:
    """(L,) with L = (T + 1) * hop -> (hop, T) coefficients."""
    t = len(x) // hop - 1
    idx = np.arange(t)[:, None] * hop + np.arange(2 * hop)[None]
    return mdct_basis(hop) @ x[idx].T


def imdct(coefs: np.ndarray, hop: int) -> np.ndarray:
    """(hop, T) -> ((T + 1) * hop,) by overlap-add; exact except the first and last hop."""
    parts = mdct_basis(hop).T @ coefs  # (2 hop, T)
    t = coefs.shape[1]
    out = np.zeros((t + 1) * hop)
    out[: t * hop] += parts[:hop].T.reshape(-1)
    out[hop:] += parts[hop:].T.reshape(-1)
    return out


def compand(x, power: float):
    """sign(x) |x|^power: the domain in which the audio model codes its coefficients."""
    return np.sign(x) * np.abs(x) ** power


def expand(y, power: float):
    """The inverse of compand."""
    return np.sign(y) * np.abs(y) ** (1.0 / power)
