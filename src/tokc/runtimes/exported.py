"""A published tokenizer from its exported folder, without torch: `tokc export --arch ARCH
--checkpoint CKPT -o DIR` writes <arch>.encoder.onnx, <arch>.decoder.onnx and <arch>.onnx.json;
this runs them on ONNX Runtime (CPU, or the CUDA provider) or on TensorRT through ONNX Runtime's
TensorRT provider, whose engines go to tokc's engine cache (tokc.runtimes.trt.default_cache_dir).

    tok = load_exported("exports/")            # or tokc.load_exported
    tokens = tok.encode(image)                  # numpy in, numpy out (the graph's first output)
    image = tok.decode(tokens)                  # other decoder inputs: keywords, else defaults

Inputs are numpy arrays shaped as the sidecar says (`tok.encoder_inputs`, `tok.decoder_inputs`);
a decoder input the caller leaves out takes the sidecar's default (WavTokenizer's
`bandwidth_id`: the checkpoint's; One-D-Piece's masked `num_tokens`: the prefix the caller gives
as `prefix=`, else every slot), and any other missing input is an error naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tokc.runtimes.errors import RuntimeInputError, RuntimeUnavailable

DEVICES = ("cpu", "cuda", "tensorrt")


def find_sidecar(folder: Path) -> Path:
    folder = Path(folder)
    if folder.is_file():
        return folder
    found = []
    for p in sorted(folder.glob("*.onnx.json")):
        try:
            side = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(side, dict) and "arch" in side and "graphs" in side:
            found.append(p)
    if not found:
        raise RuntimeUnavailable(f"{folder}: no tokenizer export (an <arch>.onnx.json from "
                                 "`tokc export --arch`)")
    if len(found) > 1:
        raise RuntimeUnavailable(f"{folder}: several tokenizer exports ({', '.join(p.name for p in found)}); "
                                 "give the .onnx.json")
    return found[0]


def _providers(device: str) -> list:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise RuntimeUnavailable("ONNX Runtime here has no CUDA provider (pip install onnxruntime-gpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if "TensorrtExecutionProvider" not in available:
        raise RuntimeUnavailable("ONNX Runtime here has no TensorRT provider (onnxruntime-gpu with TensorRT)")
    from tokc.runtimes.trt import default_cache_dir

    cache = default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    return [("TensorrtExecutionProvider", {"trt_engine_cache_enable": True,
                                           "trt_engine_cache_path": str(cache)}),
            "CUDAExecutionProvider", "CPUExecutionProvider"]


class ExportedTokenizer:
    def __init__(self, sidecar: Path, device: str = "cpu", threads: int | None = None):
        import onnxruntime as ort

        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        self.sidecar_path = Path(sidecar)
        self.sidecar = side = json.loads(self.sidecar_path.read_text())
        self.arch = side["arch"]
        self.constraints = side.get("constraints", {})
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = _providers(device)
        self.sessions = {}
        for part in ("encoder", "decoder"):
            path = self.sidecar_path.parent / side["graphs"][part]["file"]
            if not path.exists():
                raise RuntimeUnavailable(f"{path} is missing (the export is incomplete)")
            self.sessions[part] = ort.InferenceSession(str(path), opts, providers=providers)
        self.device = device

    @property
    def encoder_inputs(self) -> list[dict]:
        return self.sidecar["graphs"]["encoder"]["inputs"]

    @property
    def decoder_inputs(self) -> list[dict]:
        return self.sidecar["graphs"]["decoder"]["inputs"]

    def _run(self, part: str, first: np.ndarray, given: dict) -> dict[str, np.ndarray]:
        specs = self.sidecar["graphs"][part]["inputs"]
        sess = self.sessions[part]
        types = {i.name: i.type for i in sess.get_inputs()}
        feed = {}
        for k, spec in enumerate(specs):
            name = spec["name"]
            value = first if k == 0 else given.pop(name, None)
            if value is None:
                value = self._default(name, first)
            if value is None:
                raise RuntimeInputError(f"{self.arch} {part}: input {name!r} {spec['shape']} is required")
            dtype = np.int64 if "int64" in types[name] else np.float32
            arr = np.ascontiguousarray(value, dtype=dtype)
            if arr.ndim != len(spec["shape"]):
                raise RuntimeInputError(f"{self.arch} {part}: {name!r} must be {spec['shape']}, "
                                        f"got shape {arr.shape}")
            feed[name] = arr
        if given:
            raise RuntimeInputError(f"{self.arch} {part} has no input {', '.join(map(repr, given))}")
        outs = sess.run(None, feed)
        return {o["name"]: v for o, v in zip(self.sidecar["graphs"][part]["outputs"], outs, strict=True)}

    def _default(self, name: str, first: np.ndarray):
        if name == "bandwidth_id" and "bandwidth_id_default" in self.constraints:
            return np.array([self.constraints["bandwidth_id_default"]], dtype=np.int64)
        if name == "num_tokens":  # the masked One-D-Piece decoder: every slot by default
            return np.full((first.shape[0],), first.shape[-1], dtype=np.int64)
        return None

    def encode_all(self, x: np.ndarray, **inputs) -> dict[str, np.ndarray]:
        """Every output of the encoder graph by name (tokens, latents)."""
        return self._run("encoder", x, dict(inputs))

    def encode(self, x: np.ndarray, **inputs) -> np.ndarray:
        """The encoder's tokens (its first output)."""
        return next(iter(self.encode_all(x, **inputs).values()))

    def decode(self, tokens: np.ndarray, prefix: int | None = None, **inputs) -> np.ndarray:
        """The decoder's output (image or audio) from tokens; prefix: One-D-Piece decodes the
        first `prefix` tokens (a slice for the dynamic graph, num_tokens for the masked one)."""
        tokens = np.asarray(tokens)
        if prefix is not None:
            if self.sidecar.get("token_axis") == "masked":
                inputs.setdefault("num_tokens", np.full((tokens.shape[0],), prefix, dtype=np.int64))
            else:
                tokens = tokens[..., :prefix]
        return next(iter(self._run("decoder", tokens, dict(inputs)).values()))


def load_exported(folder: str | Path, device: str = "cpu", threads: int | None = None) -> ExportedTokenizer:
    """The tokenizer exported into folder (or the sidecar .onnx.json given), on device cpu,
    cuda (ONNX Runtime's CUDA provider) or tensorrt (its TensorRT provider)."""
    return ExportedTokenizer(find_sidecar(Path(folder)), device, threads)
