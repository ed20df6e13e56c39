"""Published tokenizers from their exported folders, without torch (tokc.load_exported): the
parity fixtures' inputs encode to the fixtures' tokens and decode within the sidecar's
tolerance through ONNX Runtime, in a process where importing torch fails."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from parity_fixtures import EXPORT_CASES as CASES
from parity_fixtures import EXPORTED_PROBE, fixture_folder

ROOT = Path(__file__).resolve().parents[2]


def _export(arch, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from tokc.export.tokenizers import export_tokenizer

    folder = fixture_folder(CASES[arch][0], "io.npz")
    export_tokenizer(arch, folder, tmp_path)
    return folder


def _torch_free(arch, out_dir, folder):
    _, x_key, t_key, d_key = CASES[arch]
    res = subprocess.run([sys.executable, "-c", EXPORTED_PROBE, str(out_dir), str(folder / "io.npz"),
                          x_key, t_key, d_key, "--block-torch"],
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


def _toy_export(folder: Path) -> None:
    """A hand-written two-graph export (no torch): encoder image (batch, 3, 8, 8) -> tokens,
    decoder (codes, bandwidth_id) -> codes + bandwidth_id, with a WavTokenizer-like sidecar."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def save(name, nodes, inputs, outputs):
        graph = helper.make_graph(nodes, name, inputs, outputs)
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(folder / name))

    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    save("toy.encoder.onnx", [helper.make_node("Identity", ["image"], ["tokens"])],
         [helper.make_tensor_value_info("image", f32, ["batch", 3, 8, 8])],
         [helper.make_tensor_value_info("tokens", f32, ["batch", 3, 8, 8])])
    save("toy.decoder.onnx", [helper.make_node("Add", ["codes", "bandwidth_id"], ["out"])],
         [helper.make_tensor_value_info("codes", i64, ["batch", "frames"]),
          helper.make_tensor_value_info("bandwidth_id", i64, [1])],
         [helper.make_tensor_value_info("out", i64, ["batch", "frames"])])
    side = {"arch": "toy", "constraints": {"bandwidth_ids": 4, "bandwidth_id_default": 2}, "graphs": {
        "encoder": {"file": "toy.encoder.onnx", "inputs": [{"name": "image", "shape": ["batch", 3, 8, 8]}],
                    "outputs": [{"name": "tokens", "shape": ["batch", 3, 8, 8]}]},
        "decoder": {"file": "toy.decoder.onnx",
                    "inputs": [{"name": "codes", "shape": ["batch", "frames"]},
                               {"name": "bandwidth_id", "shape": [1]}],
                    "outputs": [{"name": "out", "shape": ["batch", "frames"]}]}}}
    (folder / "toy.onnx.json").write_text(json.dumps(side))


def test_fixed_sizes_and_conditioning_ids_are_checked_before_the_graph_runs(tmp_path):
    import tokc
    from tokc.runtimes.errors import RuntimeInputError

    _toy_export(tmp_path)
    tok = tokc.load_exported(tmp_path)
    assert tok.encode(np.ones((2, 3, 8, 8))).shape == (2, 3, 8, 8)
    with pytest.raises(RuntimeInputError, match=r"'image' must be \['batch', 3, 8, 8\] .*got shape \(1, 3, 16, 8\)"):
        tok.encode(np.ones((1, 3, 16, 8)))
    codes = np.arange(6).reshape(1, 6)
    np.testing.assert_array_equal(tok.decode(codes), codes + 2)  # the recorded default id
    np.testing.assert_array_equal(tok.decode(codes, bandwidth_id=np.array([3])), codes + 3)
    for bad in (4, -1):
        with pytest.raises(RuntimeInputError, match=r"bandwidth_id must be in \[0, 4\)"):
            tok.decode(codes, bandwidth_id=np.array([bad]))
