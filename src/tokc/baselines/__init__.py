"""Classic codecs for benchmarks, in registries by name.

Images: "jpeg", "webp", "avif", "jxl" (imagecodecs). Audio: "opus", "opus-voip", "mp3" (PyAV).
tokc's own codecs are registered beside them as "tokc" (tokc.baselines.learned).
Add a codec with `register_image_codec(name, encode, ...)` / `register_audio_codec(...)`;
the RD benchmark (tokc.bench.rd) takes its codecs from these registries.
"""

from tokc.baselines.audio import (
    AudioCodec,
    CompressedAudio,
    Encoded,
    Unreachable,
    audio_codec,
    audio_codec_names,
    compress_audio,
    compress_audio_to_size,
    register_audio_codec,
)
from tokc.baselines.image import (
    CompressedImage,
    ImageCodec,
    bisect_to_size,
    compress_image,
    compress_image_to_size,
    image_codec,
    image_codec_names,
    register_image_codec,
)

__all__ = [
    "AudioCodec",
    "CompressedAudio",
    "CompressedImage",
    "Encoded",
    "ImageCodec",
    "Unreachable",
    "audio_codec",
    "audio_codec_names",
    "bisect_to_size",
    "compress_audio",
    "compress_audio_to_size",
    "compress_image",
    "compress_image_to_size",
    "image_codec",
    "image_codec_names",
    "register_audio_codec",
    "register_image_codec",
]

from tokc.baselines import learned  # noqa: E402,F401  registers "tokc" (image and audio)
