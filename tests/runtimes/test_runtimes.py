"""The runtime interface over the shipped fp32 export: onnx and torch backends agree at shapes
the export was not traced with; bad input is refused clearly; ort imports no torch."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from tokc.compress import image
from tokc.runtimes import base

SIDECAR = image.WEIGHTS.with_name(base.sidecar_name(image.CODEC_ID))


@pytest.fixture(scope="module")
def shipped():
    exp = base.read_export(SIDECAR)
    if exp.weights_sha256 != hashlib.sha256(image.WEIGHTS.read_bytes()).hexdigest():
        pytest.fail("the shipped ONNX files are stale: python -m tokc.export.onnx")
    return exp


def test_read_export_describes_the_parts(shipped):
    assert shipped.codec == image.CODEC_ID and shipped.precision == "fp32"
    assert set(shipped.parts) == {"g_a", "h_a", "g_s"}
    g_a = shipped.parts["g_a"]
    assert (g_a.input, g_a.output, g_a.channels) == ("x", "y", 3)
    assert g_a.path.is_file() and g_a.path.parent == SIDECAR.parent


def test_onnx_and_torch_agree_at_untraced_shapes(shipped):
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    m = shipped.parts["h_a"].channels
    # traced at batch 2 and other sizes; here batch 1 and 3, odd multiples
    inputs = {"g_a": rng.random((1, 3, 80, 112), np.float32),
              "h_a": rng.normal(0, 3, (3, m, 8, 12)).astype(np.float32),
              "g_s": rng.normal(0, 3, (1, m, 5, 7)).astype(np.float32)}
    expected_out = {"g_a": (1, m, 5, 7), "g_s": (1, 3, 80, 112)}
    for part, x in inputs.items():
        rt_onnx = base.load(shipped, part, backend="onnx", threads=1)
        rt_torch = base.load(shipped, part, backend="torch")
        assert (rt_onnx.backend, rt_torch.backend) == ("onnx", "torch")
        assert rt_onnx.device == rt_torch.device == "cpu"
        assert rt_onnx.precision == rt_torch.precision == "fp32"
        assert rt_onnx.input_names == rt_torch.input_names == (shipped.parts[part].input,)
        assert rt_onnx.output_names == rt_torch.output_names == (shipped.parts[part].output,)
        out_name = shipped.parts[part].output
        a = rt_onnx.run({shipped.parts[part].input: x})[out_name]
        b = rt_torch.run({shipped.parts[part].input: x})[out_name]
        assert a.dtype == b.dtype == np.float32
        assert a.shape == b.shape and a.shape[0] == x.shape[0]
        if part in expected_out:
            assert a.shape == expected_out[part]
        np.testing.assert_allclose(a, b, atol=1e-3, rtol=0)


def test_run_refuses_wrong_inputs(shipped):
    rt = base.load(shipped, "g_s", backend="onnx")
    x = np.zeros((1, shipped.parts["g_s"].channels, 4, 4), np.float32)
    with pytest.raises(base.RuntimeInputError, match="do not match"):
        rt.run({"x": x})
    with pytest.raises(base.RuntimeInputError, match="do not match"):
        rt.run({"y_hat": x, "extra": x})
    with pytest.raises(base.RuntimeInputError, match="batch, channels, height, width"):
        rt.run({"y_hat": x[0]})
    assert rt.run({"y_hat": x.astype(np.float64)})["x_hat"].shape == (1, 3, 64, 64)


def test_load_refuses_what_it_cannot_do(shipped, tmp_path):
    with pytest.raises(ValueError, match="no part"):
        base.load(shipped, "h_s")
    with pytest.raises(ValueError, match="unknown backend"):
        base.load(shipped, "g_s", backend="tflite")
    with pytest.raises(ValueError, match="unknown device"):
        base.load(shipped, "g_s", device="tpu")
    with pytest.raises(base.RuntimeUnavailable, match="no export sidecar"):
        base.load(tmp_path / "missing.onnx.json", "g_s")
    bad = tmp_path / "bad.onnx.json"
    bad.write_text("{}")
    with pytest.raises(base.RuntimeUnavailable, match="not an export sidecar"):
        base.read_export(bad)


def test_torch_backend_checks_the_weights_and_precision(shipped, tmp_path):
    pytest.importorskip("torch")
    side = json.loads(SIDECAR.read_text())
    other = tmp_path / SIDECAR.name
    other.write_text(json.dumps({**side, "weights_sha256": "0" * 64}))
    with pytest.raises(base.RuntimeUnavailable, match="not the weights file"):
        base.load(other, "g_s", backend="torch", weights=image.WEIGHTS)
    with pytest.raises(base.RuntimeUnavailable, match="weights file"):  # not beside this sidecar
        base.load(other, "g_s", backend="torch")
    int8 = tmp_path / "int8.onnx.json"
    int8.write_text(json.dumps({**side, "precision": "int8"}))
    with pytest.raises(base.RuntimeUnavailable, match="fp32 or fp16"):
        base.load(int8, "g_s", backend="torch", weights=image.WEIGHTS)


def test_auto_picks_onnx_on_cpu_and_tensorrt_needs_a_gpu(shipped):
    assert base.pick_backend("cpu") == "onnx"
    assert base.load(shipped, "h_a").backend == "onnx"
    assert not base.backend_available("tensorrt", "cpu")
    with pytest.raises(base.RuntimeUnavailable, match="cuda"):
        from tokc.runtimes.trt import TensorRTRuntime

        TensorRTRuntime("unused.engine", "fp16", {}, device="cpu")


def test_image_transforms_match_the_codec_torch_path(shipped, photo):
    pytest.importorskip("torch")
    weights = image.ImageWeights()
    onnx_codec = image.ImageCodec(weights, transforms=base.load_parts(shipped, backend="onnx", threads=1))
    torch_codec = image.ImageCodec(weights, backend="torch")
    data = torch_codec.compress(photo, quality=50).data
    assert onnx_codec.compress(photo, quality=50).data == data  # same tokens, same bytes
    diff = np.abs(onnx_codec.decompress(data).astype(int) - torch_codec.decompress(data))
    assert diff.max() <= 1


def test_onnx_transforms_refuse_a_missing_precision(tmp_path):
    from tokc.runtimes.image_onnx import OnnxTransforms

    weights = image.ImageWeights()
    with pytest.raises(image.CodecError, match="no int8 ONNX export"):
        OnnxTransforms(weights, precision="int8", folder=tmp_path)
    assert OnnxTransforms(weights, threads=1).name == "onnx"


def test_ort_backend_imports_no_torch(photo, tmp_path):
    """In a fresh interpreter: load the shipped export with the onnx backend, run it, and
    decode a file through the codec; torch must never be imported."""
    pytest.importorskip("torch")
    data = image.ImageCodec(backend="torch").compress(photo, quality=40).data
    (tmp_path / "photo.tokc").write_bytes(data)
    code = f"""
import sys
import numpy as np
from tokc.runtimes import base, ort
rt = base.load({str(SIDECAR)!r}, "g_a", backend="onnx")
assert rt.run({{"x": np.zeros((1, 3, 64, 64), np.float32)}})["y"].shape[2:] == (4, 4)
from tokc.compress.image import ImageCodec
codec = ImageCodec(backend="auto")
out = codec.decompress(open({str(tmp_path / "photo.tokc")!r}, "rb").read())
assert codec.transforms.name == "onnx", codec.transforms.name
print(out.shape, "torch" in sys.modules)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [f"({photo.shape[0]},", f"{photo.shape[1]},", "3)", "False"]
