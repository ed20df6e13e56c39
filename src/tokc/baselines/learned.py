"""tokc's own codecs in the benchmark registries ("tokc" = tokc-image-v1 for images and
tokc-audio-v1 for audio), beside the classics.

The audio "tokc" runs the shipped weights, or the file named by $TOKC_AUDIO_WEIGHTS, or the
one given to `register_tokc_audio(weights=...)` (`tokc bench rd --weights`), so a candidate
checkpoint can be benchmarked before it is shipped. Its integer networks run on `threads`
ONNX Runtime threads (1 by default: the benchmark's real-time factors are single-thread).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from tokc.baselines.audio import Unreachable, register_audio_codec
from tokc.baselines.image import register_image_codec

AUDIO_WEIGHTS_ENV = "TOKC_AUDIO_WEIGHTS"
AUDIO_KBPS = (4, 6, 8, 10, 12, 16, 24)
_ANY_KBPS = tuple(float(b) for b in range(1, 257))  # -b takes any rate; below the lowest: skipped


def _encoder(tune: str):
    def encode(image: np.ndarray, quality: float) -> bytes:
        from tokc.compress.image import default_codec

        return default_codec().compress(image, quality=quality, tune=tune).data
    return encode


def _decode(data: bytes) -> np.ndarray:
    from tokc.compress.image import default_codec

    return default_codec().decompress(data)


# "tokc" (the psnr synthesis) and "tokc-perceptual": the same tokens, two synthesis tunes
for _name, _tune in (("tokc", "psnr"), ("tokc-perceptual", "perceptual")):
    register_image_codec(
        _name,
        _encoder(_tune),
        decode=_decode,
        qualities=(0, 15, 30, 45, 60, 75, 90, 100),
        budget_qualities=np.arange(0, 100.01, 0.5),
        settings=f"tokc-image-v1 (shipped weights), effort 1, default backend, {_tune} tune",
    )


# --- audio ---------------------------------------------------------------------------------

_audio_codecs: dict[tuple[Path, int], object] = {}


def audio_weights_path(weights: str | Path | None = None) -> Path:
    """The weights file the audio "tokc" runs: `weights`, else $TOKC_AUDIO_WEIGHTS, else the
    shipped tokc-audio-v1 (which may be absent from a checkout)."""
    if weights is None:
        weights = os.environ.get(AUDIO_WEIGHTS_ENV) or None
    if weights is None:
        from tokc.compress import audio

        return audio.WEIGHTS
    return Path(weights).expanduser().resolve()


def tokc_audio_codec(weights: str | Path | None = None, threads: int = 1):
    """tokc-audio-v1 (tokc.compress.audio.AudioCodec) on `weights`, loaded once per file."""
    from tokc.compress import audio
    from tokc.compress.base import CodecError

    path = audio_weights_path(weights)
    key = (path, threads)
    if key not in _audio_codecs:
        if not path.is_file():
            raise CodecError(
                f"{audio.CODEC_ID} weights not found: {path} (set ${AUDIO_WEIGHTS_ENV} or pass "
                "--weights)"
            )
        _audio_codecs[key] = audio.AudioCodec(audio.AudioWeights(path, threads=threads))
    return _audio_codecs[key]


def _weights_note(path: Path) -> str:
    if not path.is_file():
        return f"weights {path.name} (not present)"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"weights {path.name} (sha256 {digest})"


def register_tokc_audio(
    weights: str | Path | None = None,
    threads: int = 1,
    name: str = "tokc",
    replace: bool = False,
    digest: bool = False,
):
    """Register tokc-audio-v1 on `weights` (see audio_weights_path) as the audio codec `name`.
    digest=True puts the weights' sha256 in the settings (reads the file)."""
    path = audio_weights_path(weights)

    def encode(samples: np.ndarray, sample_rate: int, kbps: float) -> bytes:
        from tokc.compress.base import CodecError

        codec = tokc_audio_codec(path, threads)
        try:
            return codec.compress(samples, kbps=kbps, sample_rate=sample_rate).data
        except CodecError as e:
            if "lowest rate" in str(e):
                raise Unreachable(str(e)) from None
            raise

    def decode(data: bytes, sample_rate: int) -> np.ndarray:
        from tokc.metrics.audio import resample

        sound = tokc_audio_codec(path, threads).decompress(data)
        x = sound.samples
        if sound.sample_rate != sample_rate:
            x = resample(x, sound.sample_rate, sample_rate)
        return x[:, 0] if x.shape[1] == 1 else x

    where = _weights_note(path) if digest else f"weights {path.name}"
    return register_audio_codec(
        name,
        encode,
        decode=decode,
        bitrates=AUDIO_KBPS,
        bitrate_choices=lambda sample_rate: _ANY_KBPS,
        settings=f"tokc-audio-v1, {where}, {threads} thread(s), -b KBPS (the highest quality "
        "whose file is at most KBPS); rate = the whole .tokc file (header and chunks)",
        replace=replace,
    )


register_tokc_audio()
