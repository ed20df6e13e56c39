"""The codec contract every codec keeps (image, audio, one-d-piece-v1, ...).

A codec is one object with a codec id (the string the .tokc header stores), a modality, and

    compress(input, **rate) -> EncodeResult     # input: what its modality reads (pixels, samples)
    decompress(data) -> Decoded                 # the bytes of a .tokc file it wrote

`tokc.compress.registry` maps codec ids to codecs; `tokc.decompress`, `tokc decompress` and
`tokc info` look the codec up from the header. Errors: `CodecError` and its subclasses (defined
with the backends' errors in `tokc.runtimes.errors`, so a backend can raise them too).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tokc import format as fmt
from tokc.runtimes.errors import CodecError, CodecUsageError, UnknownCodecError

__all__ = ["MAX_PIXELS", "Codec", "CodecError", "CodecUsageError", "Decoded", "EncodeResult",
           "PixelLimitError", "Sound", "UnknownCodecError", "check_pixels"]

# The decoders' guard against decompression bombs (a small file whose header claims a huge
# image): Pillow's DecompressionBombError threshold, 2 * PIL.Image.MAX_IMAGE_PIXELS (a
# 13383 x 13383 image). The format itself allows 2**28 pixels.
MAX_PIXELS = 178_956_970


class PixelLimitError(fmt.LimitError):
    """An image larger than the caller's decoding limit (`max_pixels`, `--max-pixels`)."""


def check_pixels(header: fmt.Header, max_pixels: int | None = MAX_PIXELS,
                 flag: str = "max_pixels=") -> None:
    """Refuse, from the header alone and so before anything is allocated, an image of more
    than max_pixels pixels (None or 0: no limit). flag: how the caller raises the limit, for
    the message (`--max-pixels` in the CLI)."""
    if header.modality != "image" or not max_pixels:
        return
    pixels = header.width * header.height
    if pixels > max_pixels:
        raise PixelLimitError(
            f"the file claims a {header.width}x{header.height} image ({pixels:,} pixels), over "
            f"the decoding limit of {max_pixels:,} pixels (a guard against small files that "
            f"decode to huge images); if you trust the file, raise the limit with {flag}N "
            f"(0 for none)")



@dataclass(frozen=True)
class Sound:
    """Audio: samples (num_samples, channels) float32 in [-1, 1] and their sample rate."""

    samples: np.ndarray
    sample_rate: int

    @property
    def channels(self) -> int:
        return self.samples.shape[1]

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / self.sample_rate


# What decompress returns: for images uint8 pixels (H, W), (H, W, 3) or (H, W, 4); for audio
# a Sound at the header's sample rate.
Decoded = np.ndarray | Sound


@dataclass(frozen=True)
class EncodeResult:
    """What every codec's compress returns: the file's bytes, what was coded, and the codec's
    rate parameters as coded (image: level, quality; one-d-piece-v1: num_tokens, bits), which
    also read as attributes (`res.quality`)."""

    data: bytes
    codec: str
    modality: str
    width: int = 0  # image
    height: int = 0
    sample_rate: int = 0  # audio
    num_samples: int = 0
    rate: Mapping[str, Any] = field(default_factory=dict)
    tokens: np.ndarray | None = None  # the coded tokens, for codecs that code a flat list

    def __getattr__(self, name: str):
        rate = self.__dict__.get("rate", {})
        if name in rate:
            return rate[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def bpp(self) -> float:
        """Bits per pixel (images)."""
        return 8 * len(self.data) / (self.width * self.height)

    @property
    def kbps(self) -> float:
        """Kilobits per second (audio; 0 for an empty signal)."""
        if not self.num_samples:
            return 0.0
        return 8 * len(self.data) * self.sample_rate / self.num_samples / 1000


@runtime_checkable
class Codec(Protocol):
    codec_id: str
    modality: str  # "image" or "audio"

    def compress(self, input, **rate) -> EncodeResult: ...

    def decompress(self, data: bytes) -> Decoded: ...

    def summary(self, result: EncodeResult) -> tuple[dict, str]:
        """The codec's fields of the CLI's summary (rate as coded): JSON fields and the text."""
        ...
