"""Where the parity fixtures of the published tokenizers live (../shared/fixtures, beside the
repository), and how a test skips when a checkout has none. Importable from every test
(pytest's pythonpath holds tests/). Also what the torch-free export tests run: each fixture's
arch, its keys, and the probe that loads an export with `tokc.load_exported`."""

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared/fixtures"


def _reason(path: Path) -> str:
    return f"parity fixture {path} is absent (it lives in ../shared/fixtures next to the repo)"


def fixture_folder(name: str, needs: str = "model.safetensors") -> Path:
    """The fixture folder `name`, or skip the calling test when `needs` is not in it."""
    path = FIXTURES / name
    if not (path / needs).exists():
        pytest.skip(_reason(path))
    return path


def needs_fixture(name: str, needs: str = "model.safetensors"):
    """A skipif marker for the tests of fixture `name`."""
    path = FIXTURES / name
    return pytest.mark.skipif(not (path / needs).exists(), reason=_reason(path))


# arch -> (fixture, input key, tokens key, decoded key): every shared fixture, through its export
EXPORT_CASES = {
    "wetok": ("wetok", "image", "indices_lfq_bhwc", "decoded_from_indices"),
    "one-d-piece": ("one_d_piece", "image", "indices", "decoded_full"),
    "titok-vq": ("titok_vq_nonlegacy", "image", "indices", "decoded_full"),
    "wavtokenizer": ("wavtokenizer", "audio", "codes", "audio_out_from_codes"),
}
# `python -c EXPORTED_PROBE DIR IO.npz X_KEY T_KEY D_KEY` with a python that cannot import torch
# (a core-install venv, or sys.modules["torch"] = None): one JSON line, the fixture's tokens
# through the exported encoder and its decode's error against the fixture
EXPORTED_PROBE = """
import json, sys
if "--block-torch" in sys.argv:
    sys.modules["torch"] = None
import numpy as np
import tokc
folder, io_path, x_key, t_key, d_key = sys.argv[1:6]
io = np.load(io_path)
tok = tokc.load_exported(folder)
tokens = tok.encode(io[x_key])
out = tok.decode(io[t_key])
tol = tok.sidecar["tolerance"]
err = float(np.abs(out - io[d_key]).max())
print(json.dumps({"tokens_equal": bool(np.array_equal(tokens, io[t_key])), "err": err,
                  "bound": tol["atol"] + tol["rtol"] * float(np.abs(io[d_key]).max()),
                  "torch_imported": "torch" in sys.modules and sys.modules["torch"] is not None}))
"""
