"""The prepared GPU check's dry run: on a machine without CUDA every GPU check says `skip`
and why, the environment line is written, and the script exits 0."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the dry run is for machines without one")
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")})
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.strip().splitlines()
    names = ["env", "kernel-tests", "fsq-exact", "apg-large", "splat-regs", "timings", "trt"]
    assert [ln.split()[1] for ln in lines[:-1]] == names
    assert lines[0].startswith("ok") and all(ln.startswith("skip") and "no CUDA device" in ln for ln in lines[1:-1])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(report) == set(names) and report["trt"]["status"] == "skip"
