"""`tokc compress -m one-d-piece --checkpoint PATH --tokens K` / `tokc decompress --checkpoint`
with the One-D-Piece parity fixture (a random-init tiny model: 64x64 input, 8 tokens, 64 codes)."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tokc import format as fmt
from tokc.cli import main

torch = pytest.importorskip("torch")

from tokc.compress import tokens as tk  # noqa: E402

ODP = Path(__file__).resolve().parents[2].parent / "shared/fixtures/one_d_piece"
WETOK = ODP.parent / "wetok"
pytestmark = pytest.mark.skipif(not (ODP / "model.safetensors").exists(), reason="no fixture")


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


@pytest.fixture()
def png(tmp_path):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:37, 0:50]
    img = np.stack([x * 5, y * 6, (x + y) * 3], -1) + rng.integers(0, 20, (37, 50, 3))
    p = tmp_path / "in.png"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p)
    return p


def test_pack_bits_round_trip():
    rng = np.random.default_rng(1)
    for bits in (1, 6, 12, 13):
        v = rng.integers(0, 1 << bits, 37)
        data = tk.pack_bits(v, bits)
        assert len(data) == -(-37 * bits // 8)
        np.testing.assert_array_equal(tk.unpack_bits(data, 37, bits), v)
    assert tk.pack_bits([1, 2, 3], 12) == bytes([0x01, 0x20, 0x00, 0x03, 0x00])  # LSB first
    with pytest.raises(fmt.CorruptError, match="need"):
        tk.unpack_bits(b"\x00\x00", 3, 12)
    with pytest.raises(fmt.CorruptError, match="padding"):
        tk.unpack_bits(bytes([0, 0, 0, 0, 0x10]), 3, 12)
    assert tk.bit_width(4096) == 12 and tk.bit_width(64) == 6 and tk.bit_width(1000) == 10


def test_compress_decompress_prefixes(png, tmp_path):
    codec = tk.OneDPieceCodec(ODP)
    img = np.asarray(Image.open(png))
    sizes = {}
    for k in (1, 3, 8):
        out = tmp_path / f"k{k}.tokc"
        r = run("compress", png, "-m", "one-d-piece", "--checkpoint", ODP, "--tokens", k, "-o", out)
        assert r.exit_code == 0, r.output
        assert f"{k} tokens x 6 bits" in r.stderr
        data = out.read_bytes()
        sizes[k] = len(data)
        header, chunks = fmt.unpack(data)
        assert header.codec == "one-d-piece-v1" and (header.width, header.height, header.channels) == (50, 37, 3)
        assert header.rate_dict() == {"tokens": k, "bits": 6}
        assert [c.tag for c in chunks] == ["tokr"] and len(chunks[0].payload) == -(-k * 6 // 8)
        # the coded prefix is the model's tokens of the image resized to 64x64
        x = torch.from_numpy(tk.resize_rgb(img, 64, 64).astype(np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            want = codec.model.encode(x.contiguous()).reshape(-1)[:k].numpy()
        np.testing.assert_array_equal(codec.read(data)[1], want)
        back = tmp_path / f"k{k}.png"
        r = run("decompress", out, "--checkpoint", ODP, "-o", back)
        assert r.exit_code == 0, r.output
        dec = np.asarray(Image.open(back))
        assert dec.shape == img.shape and dec.dtype == np.uint8
        np.testing.assert_array_equal(dec, codec.decompress(data))
    assert sizes[1] < sizes[3] < sizes[8]


def test_default_all_tokens_gray_and_stdout(png, tmp_path):
    gray = tmp_path / "g.png"
    Image.open(png).convert("L").save(gray)
    r = run("compress", gray, "-m", "one-d-piece", "--checkpoint", ODP / "model.safetensors", "--json")
    assert r.exit_code == 0, r.output
    assert '"tokens": 8' in r.stdout
    data = gray.with_suffix(".tokc").read_bytes()
    assert fmt.read_header(data).channels == 1
    r = run("decompress", "-", "--checkpoint", ODP, input=data)
    assert r.exit_code == 0 and r.stdout_bytes[:4] == b"\x89PNG"


def test_bad_input_one_line_and_nothing_written(png, tmp_path):
    out = tmp_path / "o.tokc"
    usage = [
        (["--tokens", 0], "at least 1"),
        (["--tokens", 9], "1..8"),
        (["-q", 50], "--tokens"),
        (["--backend", "onnx"], "PyTorch"),
    ]
    for extra, message in usage:
        r = run("compress", png, "-m", "one-d-piece", "--checkpoint", ODP, "-o", out, *extra)
        assert r.exit_code == 2 and message in r.stderr, (extra, r.output)
        assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    r = run("compress", png, "-m", "one-d-piece", "-o", out)
    assert r.exit_code == 2 and "--checkpoint" in r.stderr
    r = run("compress", png, "--tokens", 3, "-o", out)
    assert r.exit_code == 2 and "go with -m one-d-piece" in r.stderr
    r = run("compress", png, "-m", "one-d-piece", "--checkpoint", WETOK, "-o", out)  # another arch
    assert r.exit_code == 1 and r.stderr.startswith("tokc: error:") and not out.exists()
    assert len(r.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    r = run("compress", bad, "-m", "one-d-piece", "--checkpoint", ODP, "-o", out)
    assert r.exit_code == 1 and "cannot read image" in r.stderr and not out.exists()

    r = run("compress", png, "-m", "one-d-piece", "--checkpoint", ODP, "--tokens", 4, "-o", out)
    assert r.exit_code == 0
    data = out.read_bytes()
    back = tmp_path / "back.png"
    r = run("decompress", out, "-o", back)  # no checkpoint
    assert r.exit_code == 2 and "--checkpoint" in r.stderr and not back.exists()
    r = run("decompress", out, "--checkpoint", WETOK, "-o", back)
    assert r.exit_code == 1 and not back.exists()
    corrupt = tmp_path / "c.tokc"
    corrupt.write_bytes(data[:-6] + bytes([data[-6] ^ 1]) + data[-5:])
    r = run("decompress", corrupt, "--checkpoint", ODP, "-o", back)
    assert r.exit_code == 1 and "CRC" in r.stderr.upper() and not back.exists()
    assert len(r.stderr.strip().splitlines()) == 1
    r = run("decompress", corrupt.with_name("missing.tokc"), "--checkpoint", ODP, "-o", back)
    assert r.exit_code == 1 and "no such file" in r.stderr


def test_wrong_weights_digest_and_forged_header(png, tmp_path):
    codec = tk.OneDPieceCodec(ODP)
    res = codec.compress(np.asarray(Image.open(png)), tokens=2)
    header, chunks = fmt.unpack(res.data)
    forged = fmt.Header(codec=header.codec, weights_digest=b"\x00" * 8, modality="image",
                        width=header.width, height=header.height, channels=3, rate=header.rate)
    with pytest.raises(fmt.WeightsMismatchError):
        codec.decompress(fmt.pack(forged, chunks))
    too_many = fmt.Header(codec=header.codec, weights_digest=header.weights_digest, modality="image",
                          width=header.width, height=header.height, channels=3, rate={"tokens": 9, "bits": 6})
    with pytest.raises(fmt.CorruptError, match="1..8"):
        codec.decompress(fmt.pack(too_many, chunks))
    with pytest.raises(fmt.CorruptError, match="tokr"):
        codec.decompress(fmt.pack(header, [fmt.Chunk("xxxx", b"")]))
    assert tk.is_token_file(res.data) and not tk.is_token_file(b"junk")
