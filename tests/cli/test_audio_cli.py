"""tokc compress / decompress on audio files (a tiny packed tokc-audio-v1), with CliRunner."""

import io
import json

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from tokc.cli import main


@pytest.fixture()
def wav(tmp_path):
    t = np.arange(int(1.5 * 22050)) / 22050
    x = 0.3 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    p = tmp_path / "talk.wav"
    soundfile.write(p, np.stack([x, 0.5 * x], 1), 22050, subtype="PCM_16")
    return p


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def test_compress_then_decompress_wav_and_flac(wav, tiny_audio_weights):
    r = run("compress", wav, "-q", 90, "-m", tiny_audio_weights, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["kbps"] > 0 and doc["sample_rate"] == 22050 and doc["num_samples"] == 33075
    tokc_file = wav.with_suffix(".tokc")
    r = run("decompress", tokc_file, "-m", tiny_audio_weights, "-o", wav.with_name("back.wav"))
    assert r.exit_code == 0, r.output
    assert "1.50 s, 2 ch, 22050 Hz" in r.stderr
    back, rate = soundfile.read(wav.with_name("back.wav"), always_2d=True)
    orig, _ = soundfile.read(wav, always_2d=True)
    assert rate == 22050 and back.shape == orig.shape
    assert np.corrcoef(back[:, 0], orig[:, 0])[0, 1] > 0.9
    r = run("decompress", tokc_file, "-m", tiny_audio_weights, "-o", wav.with_name("back.flac"))
    assert r.exit_code == 0, r.output
    flac, rate = soundfile.read(wav.with_name("back.flac"), always_2d=True)
    np.testing.assert_allclose(flac, back, atol=1 / 32768)


def test_bitrate_target(wav, tiny_audio_weights, tmp_path):
    top = json.loads(run("compress", wav, "-q", 100, "-m", tiny_audio_weights, "--json",
                         "-o", tmp_path / "top.tokc").stdout)["kbps"]
    r = run("compress", wav, "-b", round(top * 0.8, 1), "-m", tiny_audio_weights, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["kbps"] <= round(top * 0.8, 1)
    r = run("compress", wav, "-b", 0.01, "-m", tiny_audio_weights, "-f")
    assert r.exit_code == 1 and "lowest rate" in r.stderr and "Traceback" not in r.output
    r = run("compress", wav, "-b", 8, "-q", 50)
    assert r.exit_code == 2
    r = run("compress", wav, "-b", 8, "--psnr", 30, "-m", tiny_audio_weights)
    assert r.exit_code == 2


def test_stdout_wav_streams_with_its_length(wav, tiny_audio_weights, tmp_path):
    run("compress", wav, "-m", tiny_audio_weights)
    data = wav.with_suffix(".tokc").read_bytes()
    r = run("decompress", "-", "-m", tiny_audio_weights, input=data)
    assert r.exit_code == 0, r.output
    x, rate = soundfile.read(io.BytesIO(r.stdout_bytes), always_2d=True)
    assert rate == 22050 and x.shape == (33075, 2)


def test_audio_errors_are_one_line(wav, tiny_audio_weights, tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    r = run("compress", junk, "-m", tiny_audio_weights)
    assert r.exit_code == 1 and "cannot read audio" in r.stderr and "Traceback" not in r.output
    assert not junk.with_suffix(".tokc").exists()
    five = tmp_path / "five.wav"
    soundfile.write(five, np.zeros((1000, 5)), 16000)
    r = run("compress", five, "-m", tiny_audio_weights)
    assert r.exit_code == 1 and "mono or stereo" in r.stderr
    run("compress", wav, "-m", tiny_audio_weights)
    data = wav.with_suffix(".tokc").read_bytes()
    cut = tmp_path / "cut.tokc"
    cut.write_bytes(data[: len(data) // 2])
    r = run("decompress", cut, "-m", tiny_audio_weights)
    assert r.exit_code == 1 and r.stderr.startswith("tokc: error:")
    assert not cut.with_suffix(".wav").exists()  # nothing half-written
    r = run("decompress", wav.with_suffix(".tokc"), "-m", tiny_audio_weights, "-o", tmp_path / "x.mp4")
    assert r.exit_code == 1 and ".wav or .flac" in r.stderr


def test_postfilter_is_asked_for_in_the_header(wav, tiny_audio_weights, tmp_path):
    from tokc import format as fmt
    from tokc.compress import audio

    for flag, want in ((None, True), ("--no-postfilter", None), ("--postfilter", True)):
        out = tmp_path / f"{flag}.tokc"
        r = run("compress", wav, "-q", 60, "-m", tiny_audio_weights, "-o", out, *([flag] if flag else []))
        assert r.exit_code == 0, r.output
        rate = fmt.unpack(out.read_bytes())[0].rate_dict()
        got = tuple(rate.get(k) for k in ("lpf", "lnf", "fsh", "fsg"))
        assert "pf" not in rate and "nf" not in rate  # decoded (earlier files), no longer written
        assert got == ((audio.LEARNED_POSTFILTER, audio.LEARNED_FILL, audio.FILL_SHAPE, audio.FILL_SIGNS)
                       if want else (None,) * 4)
        r = run("decompress", out, "-m", tiny_audio_weights, "-o", tmp_path / f"{flag}.wav")
        assert r.exit_code == 0, r.output
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(img)
    r = run("compress", img, "--postfilter", "-o", tmp_path / "x.tokc")
    assert r.exit_code == 2 and "--postfilter" in r.stderr and len(r.stderr.strip().splitlines()) == 1
