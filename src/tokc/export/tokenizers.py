"""ONNX export of the published tokenizers (One-D-Piece, TiTok VQ, WavTokenizer, WeTok).

`tokc export --arch ARCH --checkpoint PATH -o DIR [--opset N]` writes

    <arch>.encoder.onnx   <arch>.decoder.onnx   <arch>.onnx.json

Every axis that can vary is dynamic and named (``batch``; ``height``/``width`` for WeTok;
``samples``/``frames`` for WavTokenizer; ``tokens`` for One-D-Piece prefix decoding). The
sidecar holds each graph's input/output names and shapes, the dynamic axes, the opset, the
tolerance, the sha256 of the weights file and the validation of each graph against PyTorch at
a shape different from the traced one: names, then shapes, then token indices (exactly), then
values (max abs / rel error); each failure is its own error class.

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
is written as ONNX LSTM nodes, and the three pieces are joined with ``onnx.compose``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

ARCHS = ("one-d-piece", "titok-vq", "wavtokenizer", "wetok")
TOKEN_AXES = ("dynamic", "masked")
OPSET = 18
TOLERANCE = (1e-3, 1e-3)  # pass when max |onnx - torch| <= atol + rtol * max |torch|
TRACED_BATCH, CHECK_BATCH = 2, 1


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


@dataclass(frozen=True)
class Graph:
    """One graph to export: the module, its named inputs/outputs with symbolic shapes."""

    part: str  # "encoder" | "decoder"
    module: object
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    input_shapes: tuple[tuple, ...]  # per input: ints and axis names
    output_shapes: tuple[tuple, ...]
    traced: tuple  # example inputs (torch tensors) for tracing
    dynamic_shapes: tuple  # torch.export Dims per input
    checked: tuple  # validation inputs (numpy), a shape other than the traced one
    build: object = None  # optional (path, opset) -> None writing the graph instead of tracing


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- One-D-Piece / TiTok VQ -------------------------------------------------------------------
def _titok_graphs(model, token_axis: str) -> list[Graph]:
    from torch.export import Dim

    from tokc.models import titok

    cfg = model.config
    h, w = cfg.image_size
    n = cfg.num_latent_tokens
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(1)
    batch = Dim("batch", min=1, max=1024)
    enc = Graph(
        "encoder", titok._EncodeGraph(model).eval(), ("image",), ("tokens",),
        (("batch", 3, h, w),), (("batch", 1, n),),
        (torch.rand(TRACED_BATCH, 3, h, w, generator=gen),), ({0: batch},),
        (rng.random((CHECK_BATCH, 3, h, w), dtype=np.float32),),
    )
    traced_tokens = torch.randint(0, cfg.codebook_size, (TRACED_BATCH, 1, n), generator=gen)
    if not cfg.legacy:
        dec = Graph(
            "decoder", titok._DecodeGraph(model).eval(), ("tokens",), ("image",),
            (("batch", 1, n),), (("batch", 3, h, w),),
            (traced_tokens,), ({0: batch},),
            (rng.integers(0, cfg.codebook_size, (CHECK_BATCH, 1, n), dtype=np.int64),),
        )
        return [enc, dec]
    k = max(1, n // 2 - 1) if n > 1 else 1  # validated prefix, != the traced n
    check_tokens = rng.integers(0, cfg.codebook_size, (CHECK_BATCH, 1, n), dtype=np.int64)
    if token_axis == "masked":
        dec = Graph(
            "decoder", MaskedDecodeGraph(model).eval(), ("tokens", "num_tokens"), ("image",),
            (("batch", 1, n), ("batch",)), (("batch", 3, h, w),),
            (traced_tokens, torch.tensor([n, max(1, n // 3)], dtype=torch.int64)),
            ({0: batch}, {0: batch}),
            (check_tokens, np.full((CHECK_BATCH,), k, dtype=np.int64)),
        )
    else:
        dims: dict[int, object] = {0: batch}
        if n > 1:
            dims[2] = Dim("tokens", min=1, max=n)
        dec = Graph(
            "decoder", titok._DecodeGraph(model).eval(), ("tokens",), ("image",),
            (("batch", 1, "tokens"),), (("batch", 3, h, w),),
            (traced_tokens,), (dims,),
            (np.ascontiguousarray(check_tokens[:, :, :k]),),
        )
    return [enc, dec]


class MaskedDecodeGraph(nn.Module):
    """One-D-Piece decode of a prefix with a fixed N-slot token axis and an attention mask."""

    def __init__(self, model):
        super().__init__()
        if not model.config.legacy:
            raise ValueError("the masked token axis is for One-D-Piece / legacy TiTok only")
        self.model = model

    def forward(self, tokens: torch.Tensor, num_tokens: torch.Tensor) -> torch.Tensor:
        m = self.model
        dec = m.decoder
        zq = m.indices_to_codes(tokens)  # (B, C, 1, N)
        b, c, hh, n = zq.shape
        gh, gw = dec.grid
        x = dec.decoder_embed(zq.reshape(b, c * hh, n).transpose(1, 2))
        x = x + dec.latent_token_positional_embedding[:n]
        cls = dec.class_embedding.unsqueeze(0).expand(b, -1, -1)
        masks = dec.mask_token.expand(b, gh * gw, -1)
        prefix = torch.cat([cls, masks], dim=1) + dec.positional_embedding
        x = dec.ln_pre(torch.cat([prefix, x], dim=1))
        slots = torch.arange(n, device=tokens.device).unsqueeze(0)
        dropped = slots >= num_tokens.reshape(-1, 1)  # (B, N)
        keep_prefix = torch.zeros(b, 1 + gh * gw, device=x.device, dtype=torch.bool)
        dropped = torch.cat([keep_prefix, dropped], dim=1)
        bias = torch.zeros(dropped.shape, dtype=x.dtype, device=x.device)
        bias = bias.masked_fill(dropped, float("-inf")).reshape(b, 1, 1, -1)
        for block in dec.transformer:
            x = x + block.attn(block.ln_1(x), bias)
            x = x + block.mlp(block.ln_2(x))
        x = dec.ln_post(x[:, 1 : 1 + gh * gw])
        x = dec.ffn(x.transpose(1, 2).reshape(b, dec.width, gh, gw))
        return m.pixel_decoder(m.pixel_quantized_states(x))


# -- WavTokenizer -----------------------------------------------------------------------------
def _wavtokenizer_graphs(model) -> list[Graph]:
    from torch.export import Dim

    from tokc.models import wavtokenizer as wt

    cfg = model.config
    hop = cfg.hop
    batch = Dim("batch", min=1, max=1024)
    rng = np.random.default_rng(1)
    gen = torch.Generator().manual_seed(0)
    traced, checked = 24 * hop, 17 * hop + 123  # samples; any length >= MIN_SAMPLES_HOPS * hop
    enc = Graph(
        "encoder", wt.EncoderGraph(model).eval(), ("audio",), ("codes", "latents"),
        (("batch", "samples"),), ((1, "batch", "frames"), ("batch", cfg.dimension, "frames")),
        (0.1 * torch.randn(TRACED_BATCH, traced, generator=gen),), (),
        ((0.1 * rng.standard_normal((CHECK_BATCH, checked))).astype(np.float32),),
        build=lambda path, opset: _wavtokenizer_encoder(model, path, opset),
    )
    f = Dim("frames", min=2, max=100000)
    dec = Graph(
        "decoder", wt.DecoderGraph(model, model.bandwidth_id).eval(), ("codes",), ("audio",),
        ((1, "batch", "frames"),), (("batch", f"{hop}*frames"),),
        (torch.randint(0, cfg.codebook_size, (1, TRACED_BATCH, 16), generator=gen),),
        ({1: batch, 2: f},),
        (rng.integers(0, cfg.codebook_size, (1, CHECK_BATCH, 11), dtype=np.int64),),
    )
    return [enc, dec]


MIN_SAMPLES_HOPS = 8  # the encoder graph takes at least 8 hops of audio (SEANet's reflect pads)


class _Seq(nn.Module):
    def __init__(self, layers, quantizer=None, unsqueeze=False):
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.quantizer = quantizer
        self.unsqueeze = unsqueeze

    def forward(self, x: torch.Tensor):
        y = self.layers(x.unsqueeze(1) if self.unsqueeze else x)
        if self.quantizer is None:
            return y
        return self.quantizer.codes_to_indices(y), y


def _lstm_onnx(slstm, ir_version: int, opset: int):
    """The SEANet LSTM (with its skip) as ONNX LSTM nodes: (B, C, T) 'pre' -> 'post', any T.

    torch.onnx unrolls nn.LSTM over the traced length, so the loop is written here as ONNX's own
    LSTM op (gates reordered from torch's i, f, g, o to ONNX's i, o, f, c)."""
    from onnx import TensorProto, helper, numpy_helper

    lstm = slstm.lstm
    hid = lstm.hidden_size
    order = [0, 3, 1, 2]
    nodes = [helper.make_node("Transpose", ["pre"], ["lstm_seq"], perm=[2, 0, 1])]
    inits = [numpy_helper.from_array(np.array([1], dtype=np.int64), "lstm_axis1")]
    x = "lstm_seq"
    for layer in range(lstm.num_layers):
        def blocks(t):
            t = t.detach().float().numpy().reshape(4, hid, *t.shape[1:])
            return np.concatenate([t[i] for i in order], 0)

        w = blocks(getattr(lstm, f"weight_ih_l{layer}"))[None]
        r = blocks(getattr(lstm, f"weight_hh_l{layer}"))[None]
        b = np.concatenate([blocks(getattr(lstm, f"bias_ih_l{layer}")),
                            blocks(getattr(lstm, f"bias_hh_l{layer}"))])[None]
        names = [f"lstm_w{layer}", f"lstm_r{layer}", f"lstm_b{layer}"]
        inits += [numpy_helper.from_array(np.ascontiguousarray(v, dtype=np.float32), n)
                  for v, n in zip((w, r, b), names, strict=True)]
        nodes.append(helper.make_node("LSTM", [x, *names], [f"lstm_y{layer}"], hidden_size=hid))
        nodes.append(helper.make_node("Squeeze", [f"lstm_y{layer}", "lstm_axis1"], [f"lstm_h{layer}"]))
        x = f"lstm_h{layer}"
    nodes.append(helper.make_node("Add", [x, "lstm_seq"], ["lstm_sum"]))
    nodes.append(helper.make_node("Transpose", ["lstm_sum"], ["post"], perm=[1, 2, 0]))
    c = lstm.input_size
    graph = helper.make_graph(
        nodes, "slstm", [helper.make_tensor_value_info("pre", TensorProto.FLOAT, ["batch", c, "frames"])],
        [helper.make_tensor_value_info("post", TensorProto.FLOAT, ["batch", c, "frames"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def _rename(model, old: str, new: str) -> None:
    g = model.graph
    for v in list(g.input) + list(g.output):
        if v.name == old:
            v.name = new
    for node in g.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


def _wavtokenizer_encoder(model, path: Path, opset: int) -> None:
    """audio (batch, samples) -> codes, latents with the number of samples dynamic: the SEANet
    convolutions before and after the LSTM are traced with symbolic lengths (their reflect
    padding is computed in the graph) and joined to the LSTM written as ONNX LSTM nodes."""
    import onnx
    from onnx import compose
    from torch.export import Dim

    from tokc.models.wavtokenizer import SLSTM

    layers = list(model.encoder.model)
    i = next(j for j, layer in enumerate(layers) if isinstance(layer, SLSTM))
    hop = model.config.hop
    batch = Dim("batch", min=1, max=1024)
    samples = Dim("samples", min=MIN_SAMPLES_HOPS * hop, max=1 << 26)
    frames = Dim("frames", min=4, max=1 << 20)
    gen = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(TRACED_BATCH, 24 * hop, generator=gen)
    with torch.no_grad():
        pre = _Seq(layers[:i], unsqueeze=True)(audio)
    front = _Seq(layers[:i], unsqueeze=True).eval()
    back = _Seq(layers[i + 1 :], quantizer=model.quantizer).eval()
    with tempfile.TemporaryDirectory() as tmp:
        f_path, b_path = Path(tmp) / "front.onnx", Path(tmp) / "back.onnx"
        _export(front, (audio,), ["audio"], ["pre"], ({0: batch, 1: samples},), f_path, opset)
        _export(back, (pre,), ["post"], ["codes", "latents"], ({0: batch, 2: frames},), b_path, opset)
        f_model, b_model = onnx.load(str(f_path)), onnx.load(str(b_path))
    f_model = compose.add_prefix(f_model, "front/")
    b_model = compose.add_prefix(b_model, "back/")
    mid = _lstm_onnx(layers[i], f_model.ir_version, opset)
    mid = compose.add_prefix(mid, "lstm/")
    merged = compose.merge_models(f_model, mid, io_map=[("front/pre", "lstm/pre")])
    merged = compose.merge_models(merged, b_model, io_map=[("lstm/post", "back/post")])
    for old, new in (("front/audio", "audio"), ("back/codes", "codes"), ("back/latents", "latents")):
        _rename(merged, old, new)
    onnx.checker.check_model(merged)
    onnx.save(merged, str(path))


# -- WeTok ------------------------------------------------------------------------------------
def _wetok_graphs(model) -> list[Graph]:
    from torch.export import Dim

    from tokc.models import wetok

    cfg = model.config
    f = model.downsample_factor
    g = cfg.num_codebooks
    batch = Dim("batch", min=1, max=1024)
    h = Dim("height", min=1, max=4096)
    w = Dim("width", min=1, max=4096)
    rng = np.random.default_rng(1)
    gen = torch.Generator().manual_seed(0)
    th, tw = 4, 3  # traced latent grid; validated at 3 x 5
    ch, cw = 3, 5
    fh, fw = f"{f}*height", f"{f}*width"
    enc = Graph(
        "encoder", wetok.EncoderGraph(model).eval(), ("image",), ("indices", "latents"),
        (("batch", cfg.in_channels, fh, fw),),
        (("batch", "height", "width", g), ("batch", cfg.z_channels, "height", "width")),
        (torch.rand(TRACED_BATCH, cfg.in_channels, th * f, tw * f, generator=gen) * 2 - 1,),
        ({0: batch, 2: f * h, 3: f * w},),
        ((rng.random((CHECK_BATCH, cfg.in_channels, ch * f, cw * f), dtype=np.float32) * 2 - 1),),
    )
    n = 2 ** cfg.codebook_bits
    dec = Graph(
        "decoder", wetok.DecoderGraph(model).eval(), ("indices",), ("image",),
        (("batch", "height", "width", g),), (("batch", cfg.out_ch, fh, fw),),
        (torch.randint(0, n, (TRACED_BATCH, th, tw, g), generator=gen),),
        ({0: batch, 1: h, 2: w},),
        (rng.integers(0, n, (CHECK_BATCH, ch, cw, g), dtype=np.int64),),
    )
    return [enc, dec]


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
        graph.build(path, opset)
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
    if arch in ("one-d-piece", "titok-vq"):
        return _titok_graphs(model, token_axis)
    if arch == "wavtokenizer":
        return _wavtokenizer_graphs(model)
    if arch == "wetok":
        return _wetok_graphs(model)
    raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")


def constraints(model, arch: str) -> dict:
    """What the dynamic axes accept, for the sidecar."""
    if arch in ("one-d-piece", "titok-vq"):
        cfg = model.config
        return {"image_size": list(cfg.image_size), "num_tokens": cfg.num_latent_tokens,
                "codebook_size": cfg.codebook_size, "image_range": [0.0, 1.0],
                "decoder_tokens": f"1..{cfg.num_latent_tokens}" if cfg.legacy else cfg.num_latent_tokens}
    if arch == "wavtokenizer":
        return {"sample_rate": model.config.sample_rate, "hop": model.config.hop,
                "min_samples": MIN_SAMPLES_HOPS * model.config.hop, "min_frames": 2,
                "codebook_size": model.config.codebook_size}
    return {"spatial_multiple": model.downsample_factor, "image_range": [-1.0, 1.0],
            "bits_per_group": model.config.codebook_bits, "groups": model.config.num_codebooks}


def file_names(arch: str) -> list[str]:
    return [f"{arch}.encoder.onnx", f"{arch}.decoder.onnx", f"{arch}.onnx.json"]


def export_tokenizer(arch: str, checkpoint: str | Path, out_dir: str | Path, opset: int = OPSET,
                     token_axis: str = "dynamic") -> dict:
    """Load ``checkpoint`` as ``arch``, export encoder and decoder into ``out_dir``, validate
    both, write the sidecar. Everything goes to a temporary folder first and is renamed into
    place (the sidecar last), so a failure never leaves a half-written set. -> the sidecar."""
    from tokc.models import load_pretrained
    from tokc.models.checkpoints import resolve

    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
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
    names = file_names(arch)
    with tempfile.TemporaryDirectory(prefix=".tokc-export-", dir=out_dir) as tmp:
        for graph, name in zip(graphs_for(model, arch, token_axis), names, strict=False):
            path = Path(tmp) / name
            trace(graph, path, opset)
            checked = validate(path, graph)
            dynamic = {}
            for io_name, shape in zip(graph.inputs + graph.outputs,
                                      graph.input_shapes + graph.output_shapes, strict=True):
                dynamic[io_name] = {str(i): s for i, s in enumerate(shape) if isinstance(s, str)}
            sidecar["graphs"][graph.part] = {
                "file": name,
                "inputs": [{"name": n, "shape": list(s)}
                           for n, s in zip(graph.inputs, graph.input_shapes, strict=True)],
                "outputs": [{"name": n, "shape": list(s)}
                            for n, s in zip(graph.outputs, graph.output_shapes, strict=True)],
                "dynamic_axes": dynamic,
                "traced_shapes": [list(x.shape) for x in graph.traced],
                "validation": checked,
            }
        (Path(tmp) / names[-1]).write_text(json.dumps(sidecar, indent=1) + "\n")
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
