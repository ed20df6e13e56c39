"""The core install has no torch and still compresses and decompresses photos, and runs every
published tokenizer's parity fixture through its export (slow: builds a fresh virtual
environment and installs the package with its core dependencies only, once for the module)."""

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
from parity_fixtures import EXPORT_CASES, EXPORTED_PROBE, FIXTURES
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
KODAK = ROOT.parent / "shared/data/images/kodak"

pytestmark = pytest.mark.slow


def sh(*args, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=900, **kw)
    assert r.returncode == 0, f"{args}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory):
    """A venv with `pip install tokc-codec` (core dependencies only): its python and no torch."""
    tmp = tmp_path_factory.mktemp("core")
    # a copy of the sources, so that building the wheel leaves nothing in the work tree
    src = tmp / "tokc-src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    sh(py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(src))

    r = subprocess.run([py, "-c", "import torch"], capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr
    installed = sh(py, "-m", "pip", "list", "--format=freeze").stdout.lower()
    assert "tokc-codec==" in installed and "onnxruntime==" in installed and "torch==" not in installed
    return env_dir


def test_core_install_compresses_and_decompresses_without_torch(tmp_path, core_venv):
    photo = KODAK / "kodim23.png"
    if not photo.exists():
        pytest.skip(f"{photo} missing (../shared/data)")
    py, tokc = core_venv / "bin" / "python", core_venv / "bin" / "tokc"

    shutil.copy(photo, tmp_path / "photo.png")
    sh(tokc, "compress", tmp_path / "photo.png", "-q", 60, "--backend", "auto", cwd=tmp_path)
    data = (tmp_path / "photo.tokc").read_bytes()
    assert data[:4] == b"TOKC" and 1000 < len(data) < 200_000
    sh(tokc, "decompress", tmp_path / "photo.tokc", "-o", tmp_path / "back.png", "--backend", "auto")
    original = np.asarray(Image.open(photo).convert("RGB")).astype(np.float64)
    back = np.asarray(Image.open(tmp_path / "back.png")).astype(np.float64)
    assert back.shape == original.shape
    psnr = 10 * np.log10(255**2 / np.mean((back - original) ** 2))
    assert psnr > 28, psnr

    # auto picked ONNX Runtime, and nothing on the way imported torch
    probe = ("import sys; from tokc.compress.image import default_codec; "
             "c = default_codec('auto'); c.decompress(open(sys.argv[1], 'rb').read()); "
             "print(c.transforms.name, 'torch' in sys.modules)")
    assert sh(py, "-c", probe, tmp_path / "photo.tokc").stdout.split() == ["onnx", "False"]
    # the same file decodes to the same tokens in the development environment
    from tokc.compress.image import ImageCodec

    here = ImageCodec(backend="onnx")
    assert np.abs(here.decompress(data).astype(np.float64) - back).max() == 0
    assert sys.executable != str(py)


@pytest.mark.parametrize("arch", sorted(EXPORT_CASES))
def test_every_parity_fixture_through_its_export_in_the_core_install(tmp_path, core_venv, arch):
    """Exported here (torch), then encoded and decoded by the core venv's python: the fixture's
    tokens exactly, its decode within the sidecar's tolerance."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from tokc.export.tokenizers import export_tokenizer

    fixture, x_key, t_key, d_key = EXPORT_CASES[arch]
    folder = FIXTURES / fixture
    if not (folder / "io.npz").exists():
        pytest.skip(f"parity fixture {folder} is absent (../shared/fixtures)")
    export_tokenizer(arch, folder, tmp_path)
    r = sh(core_venv / "bin" / "python", "-c", EXPORTED_PROBE, tmp_path, folder / "io.npz",
           x_key, t_key, d_key, cwd=tmp_path)
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["tokens_equal"] and got["err"] <= got["bound"] and not got["torch_imported"], got
