"""Pixel I/O, shared by the image codecs (tokc-image-v1, one-d-piece-v1): reading images,
grayscale and alpha around an RGB model, colour and orientation metadata (ICC, EXIF, PNG's
sRGB/gAMA/cHRM), and what the CLI needs of the image modality (`read`, `write`, `measure`,
`summary`; an audio modality module offers the same four).
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokc import format as fmt
from tokc.compress.base import CodecError, Decoded, EncodeResult

SUFFIX = ".png"  # what decompress writes by default
MEASURE = ("psnr", "PSNR", "dB")  # the JSON key, name and unit of `measure`
OUTPUT_KINDS = {"png": "PNG", "ppm": "PPM", "pgm": "PPM", "pnm": "PPM", "tif": "TIFF",
                "tiff": "TIFF", "bmp": "BMP", "webp": "WEBP"}


def as_image(image, name: str | None = None) -> np.ndarray:
    """A path, PIL image or array -> uint8 array (H, W), (H, W, 2) grey + alpha, (H, W, 3) or
    (H, W, 4). Paths and PIL images take one conversion (`from_pil`), whatever their mode."""
    if isinstance(image, (str, Path)):
        image = read_image(image)
    elif _is_pil(image):
        image = from_pil(image, name or "image")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise CodecError(f"expected an image of shape (H, W), (H, W, 2), (H, W, 3) or (H, W, 4), "
                         f"got {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise CodecError("empty image")
    if arr.dtype == np.uint16:
        warnings.warn(DEEP)
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and 0 <= arr.min() and arr.max() <= 1:
            arr = np.round(arr * 255).astype(np.uint8)
        else:
            raise CodecError(f"expected uint8 or uint16 pixels (or floats in 0..1), got {arr.dtype}")
    return arr


DEEP = "16-bit input reduced to 8 bits"


def _is_pil(image) -> bool:
    from PIL import Image

    return isinstance(image, Image.Image)


def from_pil(im, name: str) -> np.ndarray:
    """A PIL image of any mode -> what the codecs code: L (grey, also from 1, I;16, I and F),
    LA (grey + alpha), RGB (also from P, CMYK, YCbCr...), RGBA (any mode with transparency).
    Warns for 16-bit input and for animations (only the first frame is coded)."""
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        warnings.warn(f"{name}: animated image: only the first of its {frames} frames is coded")
    if im.mode in ("RGB", "RGBA") and any(";16" in str(t.args) for t in getattr(im, "tile", ())):
        warnings.warn(DEEP)  # Pillow reads 48/64-bit RGB(A) as 8 bits per channel
    im.load()
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        warnings.warn(DEEP)
        return np.clip(np.asarray(im).astype(np.int64) >> 8, 0, 255).astype(np.uint8)
    if im.mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(im)
    if im.mode in ("1", "F"):
        return np.asarray(im.convert("L"))
    if im.mode == "La":
        return np.asarray(im.convert("LA"))
    if im.mode in ("PA", "RGBa") or "transparency" in im.info:
        return np.asarray(im.convert("RGBA"))
    if im.mode == "P" and not im.getpalette():
        return np.asarray(im.convert("L"))
    return np.asarray(im.convert("RGB"))


def read_image(source, name: str | None = None) -> np.ndarray:
    """Read PNG, JPEG, WebP, TIFF, PPM... (a path or a binary file object) with Pillow."""
    from PIL import Image, UnidentifiedImageError

    name = name or str(source)
    try:
        with Image.open(source) as im:
            return from_pil(im, name)
    except UnidentifiedImageError:
        empty = hasattr(source, "getbuffer") and not source.getbuffer().nbytes
        raise CodecError(f"{name}: cannot read image: "
                         + ("empty file" if empty else "not an image file Pillow can read")) from None
    except (Image.DecompressionBombError, OSError, ValueError) as e:
        raise CodecError(f"{name}: cannot read image: {e}") from None


def split_alpha_gray(img: np.ndarray):
    """-> (rgb to code, channels for the header, extra chunks). Grayscale is coded through the
    RGB model as R=G=B (no chroma is spent) and decoded back to one channel; alpha is coded
    losslessly as a PNG chunk. Channels: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA."""
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2), 1, ()
    if img.shape[2] in (2, 4):
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(img[:, :, -1])).save(buf, "PNG", optimize=True)
        colour = img[:, :, :3] if img.shape[2] == 4 else np.repeat(img[:, :, :1], 3, axis=2)
        return np.ascontiguousarray(colour), img.shape[2], (fmt.Chunk("alph", buf.getvalue()),)
    return img, 3, ()


def merge_alpha_gray(rgb: np.ndarray, channels: int, by_tag: dict) -> np.ndarray:
    grey = channels in (1, 2)
    if grey:
        rgb = np.round(rgb.astype(np.float32).mean(2)).astype(np.uint8)
    if channels in (2, 4):
        from PIL import Image

        if "alph" not in by_tag:
            raise fmt.TokcFormatError(f"an image with alpha ({channels} channels) without its "
                                      f"'alph' chunk")
        try:
            plane = Image.open(io.BytesIO(by_tag["alph"]))
            if (plane.height, plane.width) != rgb.shape[:2]:  # checked before decoding it
                raise fmt.TokcFormatError("alpha plane has the wrong size")
            alpha = np.asarray(plane)
        except fmt.TokcFormatError:
            raise
        except Exception as e:
            raise fmt.TokcFormatError(f"alpha chunk does not decode: {e}") from None
        if alpha.shape != rgb.shape[:2]:
            raise fmt.TokcFormatError("alpha plane has the wrong size")
        return np.dstack([rgb, alpha.astype(np.uint8)])
    return rgb


# --- colour and orientation metadata -----------------------------------------------------------
# Kept by default (as avifenc; cwebp -metadata icc,exif), in optional chunks that both image
# codecs write after their own, so the token stream is the same with or without them. Pixels are
# coded as stored: the EXIF orientation is KEPT (written back unchanged, so viewers rotate the
# decoded image as they rotated the original), never applied. docs/FORMAT.md has the layout.

ICC_TAG, EXIF_TAG = "iccp", "exif"
PNG_COLOUR = {"sRGB": 1, "gAMA": 4, "cHRM": 32}  # PNG chunk type (= tokc tag) -> body length
MAX_ICC_BYTES = 1 << 22  # 4 MiB: printer profiles with large tables are ~1-3 MB
MAX_EXIF_BYTES = 1 << 20  # 1 MiB: JPEG caps EXIF at 64 KiB
ORIENTATION = 0x0112
_ICC_SPACES = {1: b"GRAY", 2: b"GRAY", 3: b"RGB ", 4: b"RGB "}  # by the header's channels


@dataclass(frozen=True)
class ImageMetadata:
    """What an image file says about its pixels besides the pixels: an ICC profile, EXIF
    (TIFF-structured bytes, starting `II*` or `MM*`, without JPEG's `Exif` prefix), and PNG's
    colour chunks sRGB, gAMA, cHRM as (type, body) pairs, their bodies as PNG stores them."""

    icc_profile: bytes | None = None
    exif: bytes | None = None
    png_colour: tuple[tuple[str, bytes], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.icc_profile or self.exif or self.png_colour)

    @property
    def orientation(self) -> int:
        """The EXIF orientation, 1..8 (1, as stored, when there is none); tokc keeps it, so an
        app shows the pixels as `PIL.ImageOps.exif_transpose` would."""
        if not self.exif:
            return 1
        from PIL import Image

        try:
            exif = Image.Exif()
            exif.load(self.exif)
            value = int(exif.get(ORIENTATION, 1))
        except Exception:  # a damaged EXIF block (kept as it came): no orientation
            return 1
        return value if 1 <= value <= 8 else 1

    def chunks(self) -> tuple[fmt.Chunk, ...]:
        out = [fmt.Chunk(ICC_TAG, self.icc_profile)] if self.icc_profile else []
        out += [fmt.Chunk(EXIF_TAG, self.exif)] if self.exif else []
        return (*out, *(fmt.Chunk(tag, body) for tag, body in self.png_colour))

    @classmethod
    def from_chunks(cls, by_tag: dict) -> ImageMetadata:
        """The metadata chunks of a file (by tag), each checked: an oversized one is a
        LimitError, a malformed one a CorruptError, before any image library sees it."""
        for tag, payload in by_tag.items():
            if tag in (ICC_TAG, EXIF_TAG, *PNG_COLOUR):
                problem = _metadata_problem(tag, payload)
                if problem:
                    error = fmt.LimitError if "exceeds" in problem else fmt.CorruptError
                    raise error(f"chunk {tag!r}: {problem}")
        return cls(by_tag.get(ICC_TAG), by_tag.get(EXIF_TAG),
                   tuple((t, by_tag[t]) for t in PNG_COLOUR if t in by_tag))

    def save_options(self, kind: str) -> dict:
        """Pillow's save() keywords that write this metadata into a `kind` file."""
        if kind not in ("PNG", "WEBP", "TIFF"):
            return {}
        options = {k: v for k, v in (("icc_profile", self.icc_profile), ("exif", self.exif)) if v}
        if kind == "PNG" and self.png_colour:  # Pillow leaves sRGB out next to an ICC profile
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            for tag, body in self.png_colour:
                info.add(tag.encode(), body)
            options["pnginfo"] = info
        return options


def _metadata_problem(tag: str, payload: bytes) -> str | None:
    """What is wrong with a metadata chunk, or None; the encoder drops what the decoder would
    refuse, so that every file it writes decodes."""
    n = len(payload)
    if tag == ICC_TAG:
        if n > MAX_ICC_BYTES:
            return f"an ICC profile of {n} bytes exceeds the limit of {MAX_ICC_BYTES} bytes"
        if n < 132 or payload[36:40] != b"acsp":
            return "not an ICC profile (no 'acsp' signature)"
    elif tag == EXIF_TAG:
        if n > MAX_EXIF_BYTES:
            return f"EXIF of {n} bytes exceeds the limit of {MAX_EXIF_BYTES} bytes"
        if n < 8 or payload[:4] not in (b"II*\0", b"MM\0*"):
            return "not TIFF-structured EXIF (no 'II*' or 'MM*' header)"
    elif n != PNG_COLOUR[tag]:
        return f"{n} bytes where PNG's {tag} has {PNG_COLOUR[tag]}"
    elif tag == "sRGB":
        return f"rendering intent {payload[0]} (0..3)" if payload[0] > 3 else None
    elif payload == bytes(n) or any(v >= 1 << 31 for v in struct.unpack(f">{n // 4}I", payload)):
        return "a value out of PNG's range"
    return None


def metadata_of(source, name: str | None = None) -> ImageMetadata:
    """The metadata of an image: a path, a binary file object or a PIL image (what Pillow
    finds on opening it; an array has none). From TIFF input only the orientation is kept of
    its tags; EXIF that a PNG stores after its image data is not read."""
    from PIL import Image

    if _is_pil(source):
        return _pil_metadata(source)
    if not isinstance(source, (str, Path)) and not hasattr(source, "read"):
        return ImageMetadata()
    try:
        with Image.open(source) as im:
            return _pil_metadata(im)
    except (OSError, ValueError, SyntaxError) as e:
        raise CodecError(f"{name or source}: cannot read image: {e}") from None


def _pil_metadata(im) -> ImageMetadata:
    info = im.info
    exif = info.get("exif") or None
    if isinstance(exif, bytes) and exif.startswith(b"Exif\0\0"):
        exif = exif[6:]
    if exif is None and im.format == "TIFF" and im.getexif().get(ORIENTATION):
        from PIL import Image

        only = Image.Exif()
        only[ORIENTATION] = im.getexif()[ORIENTATION]
        exif = only.tobytes()[6:]
    png = []
    if info.get("srgb") is not None:
        png.append(("sRGB", bytes([int(info["srgb"]) & 0xFF])))
    if info.get("gamma"):
        png.append(("gAMA", struct.pack(">I", round(info["gamma"] * 100000))))
    if info.get("chromaticity") and len(info["chromaticity"]) == 8:
        png.append(("cHRM", struct.pack(">8I", *(round(v * 100000) for v in info["chromaticity"]))))
    return ImageMetadata(info.get("icc_profile") or None, exif if isinstance(exif, bytes) else None,
                         tuple(png))


def metadata_chunks(image, metadata, channels: int, name: str | None = None) -> tuple[fmt.Chunk, ...]:
    """The metadata chunks an image codec appends to its own. metadata: True (what `image`
    carries, if a path, file object or PIL image), False or None (none), or an ImageMetadata.
    What the decoder would refuse is dropped with a warning, and so is an ICC profile of
    another colour space than the coded pixels' (a CMYK profile of a CMYK JPEG coded as RGB)."""
    if metadata is True:
        metadata = metadata_of(image, name)
    if not metadata:
        return ()
    if not isinstance(metadata, ImageMetadata):
        raise CodecError(f"metadata= takes True, False or an ImageMetadata, not "
                         f"{type(metadata).__name__}")
    name = name or "image"
    kept = []
    for chunk in metadata.chunks():
        problem = _metadata_problem(chunk.tag, chunk.payload)
        if problem is None and chunk.tag == ICC_TAG and chunk.payload[16:20] != _ICC_SPACES[channels]:
            space = chunk.payload[16:20].decode("latin-1").strip()
            problem = f"a {space} profile does not describe the coded {channels}-channel pixels"
        if problem:
            warnings.warn(f"{name}: {chunk.tag} metadata dropped: {problem}")
        else:
            kept.append(chunk)
    return tuple(kept)


def keeps_metadata(codec) -> bool:
    """Whether an image codec keeps metadata (its compress takes metadata=, as both of tokc's
    do); the CLI and tokc.compress pass it only then, so a codec without it still registers."""
    import inspect

    try:
        return "metadata" in inspect.signature(codec.compress).parameters
    except (TypeError, ValueError):
        return False


def stored_metadata(data: bytes) -> ImageMetadata:
    """The metadata in a .tokc file's bytes (empty for a file without, or of audio), checked
    as the decoders check it; the container is read, the payload not decoded."""
    header, chunks = fmt.unpack(data)
    if header.modality != "image":
        return ImageMetadata()
    return ImageMetadata.from_chunks({c.tag: c.payload for c in chunks})


# --- the modality, as the CLI sees it ----------------------------------------------------------


def read(raw: bytes, name: str) -> np.ndarray:
    """An input file's bytes -> what the image codecs compress."""
    return as_image(read_image(io.BytesIO(raw), name))


PNG_LEVEL = 1


def write(pixels: Decoded, name: str, metadata: ImageMetadata | None = None) -> bytes:
    """Decoded pixels -> the bytes of a lossless image file, its format by the name's suffix
    (PNG for stdout), with the metadata where the format holds it (ICC and EXIF in PNG, TIFF
    and WebP; PNG's sRGB, gAMA, cHRM in PNG only)."""
    from PIL import Image

    suffix = "png" if name == "-" else Path(name).suffix.lower().lstrip(".")
    kind = OUTPUT_KINDS.get(suffix)
    if kind is None:
        raise CodecError(f"cannot write {name}: use .png, .ppm/.pgm, .tif, .bmp or .webp (lossless)")
    im = Image.fromarray(np.ascontiguousarray(pixels))
    netpbm = {"pgm": ("L", "grey"), "ppm": ("RGB", "RGB")}.get(suffix)  # P5 / P6, as named
    if netpbm and im.mode != netpbm[0]:
        if im.mode not in ("L", "RGB"):
            warnings.warn(f"{name}: .{suffix} holds no alpha; written as {netpbm[1]}")
        elif suffix == "pgm":
            warnings.warn(f"{name}: .pgm is greyscale; the colour image is written as grey")
        im = im.convert(netpbm[0])
    elif kind == "PPM" and im.mode not in ("L", "RGB"):  # .pnm: grey or RGB as decoded
        warnings.warn(f"{name}: .{suffix} holds no alpha; written without it")
        im = im.convert("L" if im.mode == "LA" else "RGB")
    options = metadata.save_options(kind) if metadata else {}
    if metadata and (metadata.icc_profile or metadata.exif) and not options:
        warnings.warn(f"{name}: .{suffix} holds no ICC profile or EXIF; written without them "
                      f"(use .png, .tif or .webp to keep them)")
    # PNG at zlib level 1: kodim23 writes in 83 ms against 313 at Pillow's default level 6, for
    # 11 % more bytes (a decoded image is more often an intermediate than an archive)
    lossless = {"lossless": True} if kind == "WEBP" else {"compress_level": PNG_LEVEL} if kind == "PNG" else {}
    buf = io.BytesIO()
    try:
        im.save(buf, kind, **lossless, **options)
    except Exception as e:  # metadata that Pillow cannot write (a forged EXIF into TIFF)
        if not options:
            raise
        warnings.warn(f"{name}: written without its metadata, which Pillow could not write: {e}")
        buf = io.BytesIO()
        im.save(buf, kind, **lossless)
    return buf.getvalue()


def measure(original: np.ndarray, decoded: Decoded) -> float:
    from tokc.metrics.image import psnr

    return psnr(original, decoded)


def summary(res: EncodeResult) -> tuple[dict, str]:
    """The size fields of a compress summary: JSON fields and the text."""
    return ({"bpp": round(res.bpp, 4), "width": res.width, "height": res.height},
            f"{res.bpp:.3f} bpp")


def describe(decoded: Decoded) -> str:
    h, w = decoded.shape[:2]
    return f"{w}x{h}"
