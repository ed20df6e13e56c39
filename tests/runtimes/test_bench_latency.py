"""`tokc bench latency` on a small real photo with the shipped weights: JSON and markdown
reports with consistent numbers, missing exports reported as skipped, one-line errors."""

import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tokc.cli import main


@pytest.fixture()
def png(tmp_path, photo):
    p = tmp_path / "photo.png"
    Image.fromarray(photo).save(p)
    return p


def run(*args):
    return CliRunner().invoke(main, ["bench", "latency", *[str(a) for a in args]])


def test_latency_report(png, tmp_path, photo):
    pytest.importorskip("torch")
    out = tmp_path / "results"
    r = run(png, "--backends", "torch,onnx-fp32,onnx-int8", "--warmup", "0", "--repeats", "2",
            "--threads", "1", "--out", out, "--name", "t", "--note", "a test run")
    assert r.exit_code == 0, r.output
    res = json.loads((out / "t.json").read_text())
    h, w = photo.shape[:2]
    assert (res["width"], res["height"], res["threads"], res["repeats"]) == (w, h, 1, 2)
    assert [row["variant"] for row in res["rows"]] == ["torch", "onnx-fp32"]
    assert "onnx-int8" in res["skipped"] and "tokc export" in res["skipped"]["onnx-int8"]
    assert res["reference"] == "torch"
    for row in res["rows"]:
        assert len(row["encode_times_ms"]) == len(row["decode_times_ms"]) == 2
        assert row["decode_ms"] == pytest.approx(float(np.median(row["decode_times_ms"])), abs=0.02)
        assert row["decode_min_ms"] <= row["decode_ms"]
        assert row["decode_mps"] == pytest.approx(w * h / 1e6 / (row["decode_ms"] / 1000), rel=0.02)
        assert row["nbytes"] > 0 and row["psnr"] > 20 and row["max_pixel_diff"] <= 2
        # the decode split: the exact part (ANS, h_s, contexts), the synthesis, the rest
        split = row["decode_split_ms"]
        assert list(split) == ["ans", "h_s", "contexts", "synthesis", "rest"]
        assert min(split["ans"], split["h_s"], split["contexts"], split["synthesis"]) > 0
        assert split["synthesis"] == row["synthesis_ms"]
        assert sum(split.values()) == pytest.approx(row["decode_ms"], abs=0.05)
    torch_row, onnx_row = res["rows"]
    assert torch_row["nbytes"] == onnx_row["nbytes"]  # the same tokens on both backends
    assert torch_row["decode_x_torch"] == 1.0 and torch_row["max_pixel_diff"] == 0
    assert onnx_row["decode_x_torch"] == pytest.approx(torch_row["decode_ms"] / onnx_row["decode_ms"], rel=0.02)
    md = (out / "t.md").read_text()
    assert "| variant | encode ms | decode ms |" in md and "| onnx-fp32 |" in md
    assert "| variant | decode ms | ans | h_s | contexts | synthesis | rest |" in md
    assert "a test run" in md and "onnx-int8:" in md
    assert "| onnx-fp32 |" in r.stdout  # the table is printed too
    # whole commands, as a user waits for them, and a decode's steps in a fresh interpreter
    wp = res["whole_process"]
    assert wp["commands_ms"]["tokc compress"] > 0 and wp["commands_ms"]["tokc decompress"] > 0
    split = wp["decode_split_ms"]
    assert set(split) == {"import_ms", "load_ms", "decode_ms", "write_png_ms"}
    assert sum(split.values()) < wp["commands_ms"]["tokc decompress"] * 1.5
    assert "Whole process" in md and "| tokc decompress |" in md

    again = run(png, "--backends", "onnx-fp32", "--out", out, "--name", "t", "--no-whole-process")
    assert again.exit_code == 1 and "use -f" in again.stderr
    forced = run(png, "--backends", "onnx-fp32", "--repeats", "1", "--out", out, "--name", "t", "-f",
                 "--quiet", "--no-whole-process")
    assert forced.exit_code == 0 and forced.output == ""
    assert [row["variant"] for row in json.loads((out / "t.json").read_text())["rows"]] == ["onnx-fp32"]


@pytest.mark.parametrize("args, message", [
    (("missing.png",), "no such file"),
    (("{png}", "--backends", "onnx-fp64"), "unknown variant(s) onnx-fp64"),
    (("{png}", "--backends", ","), "(none given)"),
    (("{png}", "-m", "no-model"), "unknown model"),
    (("{png}", "--onnx-dir", "nowhere"), "no such directory"),
])
def test_usage_errors(png, tmp_path, args, message):
    r = run(*[a.format(png=png) for a in args], "--out", tmp_path / "results")
    assert r.exit_code == 2 and r.stderr.startswith("tokc: error: ") and message in r.stderr
    assert r.stderr.count("\n") == 1
    assert not (tmp_path / "results").exists()


def test_nothing_runnable_is_a_failure(png, tmp_path):
    r = run(png, "--backends", "onnx-fp16", "--onnx-dir", tmp_path, "--out", tmp_path / "results")
    assert r.exit_code == 1 and "no variant could run" in r.stderr and "onnx-fp16" in r.stderr


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("compressai") is None, reason="compressai not installed")
def test_compressai_hyperprior_row(png, tmp_path):
    r = run(png, "--backends", "onnx-fp32,compressai", "--warmup", "0", "--repeats", "1",
            "--out", tmp_path, "--name", "c")
    assert r.exit_code == 0, r.output
    rows = {row["variant"]: row for row in json.loads((tmp_path / "c.json").read_text())["rows"]}
    assert rows["compressai"]["decode_ms"] > 0 and rows["compressai"]["decode_x_compressai"] == 1.0
    assert rows["compressai"]["nbytes"] is None  # random weights: no quality numbers
    assert rows["onnx-fp32"]["decode_x_compressai"] > 0


def test_exports_of_other_weights_are_skipped(png, tmp_path):
    import shutil

    from tokc.compress import image

    folder = tmp_path / "onnx"
    folder.mkdir()
    for f in image.WEIGHTS.parent.glob("tokc-image-v1.*.onnx"):
        shutil.copy(f, folder)
    side = json.loads(image.WEIGHTS.with_name("tokc-image-v1.onnx.json").read_text())
    (folder / "tokc-image-v1.onnx.json").write_text(json.dumps({**side, "weights_sha256": "0" * 64}))
    r = run(png, "--backends", "onnx-fp32", "--onnx-dir", folder, "--out", tmp_path / "results")
    assert r.exit_code == 1 and "made from other weights" in r.stderr
