"""Pixel I/O, shared by the image codecs (tokc-image-v1, one-d-piece-v1): reading images,
grayscale and alpha around an RGB model, and what the CLI needs of the image modality
(`read`, `write`, `measure`, `summary`; an audio modality module offers the same four).
"""

from __future__ import annotations

import io
import warnings
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
            alpha = np.asarray(Image.open(io.BytesIO(by_tag["alph"])))
        except Exception as e:
            raise fmt.TokcFormatError(f"alpha chunk does not decode: {e}") from None
        if alpha.shape != rgb.shape[:2]:
            raise fmt.TokcFormatError("alpha plane has the wrong size")
        return np.dstack([rgb, alpha.astype(np.uint8)])
    return rgb


# --- the modality, as the CLI sees it ----------------------------------------------------------


def read(raw: bytes, name: str) -> np.ndarray:
    """An input file's bytes -> what the image codecs compress."""
    return as_image(read_image(io.BytesIO(raw), name))


def write(pixels: Decoded, name: str) -> bytes:
    """Decoded pixels -> the bytes of a lossless image file, its format by the name's suffix
    (PNG for stdout)."""
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
    buf = io.BytesIO()
    im.save(buf, kind, **({"lossless": True} if kind == "WEBP" else {}))
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
