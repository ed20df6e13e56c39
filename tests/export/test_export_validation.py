"""Export checks that need no real export: each validation failure is its own error, the
calibration set never comes from Kodak, and `tokc export` answers bad input in one line."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tokc.cli import main

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from tokc.export import onnx as export  # noqa: E402


def graph(path, op, inp="x", out="y", **attrs):
    """A one-node ONNX graph with a float (batch, C, H, W) input."""
    from onnx import TensorProto, helper

    dims = ["b", "c", "h", "w"]
    node = helper.make_node(op, [inp], [out], **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(inp, TensorProto.FLOAT, dims)],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


X = np.random.default_rng(0).random((1, 2, 6, 4), dtype=np.float32)


def test_validate_passes_and_reports_errors(tmp_path):
    errors = export.validate(graph(tmp_path / "id.onnx", "Identity"), torch.nn.Identity(), "x", "y",
                             X, export.TOLERANCES["fp32"])
    assert errors == {"max_abs_err": 0.0, "max_rel_err": 0.0, "output_channels": 2}


def test_wrong_names_are_a_name_mismatch(tmp_path):
    with pytest.raises(export.NameMismatchError, match=r"expected \[x\] -> \[y\]"):
        export.validate(graph(tmp_path / "n.onnx", "Identity", out="out"), torch.nn.Identity(),
                        "x", "y", X, export.TOLERANCES["fp32"])


def test_wrong_shape_is_a_shape_mismatch(tmp_path):
    path = graph(tmp_path / "t.onnx", "Transpose", perm=[0, 1, 3, 2])  # H and W swapped
    with pytest.raises(export.ShapeMismatchError, match=r"\(1, 2, 4, 6\)"):
        export.validate(path, torch.nn.Identity(), "x", "y", X, export.TOLERANCES["fp32"])


def test_wrong_values_are_a_value_mismatch(tmp_path):
    path = graph(tmp_path / "neg.onnx", "Neg")
    with pytest.raises(export.ValueMismatchError, match="max abs error"):
        export.validate(path, torch.nn.Identity(), "x", "y", X, export.TOLERANCES["int8"])
    # the errors are distinct classes under one base
    classes = {export.NameMismatchError, export.ShapeMismatchError, export.ValueMismatchError,
               export.CalibrationError}
    assert len(classes) == 4 and all(issubclass(c, export.ExportError) for c in classes)


def test_tolerances_loosen_with_precision():
    atol = [export.TOLERANCES[p][0] + export.TOLERANCES[p][1] for p in ("fp32", "fp16", "int8")]
    assert atol == sorted(atol) and atol[0] <= 1e-3


def write_images(folder, n):
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((40, 30, 3), i, np.uint8)).save(folder / f"{i:02d}.png")
    (folder / "readme.txt").write_text("not an image")
    return folder


def test_calibration_files_spread_and_hold_one_out(tmp_path):
    calib, held_out = export.calibration_files(write_images(tmp_path / "train", 20), n=4)
    assert len(calib) == 4 and len(held_out) == 1
    assert len(set(calib + held_out)) == 5 and all(p.suffix == ".png" for p in calib + held_out)
    with pytest.raises(export.CalibrationError, match="at least 5 images"):
        export.calibration_files(write_images(tmp_path / "few", 3), n=4)
    with pytest.raises(export.CalibrationError, match="never on the Kodak"):
        export.calibration_files(write_images(tmp_path / "kodak", 20), n=4)


def test_centre_crop_pads_small_images(tmp_path):
    Image.fromarray(np.full((40, 300, 3), 7, np.uint8)).save(tmp_path / "wide.png")
    crop = export.centre_crop(tmp_path / "wide.png", 64)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8 and (crop == 7).all()


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("args, message", [
    ((), "Missing argument 'MODEL'"),
    (("tokc-image-v1",), "Missing option '-o'"),
    (("no-such-model", "-o", "out"), "unknown model 'no-such-model'"),
    (("tokc-image-v1", "-o", "out", "--precision", "fp8"), "'fp8' is not one of"),
    (("tokc-image-v1", "-o", "out", "--precision", "int8"), "needs --calib DIR"),
    (("tokc-image-v1", "-o", "out", "--precision", "int8", "--calib", "nowhere"), "no such directory"),
    (("tokc-image-v1", "-o", "out", "--opset", "11"), "11 is not in the range"),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    r = run("export", *args)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("tokc: error: ") and message in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


def test_existing_outputs_are_kept_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "tokc-image-v1.g_s.fp16.onnx").write_bytes(b"keep me")
    r = run("export", "tokc-image-v1", "-o", out, "--precision", "fp16")
    assert r.exit_code == 1 and r.stderr.startswith("tokc: error: ") and "use -f" in r.stderr
    assert (out / "tokc-image-v1.g_s.fp16.onnx").read_bytes() == b"keep me"


def test_a_bad_weights_file_fails_in_one_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    r = run("export", bad, "-o", tmp_path / "out")
    assert r.exit_code == 1 and r.stderr.startswith("tokc: error: ")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.output
    assert not list((tmp_path / "out").glob("*.onnx"))
