"""Real exports of a tiny random tokc-image-v1 at every precision (slow: the dynamo exporter
takes seconds per graph), read back through the runtimes and the codec."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tokc.cli import main
from tokc.compress import image
from tokc.runtimes import base

pytestmark = pytest.mark.slow
onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")

from tokc.export import onnx as export  # noqa: E402


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    """Synthetic 'training' photos: smooth colour fields with texture (never Kodak)."""
    folder = tmp_path_factory.mktemp("train")
    for i in range(10):
        rng = np.random.default_rng(i)
        y, x = np.mgrid[0:300, 0:280] / 280
        img = np.stack([128 + 90 * np.sin((3 + i) * x + 2 * y), 128 + 80 * np.cos((2 + i) * y),
                        60 + 150 * x * y], -1) + rng.normal(0, 8, (300, 280, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def exported(tiny_weights, calib_dir, tmp_path_factory):
    """tiny weights and their fp32, fp16 and int8 (u8s8) exports in one folder, the way the
    shipped files lie beside the shipped weights; an s8s8 int8 export in another."""
    folder = tmp_path_factory.mktemp("export")
    weights = folder / "tiny.safetensors"
    shutil.copy(tiny_weights, weights)
    sides = {p: export.export_image(weights, folder, precision=p, calib_dir=calib_dir)
             for p in ("fp32", "fp16", "int8")}
    s8 = folder / "s8s8"
    sides["s8s8"] = export.export_image(weights, s8, precision="int8", calib_dir=calib_dir, int8_scheme="s8s8")
    return folder, weights, sides


def test_sidecars_describe_validated_graphs(exported):
    folder, weights, sides = exported
    m = image.ImageWeights(weights).config["m"]
    for precision in ("fp32", "fp16", "int8"):
        side = json.loads((folder / base.sidecar_name(image.CODEC_ID, precision)).read_text())
        assert side == sides[precision]
        assert side["precision"] == precision and side["opset"] == export.OPSET
        assert side["weights_file"] == "tiny.safetensors" and len(side["weights_sha256"]) == 64
        atol, rtol = export.TOLERANCES[precision]
        assert side["tolerance"] == {"atol": atol, "rtol": rtol}
        assert set(side["parts"]) == {"g_a", "h_a", "g_s"}
        for spec in side["parts"].values():
            assert spec["validated_shape"] != spec["traced_shape"]
            assert spec["validated_shape"][0] != spec["traced_shape"][0]  # batch too
            assert spec["validated_shape"][2:] != spec["traced_shape"][2:]
            assert 0 <= spec["max_abs_err"] and 0 <= spec["max_rel_err"] <= 1
            if precision == "fp32":
                assert spec["max_abs_err"] <= atol
            assert spec["dynamic_axes"] == {"batch": 0, "height": 2, "width": 3}
            assert (folder / spec["file"]).is_file()
    ga = sides["fp32"]["parts"]["g_a"]
    assert ga["input_shape"] == ["batch", 3, "16*height", "16*width"]
    assert ga["output_shape"] == ["batch", m, "height", "width"]
    assert sides["fp32"]["parts"]["g_s"]["output_shape"] == ["batch", 3, "16*height", "16*width"]
    assert sides["int8"]["int8_scheme"] == "u8s8" and len(sides["int8"]["calibration"]["images"]) == 8


def test_graph_axes_are_named(exported):
    import onnxruntime as ort

    folder, _, sides = exported
    for part in ("g_a", "h_a", "g_s"):
        spec = sides["fp16"]["parts"][part]
        sess = ort.InferenceSession(str(folder / spec["file"]), providers=["CPUExecutionProvider"])
        (i,), (o,) = sess.get_inputs(), sess.get_outputs()
        assert (i.name, i.shape, i.type) == (spec["input"], spec["input_shape"], "tensor(float)")
        assert (o.name, o.shape, o.type) == (spec["output"], spec["output_shape"], "tensor(float)")


def test_fp16_and_int8_graphs_are_what_they_say(exported):
    from onnx import TensorProto, numpy_helper

    folder, _, sides = exported
    fp16 = onnx.load(str(folder / sides["fp16"]["parts"]["g_s"]["file"]))
    float_inits = [t for t in fp16.graph.initializer if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    assert float_inits and all(t.data_type == TensorProto.FLOAT16 for t in float_inits)
    for scheme, zp_type in (("int8", np.uint8), ("s8s8", np.int8)):
        g = onnx.load(str((folder if scheme == "int8" else folder / "s8s8") /
                          sides[scheme]["parts"]["g_a"]["file"]))
        inits = {t.name: numpy_helper.to_array(t) for t in g.graph.initializer}
        quant = [n for n in g.graph.node if n.op_type == "QuantizeLinear"]
        assert quant and sum(n.op_type == "Conv" for n in g.graph.node) >= 4
        zero_points = [inits[n.input[2]] for n in quant]
        assert all(z.dtype == zp_type for z in zero_points)
        if scheme == "s8s8":  # what TensorRT's explicit quantization accepts
            assert all((z == 0).all() for z in zero_points)


def test_every_precision_runs_close_to_torch_through_the_runtimes(exported):
    folder, weights, _ = exported
    rng = np.random.default_rng(3)
    x = rng.random((1, 3, 96, 160), np.float32)
    ref = base.load(folder / base.sidecar_name(image.CODEC_ID), "g_a", backend="torch").run({"x": x})["y"]
    for precision in ("fp32", "fp16", "int8"):
        rt = base.load(folder / base.sidecar_name(image.CODEC_ID, precision), "g_a", backend="onnx")
        assert rt.precision == precision
        y = rt.run({"x": x})["y"]
        atol, rtol = export.TOLERANCES[precision]
        assert y.shape == ref.shape == (1, ref.shape[1], 6, 10)
        assert np.abs(y - ref).max() <= atol + rtol * np.abs(ref).max()


def test_the_codec_reads_each_precision(exported, photo):
    from tokc.runtimes.image_onnx import OnnxTransforms

    folder, weights, _ = exported
    w = image.ImageWeights(weights)
    auto = image.ImageCodec(w, backend="onnx")  # finds the fp32 files beside the weights
    assert auto.transforms.name == "onnx"
    data = image.ImageCodec(w, backend="torch").compress(photo, quality=60).data
    assert auto.compress(photo, quality=60).data == data
    ref = auto.decompress(data)
    for precision, max_diff in (("fp16", 2), ("int8", 64)):
        codec = image.ImageCodec(w, backend="torch")
        codec.transforms = OnnxTransforms(w, precision=precision)
        assert codec.transforms.precision == precision
        out = codec.decompress(data)
        assert out.shape == photo.shape
        assert np.abs(out.astype(int) - ref).max() <= max_diff


def test_cli_export_writes_the_sidecar(tiny_weights, tmp_path):
    r = CliRunner().invoke(main, ["export", str(tiny_weights), "-o", str(tmp_path / "out"),
                                  "--precision", "fp16", "--json"])
    assert r.exit_code == 0, r.output
    side = json.loads(r.stdout)
    assert side["precision"] == "fp16"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [base.sidecar_name(image.CODEC_ID, "fp16")] +
        [base.part_file_name(image.CODEC_ID, p, "fp16") for p in ("g_a", "h_a", "g_s")]
    )  # and no temporary folder left behind
    assert r.stderr.startswith("tokc: tokc-image-v1 fp16 -> ")
