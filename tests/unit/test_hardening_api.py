"""Issue 16, the Python API and image input: the docstring's snippet called twice, PIL images
of any mode converted as their files are, greyscale kept, loose arguments refused, and
tokc.decompress on bytes, paths and file objects."""

import io
import math
import re
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tokc
from tokc.compress.base import CodecUsageError
from tokc.compress.pixels import as_image

WEIGHTS = Path(tokc.__file__).parent / "weights"


def test_docstring_snippet_runs_twice_in_a_fresh_interpreter(photo, tmp_path):
    """The module docstring's snippet as written (its audio lines where the audio weights are
    shipped), twice, as a user runs it."""
    lines = [line.strip() for line in tokc.__doc__.splitlines() if line.startswith("    ")]
    if not (WEIGHTS / "tokc-audio-v1.safetensors").exists():
        lines = [line for line in lines if "sound" not in line and ".wav" not in line]
    else:
        import soundfile

        soundfile.write(tmp_path / "talk.wav", np.zeros(1600, np.float32), 16000)
    assert any("tokc.compress(" in line for line in lines)
    snippet = "\n".join(lines)
    Image.fromarray(photo[:48, :40]).save(tmp_path / "photo.png")
    code = f"{snippet}\n{snippet}\nprint(pixels.shape, callable(tokc.compress))"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["(48,", "40,", "3)", "True"]


def _saved(im: Image.Image, tmp_path, fmt_: str) -> Path:
    p = tmp_path / f"in.{fmt_}"
    im.save(p)
    return p


@pytest.mark.parametrize("mode,suffix,shape", [
    ("P", "png", (32, 40, 3)),
    ("CMYK", "tif", (32, 40, 3)),
    ("LA", "png", (32, 40, 2)),
    ("I;16", "png", (32, 40)),
    ("F", "tif", (32, 40)),
    ("1", "png", (32, 40)),
])
def test_pil_images_convert_as_their_files_do(photo, tmp_path, mode, suffix, shape):
    rgb = Image.fromarray(photo[:32, :40])
    if mode == "LA":
        im = Image.merge("LA", (rgb.convert("L"), Image.fromarray(photo[:32, :40, 1])))
    elif mode == "I;16":
        im = Image.fromarray(photo[:32, :40, 0].astype(np.uint16) * 257)
    elif mode == "F":
        im = rgb.convert("L").convert("F")
    else:
        im = rgb.convert(mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_image = as_image(im)
        from_path = as_image(_saved(im, tmp_path, suffix))
    assert from_image.shape == shape and from_image.dtype == np.uint8
    np.testing.assert_array_equal(from_image, from_path)
    if mode in ("P", "CMYK"):  # the colours, not palette indices or ink amounts
        np.testing.assert_array_equal(from_image, np.asarray(im.convert("RGB")))


def test_greyscale_is_kept_for_la_and_f(photo, tiny_codec):
    grey = Image.fromarray(photo[:32, :48]).convert("L")
    alpha = Image.fromarray(photo[:32, :48, 2])
    out = tiny_codec.decompress(tiny_codec.compress(Image.merge("LA", (grey, alpha))).data)
    assert out.shape == (32, 48, 2)
    np.testing.assert_array_equal(out[:, :, 1], np.asarray(alpha))  # alpha is lossless
    out = tiny_codec.decompress(tiny_codec.compress(grey.convert("F")).data)
    assert out.shape == (32, 48)


def _png16_rgb(arr: np.ndarray) -> bytes:
    """A 48-bit RGB PNG (Pillow reads these but does not write them)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def test_16_bit_rgb_warns_like_16_bit_grey(tmp_path):
    arr = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 1000).astype(np.uint16)
    p = tmp_path / "deep.png"
    p.write_bytes(_png16_rgb(arr))
    with pytest.warns(UserWarning, match="16-bit input reduced to 8 bits"):
        out = as_image(p)
    np.testing.assert_array_equal(out, arr >> 8)
    with pytest.warns(UserWarning, match="16-bit"):
        as_image(Image.open(p))


def test_animated_images_warn_that_one_frame_is_coded(photo, tmp_path):
    frames = [Image.fromarray(photo[:16, :16]), Image.fromarray(photo[16:32, :16])]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="only the first of its 2 frames"):
        as_image(p)


def test_compress_refuses_two_rates_as_the_cli_does(photo, tiny_weights):
    with pytest.raises(CodecUsageError, match="at most one of"):
        tokc.compress(photo, quality=50, size=1000, model=str(tiny_weights))
    with pytest.raises(CodecUsageError, match="at most one of"):
        tokc.compress(photo, size=1000, psnr=30, model=str(tiny_weights))


@pytest.mark.parametrize("target", [math.nan, math.inf, -5.0, 0.0])
def test_psnr_target_must_be_a_positive_number(photo, tiny_weights, target):
    with pytest.raises(CodecUsageError, match="PSNR"):
        tokc.compress(photo[:32, :32], psnr=target, model=str(tiny_weights))


def test_decompress_takes_bytes_paths_and_binary_files(photo, tiny_weights, tmp_path):
    data = tokc.compress(photo[:32, :32], quality=30, model=str(tiny_weights))
    p = tmp_path / "x.tokc"
    p.write_bytes(data)
    want = tokc.decompress(data, model=str(tiny_weights))
    for source in (bytearray(data), memoryview(data), str(p), p, io.BytesIO(data)):
        np.testing.assert_array_equal(tokc.decompress(source, model=str(tiny_weights)), want)
    with open(p, "rb") as f:
        np.testing.assert_array_equal(tokc.decompress(f, model=str(tiny_weights)), want)
    with open(p, encoding="latin-1") as f, pytest.raises(TypeError, match="binary mode"):
        tokc.decompress(f)
    with pytest.raises(TypeError, match=re.escape("a path or a binary file object, not int")):
        tokc.decompress(3)
    with pytest.raises(FileNotFoundError):
        tokc.decompress(tmp_path / "missing.tokc")
