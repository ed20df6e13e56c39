"""`tokc batch`: folder trees compressed and decoded back, a bad input recorded and the run
going on, resume after an interruption, a worker killed mid-run, and the same on a local Ray
instance (byte-identical outputs)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tokc import batch
from tokc import format as fmt
from tokc.cli import main


def _tree(root: Path) -> Path:
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    for i, (h, w) in enumerate([(64, 96), (80, 64), (48, 48)]):
        rng = np.random.default_rng(i)
        y, x = np.mgrid[0:h, 0:w] / w
        img = np.stack([128 + 90 * np.sin((4 + i) * x + 3 * y), 120 + 60 * np.cos(5 * y), 70 + 140 * x * y], -1)
        img = np.clip(img + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(src / ("sub" if i == 2 else "") / f"img{i}.png")
    (src / "sub" / "bad.png").write_bytes(b"not an image at all")
    import soundfile

    t = np.arange(8000) / 16000
    soundfile.write(src / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return src


def _manifest(dst: Path) -> list[dict]:
    return [json.loads(ln) for ln in (dst / batch.MANIFEST).read_text().splitlines()]


def test_compress_decompress_a_tree_with_a_bad_file_and_rerun(tmp_path):
    src = _tree(tmp_path)
    dst, back = tmp_path / "out", tmp_path / "back"
    runner = CliRunner()
    r = runner.invoke(main, ["batch", "compress", str(src), "-o", str(dst), "-q", "30", "--workers", "2"])
    assert r.exit_code == 1, r.output  # one item failed, the others are done
    assert "bad.png" in r.output and "cannot read image" in r.output
    recs = _manifest(dst)
    assert sorted(Path(x["input"]).name for x in recs) == ["bad.png", "img0.png", "img1.png", "img2.png", "tone.wav"]
    assert {x["status"] for x in recs if "bad" not in x["input"]} == {"ok"}
    assert (dst / "sub" / "img2.tokc").exists() and not (dst / "sub" / "bad.tokc").exists()
    assert fmt.read_header((dst / "tone.tokc").read_bytes()).modality == "audio"
    assert not list(dst.rglob("*.part"))
    # a rerun skips what is done and verifies, and tries the bad file again
    r = runner.invoke(main, ["batch", "compress", str(src), "-o", str(dst), "-q", "30", "--json"])
    summary = json.loads(r.output.strip().splitlines()[0])
    assert (summary["skipped"], summary["failed"], summary["ok"]) == (4, 1, 0)
    r = runner.invoke(main, ["batch", "decompress", str(dst), "-o", str(back), "--workers", "2"])
    assert r.exit_code == 0, r.output
    for name in ("img0.png", "img1.png", "sub/img2.png"):
        with Image.open(back / name) as im:
            assert im.size == Image.open(src / name).size
    import soundfile

    assert soundfile.info(str(back / "tone.wav")).frames == 8000


def test_resume_redoes_only_missing_and_broken_outputs(tmp_path):
    src = _tree(tmp_path)
    (src / "sub" / "bad.png").unlink()
    dst = tmp_path / "out"
    job = batch.Job("compress", str(src), str(dst), {"quality": 30})
    first = {r["input"]: r for r in batch.run(job, workers=1)}
    assert all(r["status"] == "ok" for r in first.values())
    before = {p: p.read_bytes() for p in dst.rglob("*.tokc")}
    (dst / "img0.tokc").unlink()  # never written (interrupted before it)
    (dst / "img1.tokc").write_bytes(b"TOK")  # cut short (not possible with the renames, but a disk can)
    second = {Path(r["input"]).name: r["status"] for r in batch.run(job, workers=2)}
    assert second == {"img0.png": "ok", "img1.png": "ok", "img2.png": "skipped", "tone.wav": "skipped"}
    assert {p: p.read_bytes() for p in dst.rglob("*.tokc")} == before  # the same bytes again


def die_once(item, mode, options, force):
    """Kills its worker the first time it meets img1.png (a marker file remembers)."""
    marker = Path(options["marker"])
    if item.input.endswith("img1.png") and not marker.exists():
        marker.write_text("died")
        os._exit(9)
    return batch.process(item, mode, {k: v for k, v in options.items() if k != "marker"}, force)


def die_always(item, mode, options, force):
    if item.input.endswith("img1.png"):
        os._exit(9)
    return batch.process(item, mode, options, force)


def test_a_killed_worker_is_retried_then_recorded(tmp_path):
    src = _tree(tmp_path)
    (src / "sub" / "bad.png").unlink()
    dst = tmp_path / "out"
    job = batch.Job("compress", str(src), str(dst), {"quality": 30, "marker": str(tmp_path / "m")})
    recs = batch.run(job, workers=2, fn=die_once)
    assert {Path(r["input"]).name: r["status"] for r in recs} == \
        {"img0.png": "ok", "img1.png": "ok", "img2.png": "ok", "tone.wav": "ok"}
    assert (tmp_path / "m").exists()  # it did die once
    dst2 = tmp_path / "out2"
    recs = batch.run(batch.Job("compress", str(src), str(dst2), {"quality": 30}), workers=2, fn=die_always)
    by = {Path(r["input"]).name: r for r in recs}
    assert by["img1.png"]["status"] == "failed" and "worker died" in by["img1.png"]["error"], by
    assert all(by[n]["status"] == "ok" for n in ("img0.png", "img2.png", "tone.wav"))
    assert len(_manifest(dst2)) == 4


def test_ray_gives_the_pool_s_bytes(tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'tokc-codec[batch]')")
    src = _tree(tmp_path)
    (src / "sub" / "bad.png").unlink()
    pool_out, ray_out = tmp_path / "pool", tmp_path / "ray"
    batch.run(batch.Job("compress", str(src), str(pool_out), {"quality": 30}), workers=2)
    recs = batch.run(batch.Job("compress", str(src), str(ray_out), {"quality": 30}), workers=2, ray=True)
    assert all(r["status"] == "ok" for r in recs) and not ray.is_initialized()
    for p in pool_out.rglob("*.tokc"):
        assert (ray_out / p.relative_to(pool_out)).read_bytes() == p.read_bytes()
    shutil.rmtree(tmp_path / "ray")


def test_tokenize_to_parquet_pool_and_ray(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed (pip install 'tokc-codec[batch]')")
    torch = pytest.importorskip("torch")
    from parity_fixtures import fixture_folder

    ckpt = fixture_folder("wetok")
    src = _tree(tmp_path)
    out = tmp_path / "tok"
    r = CliRunner().invoke(main, ["batch", "tokenize", str(src), "-m", "wetok", "--checkpoint", str(ckpt),
                                  "-o", str(out), "--image-size", "64", "--shard-size", "2",
                                  "--batch-size", "2", "--workers", "2", "--json"])
    assert r.exit_code == 1, r.output  # bad.png
    summary = json.loads(r.output.strip().splitlines()[0])
    assert (summary["ok"], summary["failed"]) == (3, 1)
    tables = [pq.read_table(p) for p in sorted(out.glob("tokens-*.parquet"))]
    assert len(tables) == 2 and tables[0].schema.metadata[b"tokenizer"] == b"wetok"
    rows = {i: (t, s) for tab in tables for i, t, s in zip(tab["id"].to_pylist(), tab["tokens"].to_pylist(),
                                                        tab["shape"].to_pylist())}
    from tokc import batch as b
    from tokc.models import load_pretrained

    model = load_pretrained(ckpt, arch="wetok").eval()
    for path, (tokens, shape) in rows.items():
        x = b._model_input("wetok", model, path, 64)
        with torch.no_grad():
            want = model.encode(torch.from_numpy(x)).numpy()[0]
        assert shape == [16, 16, 4] and tokens == want.reshape(-1).tolist()
    # a rerun skips the whole shards
    again = b.run_tokenize(str(src), str(out), "wetok", str(ckpt), workers=1, shard_size=2, image_size=64)
    assert {r["status"] for r in again if "bad" not in r["input"]} <= {"skipped", "ok"}
    assert sum(r["status"] == "skipped" for r in again) >= 2
    pytest.importorskip("ray", reason="ray is not installed (pip install 'tokc-codec[batch]')")
    ray_out = tmp_path / "tok_ray"
    b.run_tokenize(str(src), str(ray_out), "wetok", str(ckpt), workers=2, ray=True, shard_size=2, image_size=64)
    for p in sorted(out.glob("tokens-*.parquet")):
        assert pq.read_table(ray_out / p.name).equals(pq.read_table(p))
