"""Quality metrics for benchmarks: images (PSNR, MS-SSIM, SSIMULACRA2), audio (PESQ, STOI,
ViSQOL, log-mel distance, SI-SDR) and Bjøntegaard deltas. torch, pesq, pystoi and ssimulacra2 are
imported only by the functions that need them. LPIPS/FID are left out: they need
downloaded network weights (see tokc.metrics.image)."""

from tokc.metrics.audio import (
    AudioMetrics,
    audio_metrics,
    log_mel_distance,
    pesq_wb,
    si_sdr,
    stoi,
    visqol,
)
from tokc.metrics.bdrate import bd_quality, bd_rate
from tokc.metrics.image import ImageMetrics, image_metrics, ms_ssim, ms_ssim_db, psnr, ssimulacra2

__all__ = [
    "AudioMetrics",
    "ImageMetrics",
    "audio_metrics",
    "bd_quality",
    "bd_rate",
    "image_metrics",
    "log_mel_distance",
    "ms_ssim",
    "ms_ssim_db",
    "pesq_wb",
    "psnr",
    "si_sdr",
    "ssimulacra2",
    "stoi",
    "visqol",
]
