"""Issue 16 item 2: a small file cannot make a decoder take gigabytes.

A valid file whose header dimensions are forged (CRC recomputed) used to decode for minutes
into ~11 GB (8192x8192 from a 3.6 KB kodim23 file). Two guards: a pixel limit checked from the
header before any codec is opened (`--max-pixels`, `tokc.decompress(max_pixels=)`), and an
entropy decoder that fails as soon as the payload runs out of the claimed tokens."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from peak_rss import PEAK_KIB

import tokc
from tokc import format as fmt
from tokc.cli import main
from tokc.compress import registry
from tokc.compress.base import MAX_PIXELS, PixelLimitError

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "image_v1_q60.tokc"  # 192x128


def forged(width: int, height: int) -> bytes:
    header, chunks = fmt.unpack(GOLDEN.read_bytes())
    return fmt.pack(dataclasses.replace(header, width=width, height=height), chunks)


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def test_default_limit_is_pillows_decompression_bomb_limit():
    from PIL import Image

    assert MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS or Image.MAX_IMAGE_PIXELS is None
    assert 12000 * 12000 <= MAX_PIXELS < fmt.MAX_PIXELS  # 144 MP decodes by default


def test_api_refuses_from_the_header_before_opening_a_codec(monkeypatch):
    def must_not_open(*a, **k):
        raise AssertionError("a codec was opened for a file over the pixel limit")

    monkeypatch.setattr(registry, "for_header", must_not_open)
    with pytest.raises(PixelLimitError, match=r"16384x16384 image .* max_pixels=N") as e:
        tokc.decompress(forged(16384, 16384))  # within the format's 2**28, over the default
    assert isinstance(e.value, fmt.LimitError)  # a format error, like the container's limits
    with pytest.raises(PixelLimitError, match="24,576 pixels"):
        tokc.decompress(GOLDEN.read_bytes(), max_pixels=1000)


def test_cli_max_pixels(tmp_path):
    src = tmp_path / "bomb.tokc"
    src.write_bytes(forged(16384, 16384))
    out = tmp_path / "bomb.png"
    r = run("decompress", src, "-o", out)
    assert r.exit_code == 1 and not out.exists()
    assert "--max-pixels N" in r.stderr and "268,435,456 pixels" in r.stderr
    assert "Traceback" not in r.output
    small = tmp_path / "small.tokc"
    small.write_bytes(GOLDEN.read_bytes())
    r = run("decompress", small, "-o", out, "--max-pixels", 1000)
    assert r.exit_code == 1 and "192x128" in r.stderr and not out.exists()
    r = run("decompress", small, "-o", out, "--max-pixels", 0)  # 0: no limit
    assert r.exit_code == 0, r.output
    assert out.exists()
    assert "--max-pixels" in run("decompress", "--help").stdout


def test_forged_dimensions_fail_fast_in_bounded_memory(tmp_path):
    """The issue's reproduction on the shipped weights: dimensions forged to 8192x8192 (under
    the pixel limit) must end in a format error, in a second and well under 1 GB."""
    src = tmp_path / "forged.tokc"
    src.write_bytes(forged(8192, 8192))
    code = (
        "import time, tokc\n"
        "from tokc.compress.entropy import ExhaustedError\n"
        "t = time.perf_counter()\n"
        "try:\n"
        f"    tokc.decompress(open({str(src)!r}, 'rb').read())\n"
        "except ExhaustedError as e:\n"
        "    print('ExhaustedError', e)\n"
        f"print(time.perf_counter() - t, {PEAK_KIB})\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ExhaustedError the payload ends before the tokens"), r.stdout
    seconds, peak_kib = lines[-1].split()
    assert float(seconds) < 30  # before: minutes
    assert int(peak_kib) < 1 << 20  # KiB: under 1 GiB (before: 10.8 GB)


def test_a_cut_payload_is_a_format_error(tiny_codec, photo):
    """Tokens missing from the end of the stream: an error, never zeros or -offset values."""
    data = tiny_codec.compress(photo, quality=60).data
    header, chunks = fmt.unpack(data)
    ans = next(c for c in chunks if c.tag == "ans ")
    for keep in (len(ans.payload) // 2 // 4 * 4, 4):
        cut = [fmt.Chunk("ans ", ans.payload[:keep]) if c.tag == "ans " else c for c in chunks]
        with pytest.raises(fmt.TokcFormatError):
            tiny_codec.decompress(fmt.pack(header, cut))


def test_a_changed_stream_with_a_recomputed_crc_is_a_valid_file(tiny_codec, photo):
    """What docs/FORMAT.md says a file does not promise: CRCs catch accidents, not tampering.
    Random changes to an 'ans ' stream are caught by its end check (it must be used up
    exactly), but tokens decoded, changed and coded again, with fresh CRCs, make a valid file
    that decodes with no error to another image."""
    import numpy as np

    data = tiny_codec.compress(photo, quality=60).data
    original = tiny_codec.decompress(data)
    header, by_tag, z, c = tiny_codec.decode_tokens(data)
    level = header.rate_dict()["level_milli"]
    latent = tiny_codec.latent
    mean, log_scale_q = latent.entropy_params(z)
    calls = []

    def tokens(ch, part, offset, index):  # the decoded tokens, the very first one changed
        q = c.q[ch][:, part].copy()
        if not calls:
            q[0, 0] += 5
        calls.append(ch)
        return q

    changed = latent.walk(mean, log_scale_q, level, tokens)
    forged = fmt.pack(header, latent.chunks(z, changed))
    decoded = tiny_codec.decompress(forged)  # no error: a well-formed file
    assert decoded.shape == original.shape and not np.array_equal(decoded, original)
    for pos in range(0, len(by_tag["ans "]), 37):  # a random change: a clean error or an image
        payload = bytearray(by_tag["ans "])
        payload[pos] ^= 0x10
        try:
            tiny_codec.decompress(fmt.pack(header, [fmt.Chunk("ans ", bytes(payload))]))
        except fmt.TokcFormatError:
            pass
