"""One image, side by side: tokc at a chosen quality, then JPEG and WebP at the same size; or
one sound: tokc-audio-v1 at a chosen bitrate, then Opus (voip) at the same bitrate.

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


@dataclass(frozen=True)
class AudioRow:
    codec: str
    setting: str
    nbytes: int
    kbps: float  # as counted: the whole .tokc file; Opus's packets (not the Ogg pages)
    pesq: float
    stoi: float
    encode_s: float
    decode_s: float


def compare_audio(sound, kbps: float = 12, others=("opus-voip",), weights=None) -> list[AudioRow]:
    """A Sound (mono or stereo, any rate): tokc at -b kbps (the shipped weights, or a weights
    file), then each classic codec asked for the same bitrate. Quality measured on the mono
    mix at the input's rate."""
    from tokc.baselines.audio import audio_codec, compress_audio
    from tokc.compress.audio import open_codec
    from tokc.metrics.audio import pesq_wb, stoi

    codec = open_codec(weights=weights)
    ref = sound.samples.mean(1)
    t = time.perf_counter()
    res = codec.compress(sound, kbps=kbps)
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    out = codec.decompress(res.data).samples.mean(1)
    t_dec = time.perf_counter() - t
    rate = sound.sample_rate
    rows = [AudioRow("tokc", f"-b {kbps:g} (q {res.quality:.1f})", len(res.data),
                     8 * len(res.data) / sound.seconds / 1000, pesq_wb(ref, out, rate),
                     stoi(ref, out, rate), t_enc, t_dec)]
    x = sound.samples if sound.channels == 2 else sound.samples[:, 0]
    for name in others:
        c = compress_audio(name, x, rate, kbps)
        dec = c.decoded.reshape(len(ref), -1).mean(1)
        rows.append(AudioRow(name, f"{kbps:g} kbps ({audio_codec(name).settings})",
                             c.nbytes if c.counted_bytes is None else c.counted_bytes,
                             c.counted_kbps, pesq_wb(ref, dec, rate), stoi(ref, dec, rate),
                             c.encode_s, c.decode_s or 0.0))
    return rows


def format_audio_rows(rows: list[AudioRow]) -> str:
    lines = [f"{'codec':<10} {'setting':<34} {'bytes':>8} {'kbps':>6} {'PESQ-WB':>8} "
             f"{'STOI':>6} {'enc s':>6} {'dec s':>6}"]
    for r in rows:
        lines.append(f"{r.codec:<10} {r.setting[:34]:<34} {r.nbytes:>8} {r.kbps:>6.2f} "
                     f"{r.pesq:>8.2f} {r.stoi:>6.3f} {r.encode_s:>6.2f} {r.decode_s:>6.2f}")
    return "\n".join(lines)
