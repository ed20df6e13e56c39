"""Image quality metrics on 8-bit RGB arrays (H x W x 3, uint8).

PSNR follows the CompressAI Kodak convention: MSE over all pixels and channels of the
uint8 arrays, 10*log10(255^2/MSE); identical images give +inf.
MS-SSIM is pytorch-msssim's (data_range 255, 11x11 Gaussian window, 5 scales); torch is
imported only when it is called, so the core package does not need torch.
SSIMULACRA2 is the `ssimulacra2` PyPI package (a numpy port of libjxl's tool).

LPIPS and FID are not here: both need network weights that must be downloaded, which
this project cannot do; add them where the weights are available.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

MS_SSIM_MIN_SIDE = 161  # pytorch-msssim needs the shorter side > (11 - 1) * 2**4


@dataclass(frozen=True)
class ImageMetrics:
    psnr: float  # dB, +inf for identical images
    ms_ssim: float  # in [0, 1]
    ssimulacra2: float  # 100 = identical, lower is worse (can go negative)


def _check_pair(ref: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref)
    dist = np.asarray(dist)
    for a in (ref, dist):
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"expected uint8 H x W x 3 arrays, got {a.dtype} {a.shape}")
    if ref.shape != dist.shape:
        raise ValueError(f"shape mismatch: {ref.shape} vs {dist.shape}")
    return ref, dist


def psnr(ref: np.ndarray, dist: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels; +inf when the images are identical."""
    ref, dist = _check_pair(ref, dist)
    mse = np.mean((ref.astype(np.float64) - dist.astype(np.float64)) ** 2)
    if mse == 0:
        return math.inf
    return float(10 * np.log10(255.0**2 / mse))


def ms_ssim(ref: np.ndarray, dist: np.ndarray) -> float:
    """MS-SSIM (pytorch-msssim, data_range 255); both sides must be >= 161 px."""
    ref, dist = _check_pair(ref, dist)
    if min(ref.shape[:2]) < MS_SSIM_MIN_SIDE:
        raise ValueError(f"MS-SSIM needs both sides >= {MS_SSIM_MIN_SIDE} px, got {ref.shape[:2]}")
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def to_tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))[None]).float()

    # One thread: the gain on a single image is small, and on a busy machine torch's
    # thread pool spins so much that a Kodak image takes seconds instead of 0.3 s.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            value = _ms_ssim(to_tensor(ref), to_tensor(dist), data_range=255).item()
    finally:
        torch.set_num_threads(threads)
    return float(min(value, 1.0))


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, -10*log10(1 - value); +inf for 1."""
    if value >= 1.0:
        return math.inf
    return float(-10 * math.log10(1.0 - value))


def _png(a: np.ndarray) -> io.BytesIO:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=0)
    buf.seek(0)
    return buf


def ssimulacra2(ref: np.ndarray, dist: np.ndarray) -> float:
    """SSIMULACRA2 score (100 = identical).

    The package only takes things PIL.Image.open can read, so the arrays go through
    in-memory PNGs (no temporary files).
    """
    ref, dist = _check_pair(ref, dist)
    from ssimulacra2 import compute_ssimulacra2

    return float(compute_ssimulacra2(_png(ref), _png(dist)))


def image_metrics(ref: np.ndarray, dist: np.ndarray) -> ImageMetrics:
    """All three image metrics at once."""
    return ImageMetrics(psnr(ref, dist), ms_ssim(ref, dist), ssimulacra2(ref, dist))
