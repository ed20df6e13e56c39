"""tokc: learned tokenizers deployed as real codecs.

    import tokc
    data = tokc.compress("photo.png", quality=75)      # -> bytes of a .tokc file
    pixels = tokc.decompress(data)                      # -> uint8 array (H, W[, C])
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "compress", "decompress", "open_model"]


def open_model(name: str = "tokc-image-v1", backend: str = "auto"):
    """The codec behind a model id (or a weights file path), loaded once per backend."""
    from pathlib import Path

    from tokc.compress import image

    if name == image.CODEC_ID:
        return image.default_codec(backend)
    if Path(name).is_file():
        return image.ImageCodec(image.ImageWeights(Path(name)), backend)
    raise ValueError(f"unknown model {name!r}")


def compress(image, quality: float = 75, *, size: int | None = None, psnr: float | None = None,
             effort: int = 1, model: str = "tokc-image-v1", backend: str = "auto") -> bytes:
    """Compress an image (path, PIL image or uint8 array) to the bytes of a .tokc file.

    quality 0..100 (100 is the highest rate, not lossless); or size= a byte budget; or
    psnr= a target in dB. effort 1..9 trades encode time for fewer bytes."""
    return open_model(model, backend).compress(
        image, quality=quality, size=size, psnr=psnr, effort=effort
    ).data


def decompress(data: bytes, *, model: str = "tokc-image-v1", backend: str = "auto"):
    """Decode the bytes of a .tokc file to a uint8 array (H, W), (H, W, 3) or (H, W, 4)."""
    return open_model(model, backend).decompress(bytes(data))
