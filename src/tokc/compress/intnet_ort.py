"""The integer networks (tokc.compress.intnet) in ONNX Runtime: the same integers, faster than
numpy on these small images.

A convolution (any kh x kw kernel) whose inputs are bounded by m is exact in float32 whatever
the order of its sums when m * (largest sum of |weights| of one output) <= 2**24: every
partial sum is an integer that float32 holds. That holds for every hidden layer of the shipped networks at their
input clip, and for the first layer at the tokens' actual range (checked on each call). So a
network runs as one ONNX graph (graph_bytes): per layer Conv, bias, rescaling by 2**-shift with
the rounding half, Floor, Clip, depth-to-space; the bias and rescaling in float32 where that is
exact too, else in float64, where every one of them is exact. The graph is written here (a
minimal protobuf writer, tokc.compress.onnx_proto: the core install has onnxruntime, not the
`onnx` package) and runs on
the CPU provider, whose convolutions are products and sums (im2col and GEMM, or NCHWc direct
convolution; no Winograd or FFT), with bfloat16 fast math off. Otherwise the network runs in
numpy (intnet.run), the spec; tests check that both give the same integers on the shipped
networks.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from tokc.compress import intnet
from tokc.compress.onnx_proto import DOUBLE, FLOAT  # noqa: F401
from tokc.compress.onnx_proto import field as _field
from tokc.compress.onnx_proto import node as _node
from tokc.compress.onnx_proto import tensor as _tensor
from tokc.compress.onnx_proto import value_info as _value
from tokc.compress.onnx_proto import varint as _varint  # noqa: F401
from tokc.runtimes.ort import lean_memory


def float32_rescale_exact(layer: intnet.IntConv) -> bool:
    """Whether the bias and the rescaling are exact in float32 too: for each output,
    in_clip * sum|weights| + |bias| + the rounding half within 2**24."""
    half = np.where(layer.shifts > 0, np.ldexp(1.0, layer.shifts - 1), 0.0)
    return bool(np.all(layer.in_clip * layer.l1 + np.abs(layer.bias) + half <= intnet.F32_EXACT))


def graph_bytes(layers: list[intnet.IntConv]) -> bytes:
    """The ONNX model (opset 13) of an integer network: input x (1, C, H, W), output y, both
    float32 holding integers. Per layer: Conv, (v + bias) * 2**-shift + 1/2 (the half only
    where shift > 0), Floor, Clip, optional depth-to-space (DepthToSpace, or depth_to_space where
    rh != rw); the bias and the rescaling in float32 where that is exact
    (float32_rescale_exact), else in float64. Each Clip also applies the
    next layer's input clip (clip(clip(v, a, b), -c, c) == clip(v, max(a, -c), min(b, c)))."""
    nodes, inits = [], []

    def const(array, dtype) -> str:
        name = f"c{len(inits)}"
        inits.append(_field(5, _tensor(name, np.asarray(array, dtype))))
        return name

    def op(name: str, *inputs: str, **attributes) -> str:
        out = f"v{len(nodes)}"
        nodes.append(_field(1, _node(name, list(inputs), out, **attributes)))
        return out

    per_channel = (1, -1, 1, 1)
    top = 2**intnet.ACT_BITS
    x = op("Clip", "x", const(-layers[0].in_clip, np.float32), const(layers[0].in_clip, np.float32))
    for i, layer in enumerate(layers):
        s = layer.shifts
        scale = np.ldexp(1.0, -s).reshape(per_channel)
        half = np.where(s > 0, 0.5, 0.0).reshape(per_channel)
        nxt = layers[i + 1].in_clip if i + 1 < len(layers) else top
        lo, hi = max(0 if layer.relu else -top, -nxt), min(top, nxt)
        w = const(layer.weight, np.float32)
        (kh, kw), (rh, rw) = layer.kernel, layer.factor
        conv = {"kernel_shape": [kh, kw], "pads": [kh // 2, kw // 2, kh // 2, kw // 2]}
        if i and float32_rescale_exact(layer):
            y = op("Conv", x, w, const(layer.bias, np.float32), **conv)
            y = op("Floor", op("Add", op("Mul", y, const(scale, np.float32)), const(half, np.float32)))
            x = op("Clip", y, const(lo, np.float32), const(hi, np.float32))
        else:  # (v + b) * 2**-s + 1/2 == v * 2**-s + (b * 2**-s + 1/2), exact in float64
            y = op("Cast", op("Conv", x, w, **conv), to=DOUBLE)
            offset = layer.bias.reshape(per_channel) * scale + half
            y = op("Floor", op("Add", op("Mul", y, const(scale, np.float64)), const(offset, np.float64)))
            x = op("Cast", op("Clip", y, const(lo, np.float64), const(hi, np.float64)), to=FLOAT)
        if rh == rw > 1:
            x = op("DepthToSpace", x, blocksize=rh, mode="CRD")  # CRD: PixelShuffle's order
        elif rh != rw:
            x = depth_to_space(op, const, x, len(layer.weight) // (rh * rw), rh, rw)
    graph = (b"".join(nodes) + _field(2, "intnet") + b"".join(inits)
             + _field(11, _value("x", (1, layers[0].weight.shape[1], "height", "width")))
             + _field(12, _value(x, (1, "channels", "out_height", "out_width"))))
    return _field(1, 7) + _field(7, graph) + _field(8, _field(1, "") + _field(2, 13))


def depth_to_space(op, const, x: str, c: int, rh: int, rw: int) -> str:
    """intnet.depth_to_space by (rh, rw) in graph nodes, for rh != rw (DepthToSpace takes square
    blocks only): (1, c*rh*rw, H, W) -> (1, c, rh, rw, H, W) -> (1, c, H, rh, W, rw) ->
    (1, c, H*rh, W*rw); H and W come from the tensor's shape at run time. op and const:
    graph_bytes's node and constant makers."""
    hw = op("Gather", op("Shape", x), const([2, 3], np.int64))
    x = op("Reshape", x, op("Concat", const([1, c, rh, rw], np.int64), hw, axis=0))
    x = op("Transpose", x, perm=[0, 1, 4, 2, 5, 3])
    out_hw = op("Mul", hw, const([rh, rw], np.int64))
    return op("Reshape", x, op("Concat", const([1, c], np.int64), out_hw, axis=0))


class Network:
    """An integer network: network(x) == intnet.run(layers, x), in ONNX Runtime where float32 is
    exact (see the module's docstring), else in numpy (also when onnxruntime is missing or
    `accelerate` is off)."""

    def __init__(self, layers: list[intnet.IntConv], accelerate: bool = True, threads: int = 0):
        self.layers = layers
        self.accelerate = accelerate
        self.threads = threads

    @cached_property
    def session(self):
        """The network's ONNX Runtime session, or None where it cannot be exact."""
        # f32_taps == every tap: the whole sum at in_clip within 2**24 (intnet's float32 bound)
        hidden_exact = all(la.f32_taps == la.weight[0, 0].size for la in self.layers[1:])
        if not (self.accelerate and hidden_exact):
            return None
        try:
            import onnxruntime as ort
        except ImportError:
            return None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("mlas.enable_gemm_fastmath_arm64_bfloat16", "0")
        # short runs with numpy between them: idle threads sleep rather than spin
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        lean_memory(opts)
        return ort.InferenceSession(graph_bytes(self.layers), opts, providers=["CPUExecutionProvider"])

    def exact_in_float32(self, x: np.ndarray) -> bool:
        """Whether the first layer is exact in float32 on this input (the others always are)."""
        first = self.layers[0]
        bound = min(float(np.abs(x).max(initial=0)), first.in_clip)
        return bound * first.l1_max <= intnet.F32_EXACT

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: (C, H, W) integers. Returns float64 holding integers, as intnet.run."""
        if self.session is not None and self.exact_in_float32(x):
            # float32 holds x exactly up to 2**24, and larger values clip to in_clip either way
            y = self.session.run(None, {"x": np.asarray(x, np.float32)[None]})[0]
            return y[0].astype(np.float64)
        return intnet.run(self.layers, x)
