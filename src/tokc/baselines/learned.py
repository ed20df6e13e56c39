"""tokc's own codecs in the benchmark registry ("tokc" = tokc-image-v1), beside the classics."""

import numpy as np

from tokc.baselines.image import register_image_codec


def _encode(image: np.ndarray, quality: float) -> bytes:
    from tokc.compress.image import default_codec

    return default_codec().compress(image, quality=quality).data


def _decode(data: bytes) -> np.ndarray:
    from tokc.compress.image import default_codec

    return default_codec().decompress(data)


register_image_codec(
    "tokc",
    _encode,
    decode=_decode,
    qualities=(0, 15, 30, 45, 60, 75, 90, 100),
    budget_qualities=np.arange(0, 100.01, 0.5),
    settings="tokc-image-v1 (shipped weights), effort 1, default backend",
)
