"""`tokc info` on real .tokc files."""

import json

import pytest
from click.testing import CliRunner

from tokc.cli import main
from tokc.format import Chunk, Header, pack

DIGEST = bytes.fromhex("a1b2c3d4e5f60718")
IMAGE = Header("tokc-image-v1", DIGEST, "image", width=640, height=480, channels=3,
               rate=(("q", 75), ("level_milli", 2500)))
AUDIO = Header("tokc-audio-v1", DIGEST, "audio", sample_rate=48000, channels=2,
               num_samples=96000, rate=(("kbps", 6),))


def runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click 8.1
    except TypeError:
        return CliRunner()  # click >= 8.2 keeps stderr apart


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "photo.tokc"
    path.write_bytes(pack(IMAGE, [Chunk("TOKS", bytes(300)), Chunk("SIDE", bytes(20))]))
    return path


def test_info_prints_the_header_and_chunks(image_file):
    result = runner().invoke(main, ["info", str(image_file)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    size = image_file.stat().st_size
    for line in [
        "codec       tokc-image-v1",
        "modality    image",
        "dimensions  640x480, 3 channels",
        "rate        q=75 level_milli=2500",
        "weights     a1b2c3d4e5f60718",
        "chunks      2 (CRCs ok; the payload is not decoded, so not checked)",
        "payload     320 bytes",
        f"overhead    {size - 320} bytes",
        f"total       {size} bytes",
    ]:
        assert line in out.splitlines()
    assert "#0    TOKS         300 bytes" in out
    assert "#1    SIDE          20 bytes" in out


def test_info_json_for_audio(tmp_path):
    chunks = [Chunk("AUDI", bytes(100 + i)) for i in range(3)]
    path = tmp_path / "voice.tokc"
    path.write_bytes(pack(AUDIO, chunks))
    result = runner().invoke(main, ["info", "--json", str(path)])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    size = path.stat().st_size
    assert d["codec"] == "tokc-audio-v1"
    assert d["modality"] == "audio"
    assert (d["sample_rate"], d["channels"], d["num_samples"]) == (48000, 2, 96000)
    assert d["rate"] == {"kbps": 6}
    assert d["weights_digest"] == DIGEST.hex()
    assert d["chunks"] == [{"tag": "AUDI", "size": 100 + i} for i in range(3)]
    assert d["total_bytes"] == size
    assert d["overhead_bytes"] == size - 303
    assert d["format_version"] == 1


def test_info_audio_text(tmp_path):
    path = tmp_path / "voice.tokc"
    path.write_bytes(pack(AUDIO, []))
    result = runner().invoke(main, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "dimensions  48000 Hz, 2 channels, 96000 samples (2.000 s)" in result.stdout


def test_info_reads_stdin(image_file):
    result = runner().invoke(main, ["info", "--json", "-"], input=image_file.read_bytes())
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chunks"][0] == {"tag": "TOKS", "size": 300}


def test_info_summarises_long_chunk_lists(tmp_path):
    path = tmp_path / "long.tokc"
    path.write_bytes(pack(AUDIO, [Chunk("AUDI", b"x")] * 20))
    result = runner().invoke(main, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "  ... 4 more chunks" in result.stdout
    assert "#15" in result.stdout and "#16" not in result.stdout


@pytest.mark.parametrize("damage,message", [
    (lambda d: d[:100], "truncated at byte 100"),
    (lambda d: d[:40] + bytes([d[40] ^ 1]) + d[41:], "header CRC mismatch"),
    (lambda d: d[:4] + b"\x07" + d[5:], "format version 7 is newer"),
    (lambda d: b"hello, this is text\n", r"not a .tokc file"),
    (lambda d: b"", "truncated at byte 0"),
])
def test_info_bad_file_is_one_line_and_exit_1(image_file, damage, message):
    image_file.write_bytes(damage(image_file.read_bytes()))
    result = runner().invoke(main, ["info", str(image_file)])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"tokc: error: {image_file}: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_info_missing_file_fails_as_decompress_does(tmp_path):
    result = runner().invoke(main, ["info", str(tmp_path / "nope.tokc")])
    assert result.exit_code == 1  # a failure, not a usage error (issue 16)
    assert result.stderr == f"tokc: error: {tmp_path / 'nope.tokc'}: no such file\n"
