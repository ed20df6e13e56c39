"""Published tokenizers from their exported folders, without torch (tokc.load_exported): the
parity fixtures' inputs encode to the fixtures' tokens and decode within the sidecar's
tolerance through ONNX Runtime, in a process where importing torch fails."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from parity_fixtures import fixture_folder

ROOT = Path(__file__).resolve().parents[2]
# arch -> (fixture, input key, tokens key, decoded key, decode keywords)
CASES = {
    "wetok": ("wetok", "image", "indices_lfq_bhwc", "decoded_from_indices", {}),
    "one-d-piece": ("one_d_piece", "image", "indices", "decoded_full", {}),
    "titok-vq": ("titok_vq_nonlegacy", "image", "indices", "decoded_full", {}),
    "wavtokenizer": ("wavtokenizer", "audio", "codes", "audio_out_from_codes", {}),
}
# what runs in the torch-free process: sys.modules["torch"] = None makes `import torch` fail
PROBE = """
import json, sys
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


def _export(arch, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from tokc.export.tokenizers import export_tokenizer

    folder = fixture_folder(CASES[arch][0], "io.npz")
    export_tokenizer(arch, folder, tmp_path)
    return folder


def _torch_free(arch, out_dir, folder):
    _, x_key, t_key, d_key, _ = CASES[arch]
    res = subprocess.run([sys.executable, "-c", PROBE, str(out_dir), str(folder / "io.npz"), x_key, t_key, d_key],
                         capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(ROOT / "src")})
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["tokens_equal"] and got["err"] <= got["bound"] and not got["torch_imported"], got


def test_exported_wetok_in_process_and_without_torch(tmp_path):
    import tokc

    folder = _export("wetok", tmp_path)
    io = np.load(folder / "io.npz")
    tok = tokc.load_exported(tmp_path)
    assert tok.arch == "wetok" and [i["name"] for i in tok.encoder_inputs] == ["image"]
    np.testing.assert_array_equal(tok.encode(io["image"]), io["indices_lfq_bhwc"])
    out = tok.decode(io["indices_lfq_bhwc"])
    assert np.abs(out - io["decoded_from_indices"]).max() < 1e-3
    with pytest.raises(ValueError, match="no input 'nope'"):
        tok.decode(io["indices_lfq_bhwc"], nope=1)
    _torch_free("wetok", tmp_path, folder)


def test_missing_export_is_a_clear_error(tmp_path):
    import tokc
    from tokc.runtimes.errors import RuntimeUnavailable

    with pytest.raises(RuntimeUnavailable, match="no tokenizer export"):
        tokc.load_exported(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["one-d-piece", "titok-vq", "wavtokenizer"])
def test_every_fixture_through_its_export_without_torch(tmp_path, arch):
    folder = _export(arch, tmp_path)
    _torch_free(arch, tmp_path, folder)
