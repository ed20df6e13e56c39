"""Issue 16 item 5: colour and orientation metadata. The ICC profile, EXIF and PNG's
sRGB/gAMA/cHRM are kept (by default; --strip drops them) in optional chunks that leave the
tokens as they are, and written back on decompress; orientation is kept, not applied."""

import io
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

import tokc
from tokc import format as fmt
from tokc.cli import main
from tokc.compress import pixels

META_TAGS = {"iccp", "exif", "sRGB", "gAMA", "cHRM"}


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def exif6() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    exif[0x010F] = "tokc test camera"
    return exif.tobytes()


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    """64 wide, 48 high: a rotation would show in the shape."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64]
    img = np.stack([x * 3, y * 4, (x + y) * 2], -1) + rng.integers(0, 30, (48, 64, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture()
def tagged_png(tmp_path, rgb, icc, exif6):
    p = tmp_path / "phone.png"
    Image.fromarray(rgb).save(p, icc_profile=icc, exif=exif6)
    return p


def _split(data: bytes):
    header, chunks = fmt.unpack(data)
    return header, [c for c in chunks if c.tag not in META_TAGS], [c for c in chunks
                                                                    if c.tag in META_TAGS]


def test_icc_and_exif_orientation_round_trip_through_the_cli(tagged_png, tiny_weights, icc, rgb):
    out = tagged_png.with_suffix(".tokc")
    r = run("compress", tagged_png, "-q", 40, "-m", tiny_weights, "--backend", "torch")
    assert r.exit_code == 0, r.output
    back = tagged_png.with_name("back.png")
    r = run("decompress", out, "-o", back, "-m", tiny_weights)
    assert r.exit_code == 0, r.output
    with Image.open(back) as im:
        assert im.info["icc_profile"] == icc
        assert im.getexif()[0x0112] == 6
        assert im.getexif()[0x010F] == "tokc test camera"
        assert im.size == (64, 48)  # kept, not applied: the pixels as stored
    meta = tokc.read_metadata(out)
    assert meta.icc_profile == icc and meta.orientation == 6
    assert tokc.decompress(out, model=str(tiny_weights)).shape == rgb.shape


@pytest.mark.parametrize("suffix", [".tif", ".webp"])
def test_tiff_and_webp_outputs_keep_them(tagged_png, tiny_weights, icc, suffix):
    data = tokc.compress(tagged_png, quality=40, model=str(tiny_weights))
    src = tagged_png.with_name("x.tokc")
    src.write_bytes(data)
    back = tagged_png.with_name("back" + suffix)
    assert run("decompress", src, "-o", back, "-m", tiny_weights).exit_code == 0
    with Image.open(back) as im:
        assert im.info["icc_profile"] == icc and im.getexif()[0x0112] == 6


def test_a_jpeg_photo_keeps_its_profile_and_orientation(tmp_path, rgb, icc, exif6, tiny_weights):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", icc_profile=icc, exif=exif6)
    data = tokc.compress(Image.open(io.BytesIO(buf.getvalue())), quality=40,
                         model=str(tiny_weights))
    meta = tokc.read_metadata(data)
    assert meta.icc_profile == icc and meta.orientation == 6
    assert meta.exif[:2] in (b"II", b"MM")  # stored without JPEG's "Exif\0\0"


def test_tokens_are_identical_with_and_without_metadata(tagged_png, tiny_weights, rgb):
    keep = run("compress", tagged_png, "-o", tagged_png.with_name("keep.tokc"), "-q", 40,
               "-m", tiny_weights)
    strip = run("compress", tagged_png, "-o", tagged_png.with_name("strip.tokc"), "-q", 40,
                "-m", tiny_weights, "--strip")
    assert keep.exit_code == strip.exit_code == 0, (keep.output, strip.output)
    kept = _split(tagged_png.with_name("keep.tokc").read_bytes())
    stripped = _split(tagged_png.with_name("strip.tokc").read_bytes())
    assert kept[0] == stripped[0] and kept[1] == stripped[1]  # header and coded chunks, bytes
    assert {c.tag for c in kept[2]} == {"iccp", "exif"} and stripped[2] == []
    plain = tokc.compress(rgb, quality=40, model=str(tiny_weights))  # an array carries none
    assert _split(plain)[1:] == (kept[1], [])
    assert _split(tokc.compress(tagged_png, quality=40, model=str(tiny_weights),
                                metadata=False))[1:] == (kept[1], [])
    back = tagged_png.with_name("strip.png")
    assert run("decompress", tagged_png.with_name("strip.tokc"), "-o", back,
               "-m", tiny_weights).exit_code == 0
    with Image.open(back) as im:
        assert "icc_profile" not in im.info and 0x0112 not in im.getexif()


def test_png_colour_chunks_are_kept_in_png(tmp_path, rgb, tiny_weights):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add(b"gAMA", (45455).to_bytes(4, "big"))
    info.add(b"sRGB", b"\x00")
    p = tmp_path / "srgb.png"
    Image.fromarray(rgb).save(p, pnginfo=info)
    data = tokc.compress(p, quality=40, model=str(tiny_weights))
    assert dict(tokc.read_metadata(data).png_colour) == {"sRGB": b"\x00",
                                                          "gAMA": (45455).to_bytes(4, "big")}
    out = pixels.write(tokc.decompress(data, model=str(tiny_weights)), "x.png",
                       tokc.read_metadata(data))
    with Image.open(io.BytesIO(out)) as im:
        assert im.info["srgb"] == 0 and im.info["gamma"] == 0.45455


def _with_chunk(data: bytes, chunk: fmt.Chunk) -> bytes:
    header, chunks = fmt.unpack(data)
    return fmt.pack(header, [*chunks, chunk])


@pytest.mark.parametrize("chunk,error", [
    (fmt.Chunk("iccp", b"\0" * (pixels.MAX_ICC_BYTES + 1)), fmt.LimitError),
    (fmt.Chunk("exif", b"MM\0*" + b"\0" * pixels.MAX_EXIF_BYTES), fmt.LimitError),
    (fmt.Chunk("exif", b"<not exif>"), fmt.CorruptError),
    (fmt.Chunk("iccp", b"\0" * 200), fmt.CorruptError),
    (fmt.Chunk("gAMA", b"\0\0\0"), fmt.CorruptError),
    (fmt.Chunk("sRGB", b"\x09"), fmt.CorruptError),
])
def test_a_forged_metadata_chunk_is_a_clean_format_error(tmp_path, rgb, tiny_weights, chunk, error):
    data = _with_chunk(tokc.compress(rgb, quality=40, model=str(tiny_weights)), chunk)
    with pytest.raises(error, match=repr(chunk.tag)):
        tokc.decompress(data, model=str(tiny_weights))
    with pytest.raises(error):
        tokc.read_metadata(data)
    f = tmp_path / "forged.tokc"
    f.write_bytes(data)
    r = run("decompress", f, "-m", tiny_weights)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.startswith(f"tokc: error: {f}: chunk {chunk.tag!r}") and not f.with_suffix(
        ".png").exists()


def test_files_without_metadata_decode_as_before(tiny_weights, rgb):
    data = tokc.compress(rgb, quality=40, model=str(tiny_weights))
    assert not tokc.read_metadata(data) and tokc.read_metadata(data).orientation == 1
    assert pixels.write(tokc.decompress(data, model=str(tiny_weights)), "x.png",
                        tokc.read_metadata(data)) == pixels.write(
        tokc.decompress(data, model=str(tiny_weights)), "x.png")


def test_golden_file_has_no_metadata():
    from pathlib import Path

    golden = Path(__file__).parents[1] / "golden" / "image_v1_q60.tokc"
    assert tokc.read_metadata(golden) == tokc.ImageMetadata()


def test_a_profile_of_another_colour_space_is_dropped(icc):
    cmyk = icc[:16] + b"CMYK" + icc[20:]
    meta = tokc.ImageMetadata(icc_profile=cmyk)
    with pytest.warns(UserWarning, match="CMYK profile"):
        assert pixels.metadata_chunks(None, meta, 3) == ()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [c.tag for c in pixels.metadata_chunks(None, tokc.ImageMetadata(icc), 3)] == ["iccp"]


def test_formats_without_metadata_say_so(rgb, icc):
    with pytest.warns(UserWarning, match="holds no ICC profile or EXIF"):
        pixels.write(rgb, "x.bmp", tokc.ImageMetadata(icc_profile=icc))
