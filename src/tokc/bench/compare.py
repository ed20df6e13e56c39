"""One image, side by side: tokc at a chosen quality, then JPEG and WebP at the same size.

This is the README's main job (`make demo`): it compresses and decompresses a real photo with
tokc and prints bytes, bpp, PSNR, MS-SSIM and times next to JPEG and WebP, each given the
byte budget of the tokc file (the best quality of theirs that fits). MS-SSIM needs both sides
of 161 px or more; on a smaller image it reads n/a (nan in a Row)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Row:
    codec: str
    setting: str
    nbytes: int
    bpp: float
    psnr: float
    ms_ssim_db: float
    encode_s: float
    decode_s: float


def compare(
    rgb: np.ndarray, quality: float = 75, others=("jpeg", "webp"), backend="auto"
) -> list[Row]:
    from tokc.baselines.image import compress_image_to_size, image_codec
    from tokc.compress.image import default_codec
    from tokc.metrics.image import MS_SSIM_MIN_SIDE, ms_ssim, ms_ssim_db, psnr

    def ms_ssim_or_nan(ref: np.ndarray, dist: np.ndarray) -> float:
        if min(ref.shape[:2]) < MS_SSIM_MIN_SIDE:
            return float("nan")
        return ms_ssim_db(ms_ssim(ref, dist))

    codec = default_codec(backend)
    _ = codec.transforms  # load the model before timing
    h, w = rgb.shape[:2]
    t = time.perf_counter()
    res = codec.compress(rgb, quality=quality)
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    out = codec.decompress(res.data)
    t_dec = time.perf_counter() - t
    rows = [
        Row(
            "tokc",
            f"q {quality:g}",
            len(res.data),
            res.bpp,
            psnr(rgb, out),
            ms_ssim_or_nan(rgb, out),
            t_enc,
            t_dec,
        )
    ]
    for name in others:
        c = compress_image_to_size(name, rgb, len(res.data))
        t_enc = c.encode_s  # the final encode, not the whole size search
        t = time.perf_counter()
        decoded = image_codec(name).decode(c.data) if image_codec(name).decode else c.decoded
        t_dec = time.perf_counter() - t
        rows.append(
            Row(
                name,
                f"q {c.quality:g} ({image_codec(name).settings})",
                c.nbytes,
                8 * c.nbytes / (h * w),
                psnr(rgb, decoded),
                ms_ssim_or_nan(rgb, decoded),
                t_enc,
                t_dec,
            )
        )
    return rows


def format_rows(rows: list[Row]) -> str:
    lines = [
        f"{'codec':<6} {'setting':<34} {'bytes':>8} {'bpp':>6} {'PSNR dB':>8} "
        f"{'MS-SSIM dB':>10} {'enc s':>6} {'dec s':>6}"
    ]
    for r in rows:
        ms_ssim = "n/a" if math.isnan(r.ms_ssim_db) else f"{r.ms_ssim_db:.2f}"
        lines.append(
            f"{r.codec:<6} {r.setting[:34]:<34} {r.nbytes:>8} {r.bpp:>6.3f} {r.psnr:>8.2f} "
            f"{ms_ssim:>10} {r.encode_s:>6.2f} {r.decode_s:>6.2f}"
        )
    return "\n".join(lines)
