"""tokc: learned tokenizers deployed as real codecs.

    import tokc
    data = tokc.compress("photo.png", quality=75)      # -> bytes of a .tokc file
    pixels = tokc.decompress(data)                      # -> uint8 array (H, W[, C])
"""

from __future__ import annotations

# The subpackage first: importing it (here, or later as tokc.compress.image) binds the
# attribute `tokc.compress` to it, and only the first import does. Bound here, before the
# function of the same name below, it can never replace the function.
import tokc.compress  # noqa: F401  (isort: skip)

__version__ = "0.1.0"

__all__ = ["__version__", "compress", "decompress", "open_model"]


def open_model(name: str = "tokc-image-v1", backend: str = "auto", **options):
    """The codec behind a codec id or alias (options: what it loads, e.g. checkpoint=), or a
    weights file of tokc-image-v1; the shipped ones are loaded once per backend."""
    from pathlib import Path

    from tokc.compress import registry

    try:
        entry = registry.entry(name)
    except registry.UnknownCodecError:
        if not Path(name).is_file():
            raise ValueError(f"unknown model {name!r}") from None
        entry, options = registry.default_for("image"), {**options, "weights": name}
    return entry.open(backend=backend, **options)


def compress(image, quality: float = 75, *, size: int | None = None, psnr: float | None = None,
             effort: int = 1, model: str = "tokc-image-v1", backend: str = "auto") -> bytes:
    """Compress an image (path, PIL image or uint8 array) to the bytes of a .tokc file.

    quality 0..100 (100 is the highest rate, not lossless); or size= a byte budget; or
    psnr= a target in dB. effort 1..9 trades encode time for fewer bytes."""
    return open_model(model, backend).compress(
        image, quality=quality, size=size, psnr=psnr, effort=effort
    ).data


def decompress(data: bytes, *, model: str | None = None, backend: str = "auto", **options):
    """Decode the bytes of a .tokc file with the codec its header names: for images a uint8
    array (H, W), (H, W, 3) or (H, W, 4). model: a weights file to decode with (default: the
    shipped ones); options: what the codec loads (checkpoint= for one-d-piece-v1)."""
    from pathlib import Path

    from tokc import format as fmt
    from tokc.compress import registry

    if model is not None and Path(model).is_file():
        options["weights"] = model
    return registry.for_header(fmt.read_header(bytes(data)), backend=backend, **options) \
        .decompress(bytes(data))
