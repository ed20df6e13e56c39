"""tokc: learned tokenizers deployed as real codecs.

    import tokc
    data = tokc.compress("photo.png", quality=75)      # -> bytes of a .tokc file
    pixels = tokc.decompress(data)                      # -> uint8 array (H, W[, C])
    meta = tokc.read_metadata(data)                     # ICC profile, EXIF, .orientation
    data = tokc.compress("talk.wav", kbps=8)            # audio: quality=, kbps= or size=
    sound = tokc.decompress(data)                       # -> tokc.Sound(samples, sample_rate)
"""

from __future__ import annotations

# The subpackage first: importing it (here, or later as tokc.compress.image) binds the
# attribute `tokc.compress` to it, and only the first import does. Bound here, before the
# function of the same name below, it can never replace the function.
import tokc.compress  # noqa: F401  (isort: skip)

__version__ = "0.1.0"

from tokc.compress.base import MAX_PIXELS as _MAX_PIXELS  # noqa: E402
from tokc.compress.base import Sound  # noqa: E402
from tokc.compress.pixels import ImageMetadata  # noqa: E402

__all__ = ["ImageMetadata", "Sound", "__version__", "compress", "decompress", "load_exported", "open_model",
           "read_metadata"]


def load_exported(folder, device: str = "cpu", threads: int | None = None):
    """A published tokenizer from its `tokc export --arch` folder, on ONNX Runtime (device
    cpu or cuda) or TensorRT (device tensorrt), without torch: .encode(x) -> tokens,
    .decode(tokens, **inputs) -> image or audio, numpy in and out (tokc.runtimes.exported)."""
    from tokc.runtimes.exported import load_exported as load

    return load(folder, device, threads)


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


def compress(input, quality: float | None = None, *, size: int | None = None,
             psnr: float | None = None, kbps: float | None = None, effort: int | None = None,
             sample_rate: int | None = None, model: str | None = None,
             backend: str = "auto", metadata=True, tune: str | None = None,
             postfilter: bool | None = None) -> bytes:
    """Compress an image or a sound to the bytes of a .tokc file.

    input: an image (path, PIL image or uint8 array) or a sound (a path to .wav/.flac/.ogg/
    .mp3, a tokc.Sound, or an array (n,) / (n, channels) with sample_rate=). Rate: quality
    0..100 (default 75; 100 is the highest rate, not lossless); or size= a byte budget; or
    psnr= a target in dB (images); or kbps= an average bitrate (audio). effort 1..9 (images)
    trades encode time for fewer bytes. model: a codec id (default: the modality's default
    codec) or a weights file. metadata (images): keep the ICC profile, EXIF and PNG colour
    chunks of a path or PIL image (True, the default), drop them (False), or store a
    tokc.ImageMetadata; they never change the coded tokens (see read_metadata). tune (images):
    "psnr" (default) or "perceptual", the synthesis the file asks its decoder for. postfilter
    (audio): ask the decoder for the learned post-filter and its stronger noise fill (default
    on)."""
    from pathlib import Path

    from tokc.compress import registry
    from tokc.compress.base import CodecUsageError

    given = [k for k, v in {"quality": quality, "size": size, "psnr": psnr, "kbps": kbps}.items()
             if v is not None]
    if len(given) > 1:
        raise CodecUsageError(f"give at most one of quality=, size=, psnr=, kbps= (got "
                              f"{', '.join(k + '=' for k in given)})")
    audio = sample_rate is not None or isinstance(input, Sound) or (
        isinstance(input, (str, Path)) and registry.modality_of(str(input)) == "audio")
    default = registry.default_for("audio" if audio else "image")
    if model is None:
        codec = default.open(backend=backend)
    elif not _registered(model) and Path(model).is_file():
        codec = default.open(backend=backend, weights=model)
    else:
        codec = open_model(model, backend)
    rate = {k: v for k, v in {"quality": quality, "size": size, "psnr": psnr, "kbps": kbps,
                              "effort": effort, "tune": tune, "postfilter": postfilter}.items() if v is not None}
    image_only = [k + "=" for k in ("psnr", "effort", "tune") if k in rate]
    if codec.modality == "audio" and image_only:
        raise CodecUsageError(f"{', '.join(image_only)} apply to images, not to {codec.codec_id}")
    if codec.modality != "audio" and "postfilter" in rate:
        raise CodecUsageError(f"postfilter= applies to audio, not to {codec.codec_id}")
    if codec.modality == "audio":
        return codec.compress(input, sample_rate=sample_rate, **rate).data
    if metadata is not True:
        from tokc.compress.pixels import keeps_metadata

        if keeps_metadata(codec):
            rate["metadata"] = metadata
    return codec.compress(input, **rate).data


def _registered(name: str) -> bool:
    from tokc.compress import registry

    try:
        registry.entry(name)
    except registry.UnknownCodecError:
        return False
    return True


def decompress(data, *, model: str | None = None, backend: str = "auto",
               max_pixels: int | None = _MAX_PIXELS, **options):
    """Decode a .tokc file (its bytes, a path or a binary file object) with the codec its
    header names: for images a uint8 array (H, W), (H, W, 2) grey + alpha, (H, W, 3) or
    (H, W, 4). model: a weights file to decode with (default: the
    shipped ones); options: what the codec loads (checkpoint= for one-d-piece-v1). Audio
    decodes to a tokc.Sound (samples (n, channels) float32, sample_rate).
    max_pixels: an image file whose header claims more pixels is refused before anything is
    decoded (tokc.compress.base.PixelLimitError, a tokc.format.LimitError); the default is
    Pillow's decompression-bomb limit; None or 0: no limit."""
    from pathlib import Path

    from tokc import format as fmt
    from tokc.compress import registry
    from tokc.compress.base import check_pixels

    data = _file_bytes(data)
    if model is not None and Path(model).is_file():
        options["weights"] = model
    header = fmt.read_header(data)
    check_pixels(header, max_pixels)
    return registry.for_header(header, backend=backend, **options).decompress(data)


def read_metadata(data) -> ImageMetadata:
    """The colour and orientation metadata of an image .tokc file (bytes, a path or a binary
    file object): .icc_profile, .exif, .orientation, .png_colour; empty for a file without them
    or of audio. Reads the container only. tokc keeps orientation, it does not apply it:
    decompress returns the pixels as stored, to be shown rotated by .orientation (as
    PIL.ImageOps.exif_transpose does); tokc decompress writes the EXIF back unchanged."""
    from tokc.compress.pixels import stored_metadata

    return stored_metadata(_file_bytes(data))


def _file_bytes(source) -> bytes:
    """The bytes of a .tokc file given as bytes (or bytearray, memoryview), a path (str or
    os.PathLike) or a binary file object."""
    import os

    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return f.read()
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("tokc.decompress reads a file object opened in binary mode ('rb'), "
                            f"got {type(data).__name__} from it")
        return bytes(data)
    raise TypeError("tokc.decompress takes the bytes of a .tokc file, a path or a binary file "
                    f"object, not {type(source).__name__}")
