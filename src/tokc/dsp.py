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


ENV_FLOOR = 2.0**-16  # the envelope's floor (companded RMS): digital silence sits here


def band_rms(coefs: np.ndarray, bands: int) -> np.ndarray:
    """(hop, T) -> (bands, T): the RMS of each of `bands` equal-width frequency bands."""
    hop, t = coefs.shape
    return np.sqrt(np.mean(coefs.reshape(bands, hop // bands, t) ** 2, axis=1))


def envelope(coefs: np.ndarray, bands: int) -> np.ndarray:
    """(hop, T) companded coefficients -> (bands, T) log2 band RMS, floored at ENV_FLOOR."""
    return np.log2(band_rms(coefs, bands) + ENV_FLOOR)


def noise_fill(coefs: np.ndarray, zero: np.ndarray, env: np.ndarray, kappa: float,
               cap: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """Noise filling: each band's energy that the decoded coefficients `coefs` (hop, T) lack
    against the envelope `env` (bands, T; log2 RMS) comes back as Gaussian noise on the
    coefficients that were coded as zero (`zero`), at `kappa` of the missing RMS and at most
    `cap` (hop, T or broadcastable: a zero token's largest possible magnitude)."""
    hop, t = coefs.shape
    bands = env.shape[0]
    width = hop // bands
    target = (2.0 ** env - ENV_FLOOR).clip(0) ** 2 * width
    have = (coefs**2).reshape(bands, width, t).sum(1)
    count = zero.reshape(bands, width, t).sum(1)
    missing = np.sqrt((target - have).clip(0) / np.maximum(count, 1))
    amp = np.minimum(kappa * np.repeat(missing, width, axis=0), cap)
    return coefs + np.where(zero, amp * gen.standard_normal(coefs.shape), 0.0)


def decode_frames(y_hat: np.ndarray, zero: np.ndarray, cap: np.ndarray, bands: int,
                  kappa: float, power: float, gen: np.random.Generator) -> np.ndarray:
    """tokc-audio-v1's synthesis: dequantized latents y_hat (bands + hop, T) (envelope, then
    companded coefficients), the coefficients coded as zero (hop, T) and a zero token's
    largest magnitude `cap` -> noise-filled MDCT coefficients (hop, T)."""
    env, coefs = y_hat[:bands].astype(np.float64), y_hat[bands:].astype(np.float64)
    return expand(noise_fill(coefs, zero, env, kappa, cap, gen), power)
