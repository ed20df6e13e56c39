"""The int8 exports' quantization options: the s8s8 scheme (TensorRT) keeps biases in float,
since TensorRT's ONNX parser refuses DequantizeLinear nodes with int32 inputs."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tokc.export import onnx as export  # noqa: E402


def _conv_model(path):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b")
    w2 = numpy_helper.from_array(rng.normal(0, 0.2, (3, 8, 3, 3)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(rng.normal(0, 0.1, 3).astype(np.float32), "b2")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2", "b2"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 16])], [w, b, w2, b2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def _int32_dequantize_inputs(path) -> list[str]:
    model = onnx.load(str(path))
    types = {t.name: t.data_type for t in model.graph.initializer}
    return [n.input[0] for n in model.graph.node
            if n.op_type == "DequantizeLinear" and types.get(n.input[0]) == TensorProto.INT32]


@pytest.mark.parametrize("scheme, int32_biases", [("s8s8", False), ("u8s8", True)])
def test_s8s8_leaves_no_int32_dequantize(tmp_path, scheme, int32_biases):
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    _conv_model(src)
    calib = [np.random.default_rng(i).random((1, 3, 16, 16), dtype=np.float32) for i in range(4)]
    export.to_int8(src, dst, "x", calib, scheme)
    found = _int32_dequantize_inputs(dst)
    assert bool(found) == int32_biases, found
    assert sum(n.op_type == "DequantizeLinear" for n in onnx.load(str(dst)).graph.node) >= 2
