"""The training entry point runs, checkpoints and resumes (tiny model, tiny synthetic data)."""

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")


def test_train_resumes_from_its_checkpoint(tmp_path):
    from tokc.train.image import TRAIN_DIRS, main

    rng = np.random.default_rng(0)
    for d in TRAIN_DIRS:
        (tmp_path / "data" / d).mkdir(parents=True)
        for i in range(3):
            img = rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / "data" / d / f"{i}.png")
    out = tmp_path / "run"
    common = ["--data", str(tmp_path / "data"), "--out", str(out), "--n", "8", "--m", "12",
              "--batch", "2", "--crop", "64", "--threads", "1", "--ckpt-every", "2",
              "--val-every", "2"]
    main([*common, "--iters", "2"])
    main([*common, "--iters", "4"])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]
    assert all(np.isfinite(r["loss"]) and "val" in r for r in log)
    assert (out / "ckpt.pt").exists() and not (out / "ckpt.tmp").exists()
