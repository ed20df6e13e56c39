import json
import math

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner
from PIL import Image

from tokc.bench import bd_table, read_result
from tokc.cli import main


def write_images(folder, n=2):
    folder.mkdir()
    for i in range(n):
        rng = np.random.default_rng(i)
        y, x = np.mgrid[0:176, 0:192] / 192
        img = np.stack(
            [128 + 90 * np.sin((6 + i) * x + 2 * y), 128 + 90 * np.cos(5 * y), 60 + 120 * x],
            axis=-1,
        ) + rng.normal(0, 5, (176, 192, 3))
        Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8)).save(folder / f"s{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def write_clip(folder, rate=16000, seconds=2.0):
    folder.mkdir()
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.7 * t)) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 30)) * np.sqrt(
        np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None)
    )
    x = 0.3 * x / np.abs(x).max() + 0.003 * np.random.default_rng(0).standard_normal(t.size)
    soundfile.write(folder / "voice.wav", x.astype(np.float32), rate)
    return folder


def run(*args):
    return CliRunner().invoke(main, ["bench", "rd", *map(str, args)])


def test_image_rd_writes_json_markdown_and_plot(tmp_path):
    images = write_images(tmp_path / "imgs")
    out = tmp_path / "results"
    r = run(
        "--images",
        images,
        "--codecs",
        "jpeg,webp",
        "--qualities",
        "10,30,50,80",
        "--qualities",
        "webp=5,25,50,80",
        "--name",
        "t",
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    assert "2 images x 2 codecs" in r.stderr

    doc = json.loads((out / "t.json").read_text())
    assert doc["kind"] == "image" and doc["rate_unit"] == "bpp"
    assert doc["items"] == ["s0.png", "s1.png"]
    assert doc["grids"] == {"jpeg": [10, 30, 50, 80], "webp": [5, 25, 50, 80]}
    assert len(doc["points"]) == 2 * 2 * 4
    for codec in ("jpeg", "webp"):
        mean = sorted(doc["mean"][codec], key=lambda p: p["setting"])
        assert len(mean) == 4
        bpps = [p["rate"] for p in mean]
        assert bpps == sorted(bpps) and 0.05 < bpps[0] < bpps[-1] < 8
        psnrs = [p["psnr"] for p in mean]
        assert psnrs == sorted(psnrs)
        for p in mean:
            assert p["ms_ssim_db"] == pytest.approx(-10 * math.log10(1 - p["ms_ssim"]))
            assert 0 < p["ssimulacra2"] <= 100 and p["encode_s"] > 0 and p["decode_s"] > 0
        points = [p for p in doc["points"] if p["codec"] == codec and p["setting"] == 50]
        assert mean[2]["rate"] == pytest.approx(np.mean([p["rate"] for p in points]))
    entries = {(e["codec"], e["reference"], e["metric"]): e for e in doc["bd_rate"]["entries"]}
    assert doc["bd_rate"]["anchor"] == "jpeg"
    assert len(entries) == 2 * 3
    forward = entries[("webp", "jpeg", "psnr")]["bd_rate"]
    backward = entries[("jpeg", "webp", "psnr")]["bd_rate"]
    assert isinstance(forward, float) and isinstance(backward, float)
    assert (forward < 0) != (backward < 0)

    again = bd_table(read_result(out / "t.json"))
    assert again.get("webp", "jpeg", "psnr").bd_rate == pytest.approx(forward)

    md = (out / "t.md").read_text()
    assert "## BD-rate vs jpeg (%)" in md
    assert f"| webp | {forward:.1f} (" in md
    assert (out / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_image_rd_refuses_to_overwrite_and_honours_anchor_and_limit(tmp_path):
    images = write_images(tmp_path / "imgs")
    args = [
        "--images",
        images,
        "--codecs",
        "jpeg,webp",
        "--qualities",
        "10,30,50,80",
        "--limit",
        "1",
        "--name",
        "t",
        "--out",
        tmp_path,
        "--anchor",
        "webp",
    ]
    assert run(*args).exit_code == 0
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["items"] == ["s0.png"] and doc["bd_rate"]["anchor"] == "webp"
    r = run(*args)
    assert r.exit_code == 1
    assert r.stderr.startswith("tokc: error:") and "-f" in r.stderr
    assert run(*args, "-f").exit_code == 0


def test_audio_rd(tmp_path):
    clips = write_clip(tmp_path / "clips")
    r = run(
        "--audio",
        clips,
        "--codecs",
        "opus,mp3",
        "--bitrates",
        "16,24,32,64",
        "--name",
        "a",
        "--out",
        tmp_path,
        "--no-visqol",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["kind"] == "audio" and doc["rate_unit"] == "kbps"
    assert doc["profile"] == "speech" and "ViSQOL not measured" in doc["notes"][0]
    assert len(doc["points"]) == 2 * 4
    for codec in ("opus", "mp3"):
        mean = sorted(doc["mean"][codec], key=lambda p: p["setting"])
        assert [p["setting"] for p in mean] == [16, 24, 32, 64]
        assert mean[0]["rate"] < mean[-1]["rate"]
        assert mean[0]["pesq"] < mean[-1]["pesq"] <= 4.65
        assert 0 < mean[-1]["stoi"] <= 1 and mean[-1]["mel_distance"] < mean[0]["mel_distance"]
        assert mean[-1]["visqol"] is None  # not measured: null, never a made-up value
        assert mean[0]["encode_xrt"] > 0 and mean[0]["duration_s"] == pytest.approx(2.0)
    metrics = {e["metric"] for e in doc["bd_rate"]["entries"]}
    assert metrics == {"pesq", "stoi", "visqol", "mel_distance", "si_sdr"}
    assert doc["bd_rate"]["anchor"] == "opus"  # the audio anchor, not the first codec
    assert "PESQ-WB" in (tmp_path / "a.md").read_text()


def test_audio_rd_tokc_split_weights_and_music(tmp_path, tiny_audio_weights):
    """tokc (tiny weights via --weights) against opus-voip on an index.tsv split: points
    below tokc's lowest rate are skipped with a note, the range BD-rates and the bar are
    written; --music adds <name>_music.* (ViSQOL off to stay fast)."""
    clips = write_clip(tmp_path / "speech")
    write_clip(tmp_path / "speech" / "more", seconds=1.5)
    (tmp_path / "speech" / "index.tsv").write_text(
        "path\tsplit\nvoice.wav\tval\nmore/voice.wav\ttrain\n"
    )
    music = write_clip(tmp_path / "music", rate=44100, seconds=1.0)
    soundfile.write(music / "tick.wav", np.full(4000, 0.1, np.float32), 44100)  # too short
    r = run(
        "--audio", clips, "--split", "val", "--weights", tiny_audio_weights,
        "--codecs", "tokc,opus-voip",
        "--bitrates", "tokc=1,200,256", "--bitrates", "opus-voip=8,12,16",
        "--music", music, "--music-seconds", "1", "--music-codecs", "opus",
        "--name", "s", "--out", tmp_path / "res", "--no-visqol",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "tokc at 1 kbps: not reached on 1 of 1 clips" in r.stderr
    doc = json.loads((tmp_path / "res" / "s.json").read_text())
    assert doc["items"] == ["voice.wav"]
    assert "tiny_audio.safetensors (sha256" in doc["settings"]["tokc"]
    assert [(k["codec"], k["setting"]) for k in doc["skipped"]] == [("tokc", 1)]
    assert sorted(p["setting"] for p in doc["mean"]["tokc"]) == [200, 256]
    ranges = {(e["range"], e["metric"]) for e in doc["bd_rate_ranges"]}
    assert ranges == {("6-16 kbps", m) for m in ("pesq", "stoi", "visqol")} | {
        ("Opus wideband 10-16 kbps", m) for m in ("pesq", "visqol")
    }
    assert any("decode > 20x" in b["what"] for b in doc["bar"])
    md = (tmp_path / "res" / "s.md").read_text()
    assert "## Issue 15 bar" in md and "## Skipped points" in md
    mdoc = json.loads((tmp_path / "res" / "s_music.json").read_text())
    assert mdoc["profile"] == "music" and mdoc["codecs"] == ["opus"]
    assert mdoc["items"] == ["voice.wav"]
    assert "1 clip(s) shorter than 1 s left out: tick.wav" in mdoc["notes"]
    assert sorted(p["setting"] for p in mdoc["mean"]["opus"]) == [24, 32, 48]
    assert {"visqol_audio", "mel_distance"} <= set(mdoc["mean"]["opus"][0])
    assert (tmp_path / "res" / "s_music.png").stat().st_size > 0
    # the process-wide registry is left as it was
    from tokc.baselines.audio import audio_codec

    assert "tiny_audio" not in audio_codec("tokc").settings


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--images", "{tmp}/missing", "--codecs", "jpeg"], 2, "no such directory"),
        (["--images", "{imgs}", "--codecs", "jpeg,bogus"], 2, "unknown image codec 'bogus'"),
        (["--audio", "{imgs}", "--codecs", "jpeg"], 2, "unknown audio codec 'jpeg'"),
        (["--images", "{imgs}", "--audio", "{imgs}", "--codecs", "jpeg"], 2, "exactly one"),
        (["--codecs", "jpeg"], 2, "exactly one"),
        (["--images", "{imgs}", "--codecs", "jpeg", "--anchor", "webp"], 2, "--anchor"),
        (["--images", "{imgs}", "--codecs", "jpeg", "--qualities", "webp=1,2"], 2, "webp"),
        (["--images", "{imgs}", "--codecs", "jpeg", "--qualities", "a,b"], 2, "numbers"),
        (["--images", "{imgs}", "--codecs", "jpeg", "--bitrates", "8"], 2, "--bitrates"),
        (["--images", "{imgs}", "--codecs", "jpeg", "--split", "val"], 2, "for --audio"),
        (["--audio", "{imgs}", "--codecs", "opus", "--split", "val"], 2, "index.tsv"),
        (["--audio", "{imgs}", "--weights", "{tmp}/none.st"], 2, "weights not found"),
        (["--images", "{empty}", "--codecs", "jpeg"], 1, "no image files"),
    ],
)
def test_errors_are_one_line(tmp_path, args, code, message):
    imgs = write_images(tmp_path / "imgs", n=1)
    (tmp_path / "empty").mkdir()
    args = [a.format(tmp=tmp_path, imgs=imgs, empty=tmp_path / "empty") for a in args]
    r = run(*args, "--out", tmp_path / "out")
    assert r.exit_code == code
    assert r.stderr.startswith("tokc: error:") and message in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


def test_too_few_points_for_bd_rate_give_na(tmp_path):
    images = write_images(tmp_path / "imgs", n=1)
    r = run(
        "--images",
        images,
        "--codecs",
        "jpeg,webp",
        "--qualities",
        "20,60",
        "--name",
        "t",
        "--out",
        tmp_path,
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "t.json").read_text())
    entry = doc["bd_rate"]["entries"][0]
    assert entry["bd_rate"] is None and "at least 4" in entry["note"]
    assert "| webp | n/a | n/a | n/a |" in (tmp_path / "t.md").read_text()


def test_codec_failure_is_one_line(tmp_path):
    images = write_images(tmp_path / "imgs", n=1)
    r = run("--images", images, "--codecs", "jpeg", "--qualities", "nan", "--out", tmp_path / "out")
    assert r.exit_code == 1
    assert r.stderr.startswith("tokc: error:") and "Traceback" not in r.output
