"""Image baselines (JPEG, WebP, AVIF, JPEG XL via imagecodecs) behind a registry by name.

Every codec maps an 8-bit RGB array (H x W x 3, uint8) and a quality to bytes and back.
Other codecs join with `register_image_codec`; the RD benchmark reads this registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from tokc.baselines.registry import Registry

T = TypeVar("T")

# encode(image, quality) returns the bytes, or (bytes, decoded image) when the codec
# decodes as it encodes; decode(bytes) returns the image (needed for the bytes-only form).
EncodeFn = Callable[[np.ndarray, float], "bytes | tuple[bytes, np.ndarray]"]
DecodeFn = Callable[[bytes], np.ndarray]


@dataclass(frozen=True)
class ImageCodec:
    name: str
    encode: EncodeFn
    decode: DecodeFn | None
    qualities: tuple[float, ...]  # default grid for the RD benchmark
    budget_qualities: tuple[float, ...]  # ascending candidates searched by compress_image_to_size
    settings: str  # how the codec is configured, for reports


@dataclass(frozen=True)
class CompressedImage:
    codec: str
    quality: float
    data: bytes
    decoded: np.ndarray  # uint8 H x W x 3
    encode_s: float
    decode_s: float | None  # None when the codec's encode also decodes (timed together)

    @property
    def nbytes(self) -> int:
        return len(self.data)

    @property
    def bpp(self) -> float:
        return 8.0 * len(self.data) / (self.decoded.shape[0] * self.decoded.shape[1])


_CODECS: Registry[ImageCodec] = Registry("image")


def register_image_codec(
    name: str,
    encode: EncodeFn,
    *,
    decode: DecodeFn | None = None,
    qualities: Sequence[float] = (),
    budget_qualities: Sequence[float] = range(101),
    settings: str = "",
    replace: bool = False,
) -> ImageCodec:
    """Add a codec under `name`; refuses to shadow an existing name unless replace=True."""
    return _CODECS.add(name, ImageCodec(
        name,
        encode,
        decode,
        tuple(float(q) for q in qualities),
        tuple(sorted(float(q) for q in budget_qualities)),
        settings,
    ), replace)


def image_codec(name: str) -> ImageCodec:
    return _CODECS.lookup(name)


def image_codec_names() -> tuple[str, ...]:
    return tuple(_CODECS)


def _as_rgb8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 H x W x 3 image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def compress_image(codec: str, image: np.ndarray, quality: float) -> CompressedImage:
    """Encode `image` at `quality` with the named codec and decode it again."""
    c = image_codec(codec)
    image = _as_rgb8(image)
    t0 = time.perf_counter()
    out: Any = c.encode(image, quality)
    encode_s = time.perf_counter() - t0
    decode_s = None
    if isinstance(out, tuple):
        data, decoded = out
    else:
        if c.decode is None:
            raise TypeError(f"codec {codec!r} returned only bytes and has no decode function")
        data = out
        t0 = time.perf_counter()
        decoded = c.decode(data)
        decode_s = time.perf_counter() - t0
    decoded = np.asarray(decoded)
    if decoded.shape != image.shape or decoded.dtype != np.uint8:
        raise ValueError(
            f"codec {codec!r} decoded {decoded.dtype} {decoded.shape}, expected uint8 {image.shape}"
        )
    return CompressedImage(codec, float(quality), bytes(data), decoded, encode_s, decode_s)


def bisect_to_size(
    candidates: Sequence[float], encode_at: Callable[[float], T], max_bytes: int
) -> T:
    """Result of `encode_at` for the largest candidate whose `.data` fits in max_bytes.

    Candidates must be ascending and size should grow with them; bisection then needs
    about log2(len(candidates)) encodes. Raises ValueError when even the first is too big.
    """
    lo, hi = 0, len(candidates) - 1
    best, smallest = None, None
    while lo <= hi:
        mid = (lo + hi) // 2
        result = encode_at(candidates[mid])
        size = len(result.data)  # type: ignore[attr-defined]
        smallest = size if smallest is None else min(smallest, size)
        if size <= max_bytes:
            best, lo = result, mid + 1
        else:
            hi = mid - 1
    if best is None:
        raise ValueError(
            f"cannot fit in {max_bytes} bytes: the smallest output tried was {smallest} bytes"
        )
    return best


def compress_image_to_size(codec: str, image: np.ndarray, max_bytes: int) -> CompressedImage:
    """The highest-quality encoding (over the codec's budget_qualities) of at most max_bytes."""
    c = image_codec(codec)
    image = _as_rgb8(image)
    return bisect_to_size(c.budget_qualities, lambda q: compress_image(codec, image, q), max_bytes)


# --- built-in baselines (imagecodecs is imported on first use) ---------------------------

AVIF_SPEED = 6  # libavif/aom speed 0 (slowest) .. 10; 6 keeps the Kodak benchmark short
JXL_EFFORT = 7  # libjxl effort 1 .. 10; 7 is cjxl's default


def _jpeg_encode(image: np.ndarray, quality: float) -> bytes:
    import imagecodecs

    return bytes(
        imagecodecs.jpeg8_encode(image, level=int(round(quality)), subsampling="420", optimize=True)
    )


def _jpeg_decode(data: bytes) -> np.ndarray:
    import imagecodecs

    return imagecodecs.jpeg8_decode(data)


def _webp_encode(image: np.ndarray, quality: float) -> bytes:
    import imagecodecs

    # imagecodecs' webp_encode is lossless unless lossless=False is passed
    return bytes(imagecodecs.webp_encode(image, level=float(quality), lossless=False, method=6))


def _webp_decode(data: bytes) -> np.ndarray:
    import imagecodecs

    return imagecodecs.webp_decode(data)


def _avif_encode(image: np.ndarray, quality: float) -> bytes:
    import imagecodecs

    return bytes(
        imagecodecs.avif_encode(
            image,
            level=int(round(quality)),
            speed=AVIF_SPEED,
            pixelformat="yuv444",
            codec="aom",
            numthreads=1,
        )
    )


def _avif_decode(data: bytes) -> np.ndarray:
    import imagecodecs

    return imagecodecs.avif_decode(data, numthreads=1)


def _jxl_encode(image: np.ndarray, quality: float) -> bytes:
    import imagecodecs

    return bytes(
        imagecodecs.jpegxl_encode(image, level=int(round(quality)), effort=JXL_EFFORT, numthreads=1)
    )


def _jxl_decode(data: bytes) -> np.ndarray:
    import imagecodecs

    return imagecodecs.jpegxl_decode(data, numthreads=1)


# Grids chosen so the mean curves span about 0.1 .. 1.5 bpp on Kodak.
register_image_codec(
    "jpeg",
    _jpeg_encode,
    decode=_jpeg_decode,
    qualities=(5, 10, 20, 30, 45, 60, 72, 80),
    budget_qualities=range(1, 101),
    settings="libjpeg-turbo (imagecodecs jpeg8), baseline, 4:2:0, optimized Huffman",
)
register_image_codec(
    "webp",
    _webp_encode,
    decode=_webp_decode,
    qualities=(0, 5, 15, 30, 50, 70, 80, 86),
    budget_qualities=range(0, 101),
    settings="libwebp lossy, method 6",
)
register_image_codec(
    "avif",
    _avif_encode,
    decode=_avif_decode,
    qualities=(10, 20, 30, 40, 50, 58, 65, 72),
    budget_qualities=range(0, 100),
    settings=f"libavif (aom), speed {AVIF_SPEED}, 4:4:4, 8-bit, 1 thread",
)
register_image_codec(
    "jxl",
    _jxl_encode,
    decode=_jxl_decode,
    qualities=(5, 20, 35, 50, 62, 72, 80, 86),
    budget_qualities=range(0, 100),
    settings=f"libjxl VarDCT, effort {JXL_EFFORT}, quality -> distance as in cjxl, 1 thread",
)
