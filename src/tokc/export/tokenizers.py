"""ONNX export of the published tokenizers (One-D-Piece, TiTok VQ, WavTokenizer, WeTok,
GPSToken, FlexTok).

`tokc export --arch ARCH --checkpoint PATH -o DIR [--opset N]` writes

    <arch>.encoder.onnx   <arch>.decoder.onnx   <arch>.onnx.json

and for FlexTok also ``flextok.vae_decoder.onnx`` / ``flextok.vae_encoder.onnx`` when the
checkpoint has the VAE (its ``decoder`` graph is the flow's velocity network, one call per
sampling step: :mod:`tokc.models.flextok_graphs`). GPSToken's encoder graph takes the
Gaussians' initial layout as inputs (the image-dependent partition runs in numpy before it:
:mod:`tokc.models.gpstoken_layout`).

Every axis that can vary is dynamic and named (``batch``; ``height``/``width`` for WeTok;
``samples``/``frames`` for WavTokenizer; ``tokens`` for One-D-Piece prefix decoding, GPSToken's
token count and FlexTok's token prefix). The
sidecar holds each graph's input/output names and shapes, the dynamic axes, the opset, the
tolerance, the sha256 of the weights file and the validation of each graph against PyTorch at
a shape different from the traced one: names, then shapes, then token indices (exactly), then
values (max abs / rel error); each failure is its own error class.

Each model module describes its own graphs (``onnx_graphs``, :mod:`tokc.models.graphs`) and
what their axes accept (``onnx_constraints``); this module traces, validates and writes them.
The quantizer lookups go through ``tokc.kernels`` whose dispatch picks the plain-torch
reference while a graph is traced, so no graph ever contains a Triton kernel.

One-D-Piece decoding of a k-token prefix has two graph forms (``token_axis``):

- ``dynamic`` (the default): ``tokens`` is (batch, 1, tokens) with 1 <= tokens <= N;
- ``masked``: ``tokens`` is always (batch, 1, N) (unused slots hold any valid index) plus
  ``num_tokens`` (batch,) int64; slots at or past ``num_tokens`` are masked out of attention
  (keys get -inf), which gives the prefix decode exactly. A static shape suits engines that
  want one (TensorRT); on ONNX Runtime CPU the dynamic graph is as fast or faster, so it is
  the default. Measured with ``bench_token_axis`` (1 thread, median, a busy 2-core machine):
  parity fixture (8 tokens) ~11 ms both; a random-init S-256 shape (ViT-S decoder, 256
  tokens, official 256x256 pixel decoder) dynamic 2.04 / 1.99 / 2.58 / 1.91 s vs masked
  2.34 / 2.05 / 2.73 / 2.08 s at k = 1 / 32 / 128 / 256: the pixel decoder, the same in
  both, dominates; the masked graph always attends over all N slots.

The WavTokenizer encoder takes any number of samples (>= 8 hops): the SEANet convolutions are
traced with symbolic lengths, the LSTM (which torch.onnx would unroll over the traced length)
is written as ONNX LSTM nodes, and the three pieces are joined with ``onnx.compose``
(``tokc.models.wavtokenizer._encoder_onnx``, handed this module's tracer).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from tokc.models import flextok_graphs, gpstoken, titok, wavtokenizer, wetok
from tokc.models.graphs import Graph

MODULES = {  # arch -> the model module with onnx_graphs(model, token_axis), onnx_constraints(model)
    "one-d-piece": titok,
    "titok-vq": titok,
    "wavtokenizer": wavtokenizer,
    "wetok": wetok,
    "gpstoken": gpstoken,
    "flextok": flextok_graphs,
}
ARCHS = tuple(MODULES)
TOKEN_AXES = ("dynamic", "masked")
OPSET = 18
TOLERANCE = (1e-3, 1e-3)  # pass when max |onnx - torch| <= atol + rtol * max |torch|


class TokenizerExportError(RuntimeError):
    """An export that failed or did not validate."""


class NameMismatchError(TokenizerExportError):
    """The graph's input/output names are not the documented ones."""


class ShapeMismatchError(TokenizerExportError):
    """At the validation shape, an output's shape differs from PyTorch's."""


class TokenMismatchError(TokenizerExportError):
    """At the validation shape, integer token outputs differ from PyTorch's."""


class ValueMismatchError(TokenizerExportError):
    """At the validation shape, float outputs differ from PyTorch's beyond the tolerance."""


def _module(arch: str):
    if arch not in MODULES:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    return MODULES[arch]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- tracing and validation -------------------------------------------------------------------
def _name_axes(path: Path, graph: Graph) -> None:
    """Give every dynamic axis of the inputs and outputs its documented name."""
    import onnx

    model = onnx.load(str(path))
    for values, shapes in ((model.graph.input, graph.input_shapes),
                           (model.graph.output, graph.output_shapes)):
        for value, shape in zip(values, shapes, strict=True):
            dims = value.type.tensor_type.shape.dim
            if len(dims) != len(shape):
                raise ShapeMismatchError(
                    f"{path.name}: {value.name} has rank {len(dims)}, expected {len(shape)}")
            for d, s in zip(dims, shape, strict=True):
                if isinstance(s, str):
                    d.dim_param = s
    onnx.save(model, str(path))


def _export(module, args, inputs, outputs, dynamic_shapes, path: Path, opset: int) -> None:
    log = logging.getLogger("torch.onnx")  # "torchvision is not installed", once per export
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, args, dynamo=True, opset_version=opset, input_names=list(inputs),
                output_names=list(outputs), dynamic_shapes=dynamic_shapes, verbose=False)
    finally:
        log.setLevel(level)
    program.save(str(path), external_data=False)


def trace(graph: Graph, path: Path, opset: int) -> None:
    if graph.build is not None:
        graph.build(path, opset, _export)
    else:
        _export(graph.module, graph.traced, graph.inputs, graph.outputs, graph.dynamic_shapes,
                path, opset)
    _name_axes(path, graph)


def validate(path: Path, graph: Graph, tolerance: tuple[float, float] = TOLERANCE) -> dict:
    """ONNX Runtime vs PyTorch on ``graph.checked``: names, shapes, tokens, values."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names_in = tuple(i.name for i in sess.get_inputs())
    names_out = tuple(o.name for o in sess.get_outputs())
    if names_in != graph.inputs or names_out != graph.outputs:
        raise NameMismatchError(f"{path.name}: names {list(names_in)} -> {list(names_out)}, "
                                f"expected {list(graph.inputs)} -> {list(graph.outputs)}")
    with torch.inference_mode():
        ref = graph.module(*(torch.from_numpy(x) for x in graph.checked))
    ref = [r.numpy() for r in (ref if isinstance(ref, tuple | list) else (ref,))]
    got = sess.run(None, dict(zip(graph.inputs, graph.checked, strict=True)))
    shapes = [list(x.shape) for x in graph.checked]
    out = {"validated_shapes": shapes, "outputs": {}}
    atol, rtol = tolerance
    for name, g, r in zip(graph.outputs, got, ref, strict=True):
        if g.shape != r.shape:
            raise ShapeMismatchError(
                f"{path.name}: {name} has shape {g.shape} at inputs {shapes}, PyTorch gives {r.shape}")
        if np.issubdtype(r.dtype, np.integer):
            differ = int((g != r).sum())
            if differ:
                raise TokenMismatchError(
                    f"{path.name}: {differ} of {r.size} {name} differ from PyTorch at inputs {shapes}")
            out["outputs"][name] = {"tokens_equal": True, "count": int(r.size)}
            continue
        err = float(np.abs(g.astype(np.float64) - r).max()) if r.size else 0.0
        scale = float(np.abs(r).max()) if r.size else 0.0
        if not err <= atol + rtol * scale:  # also catches NaN
            raise ValueMismatchError(f"{path.name}: {name} max abs error {err:.3g} > "
                                     f"{atol:g} + {rtol:g} * {scale:.3g} at inputs {shapes}")
        out["outputs"][name] = {"max_abs_err": err, "max_rel_err": err / max(scale, 1e-12)}
    return out


def graphs_for(model, arch: str, token_axis: str = "dynamic") -> list[Graph]:
    return _module(arch).onnx_graphs(model, token_axis)


def constraints(model, arch: str) -> dict:
    """What the dynamic axes accept, for the sidecar."""
    return _module(arch).onnx_constraints(model)


def write_graphs(model, arch: str, out_dir: str | Path, opset: int = OPSET,
                 token_axis: str = "dynamic") -> list[tuple[Graph, Path]]:
    """Trace each of the model's graphs to ``out_dir/<arch>.<part>.onnx`` (not validated)."""
    written = []
    for graph in graphs_for(model, arch, token_axis):
        path = Path(out_dir) / f"{arch}.{graph.part}.onnx"
        trace(graph, path, opset)
        written.append((graph, path))
    return written


EXTRA_PARTS = {"flextok": ("vae_decoder", "vae_encoder")}  # written when the checkpoint has them


def file_names(arch: str) -> list[str]:
    """Every file an export of ``arch`` may write, the sidecar last."""
    parts = ("encoder", "decoder") + EXTRA_PARTS.get(arch, ())
    return [f"{arch}.{p}.onnx" for p in parts] + [f"{arch}.onnx.json"]


def export_tokenizer(arch: str, checkpoint: str | Path, out_dir: str | Path, opset: int = OPSET,
                     token_axis: str = "dynamic") -> dict:
    """Load ``checkpoint`` as ``arch``, export encoder and decoder into ``out_dir``, validate
    both, write the sidecar. Everything goes to a temporary folder first and is renamed into
    place (the sidecar last), so a failure never leaves a half-written set. -> the sidecar."""
    from tokc.models import load_pretrained
    from tokc.models.checkpoints import resolve

    _module(arch)  # an unknown arch fails here, before anything is loaded
    if token_axis not in TOKEN_AXES:
        raise ValueError(f"token_axis must be one of {TOKEN_AXES}, got {token_axis!r}")
    if token_axis == "masked" and arch != "one-d-piece":
        raise ValueError("--token-axis masked applies to one-d-piece only")
    _, weights = resolve(checkpoint)
    model = load_pretrained(checkpoint, arch=arch).eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sidecar = {
        "arch": arch,
        "weights_file": weights.name,
        "weights_sha256": _sha256(weights),
        "opset": opset,
        "tolerance": {"atol": TOLERANCE[0], "rtol": TOLERANCE[1], "tokens": "exact"},
        "torch": torch.__version__,
        "graphs": {},
    }
    sidecar["constraints"] = constraints(model, arch)
    if arch == "one-d-piece":
        sidecar["token_axis"] = token_axis
    names = []
    with tempfile.TemporaryDirectory(prefix=".tokc-export-", dir=out_dir) as tmp:
        for graph, path in write_graphs(model, arch, tmp, opset, token_axis):
            names.append(path.name)
            checked = validate(path, graph)
            dynamic = {}
            for io_name, shape in zip(graph.inputs + graph.outputs,
                                      graph.input_shapes + graph.output_shapes, strict=True):
                dynamic[io_name] = {str(i): s for i, s in enumerate(shape) if isinstance(s, str)}
            sidecar["graphs"][graph.part] = {
                "file": path.name,
                "inputs": [{"name": n, "shape": list(s)}
                           for n, s in zip(graph.inputs, graph.input_shapes, strict=True)],
                "outputs": [{"name": n, "shape": list(s)}
                            for n, s in zip(graph.outputs, graph.output_shapes, strict=True)],
                "dynamic_axes": dynamic,
                "traced_shapes": [list(x.shape) for x in graph.traced],
                "validation": checked,
            }
        names.append(file_names(arch)[-1])
        (Path(tmp) / names[-1]).write_text(json.dumps(sidecar, indent=1) + "\n")
        for name in file_names(arch):  # a part this checkpoint lacks must not linger from before
            if name not in names and (out_dir / name).exists():
                (out_dir / name).unlink()
        for name in names:
            os.replace(Path(tmp) / name, out_dir / name)
    return sidecar


def max_errors(sidecar: dict) -> dict[str, float]:
    """graph/output -> max abs error, for the summary line."""
    return {f"{part}.{name}": v["max_abs_err"]
            for part, g in sidecar["graphs"].items()
            for name, v in g["validation"]["outputs"].items() if "max_abs_err" in v}


def bench_token_axis(checkpoint: str | Path, prefixes=(1, 32, 128, 256), repeats: int = 5,
                     threads: int = 1) -> dict:
    """Median ONNX Runtime CPU seconds per decode of a k-token prefix, dynamic vs masked graph."""
    import onnxruntime as ort

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        n = None
        for axis in TOKEN_AXES:
            d = Path(tmp) / axis
            side = export_tokenizer("one-d-piece", checkpoint, d, token_axis=axis)
            n = side["graphs"]["decoder"]["inputs"][0]["shape"][2]
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            sessions[axis] = ort.InferenceSession(str(d / "one-d-piece.decoder.onnx"), opts,
                                                  providers=["CPUExecutionProvider"])
        n = n if isinstance(n, int) else max(prefixes)
        rng = np.random.default_rng(0)
        for k in prefixes:
            if k > n:
                continue
            tokens = rng.integers(0, 2, (1, 1, n), dtype=np.int64)
            feeds = {"dynamic": {"tokens": np.ascontiguousarray(tokens[:, :, :k])},
                     "masked": {"tokens": tokens, "num_tokens": np.array([k], dtype=np.int64)}}
            row = {}
            for axis, sess in sessions.items():
                sess.run(None, feeds[axis])
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    sess.run(None, feeds[axis])
                    times.append(time.perf_counter() - t0)
                row[axis] = float(np.median(times))
            results[k] = row
    return results
