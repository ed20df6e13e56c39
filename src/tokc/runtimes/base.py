"""One interface over the inference backends: load a model part, run named inputs to named
outputs, on a device, at a precision.

    from tokc.runtimes import base
    g_s = base.load(folder / "tokc-image-v1.onnx.json", "g_s", backend="onnx", threads=2)
    x_hat = g_s.run({"y_hat": y_hat})["x_hat"]

Backends: `onnx` (ort.py, ONNX Runtime, imports no torch), `torch` (torch.py, the PyTorch
modules the export was traced from) and `tensorrt` (trt.py, engines built from the ONNX files).
What a part is comes from the export's JSON sidecar (written by tokc.export.onnx); this module
reads it with the standard library only.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from tokc.runtimes.errors import CodecError, CodecUsageError, RuntimeInputError, RuntimeUnavailable

T = TypeVar("T")

BACKENDS = ("onnx", "torch", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
DEVICES = ("cpu", "cuda")


def sidecar_name(codec: str, precision: str = "fp32") -> str:
    """tokc-image-v1.onnx.json for fp32 (the shipped files), tokc-image-v1.<precision>.onnx.json
    otherwise."""
    return f"{codec}.onnx.json" if precision == "fp32" else f"{codec}.{precision}.onnx.json"


def part_file_name(codec: str, part: str, precision: str = "fp32") -> str:
    return f"{codec}.{part}.onnx" if precision == "fp32" else f"{codec}.{part}.{precision}.onnx"


@dataclass(frozen=True)
class Part:
    """One exported graph, as its sidecar entry describes it."""

    name: str  # "g_a", "h_a", "g_s"
    path: Path  # the .onnx file
    input: str
    output: str
    channels: int  # input channels
    input_shape: tuple  # e.g. ("batch", 3, "16*height", "16*width")


@dataclass(frozen=True)
class Export:
    """An export's JSON sidecar: which weights, which precision, which parts."""

    path: Path
    codec: str
    precision: str
    weights_sha256: str
    weights_file: str | None
    opset: int
    int8_scheme: str | None
    parts: dict  # name -> Part


def read_export(path: Path) -> Export:
    """Read a sidecar (a .onnx.json file)."""
    path = Path(path)
    try:
        side = json.loads(path.read_text())
        parts = {
            name: Part(
                name, path.parent / spec["file"], spec["input"], spec["output"],
                int(spec["validated_shape"][1]),
                tuple(spec.get("input_shape") or ("batch", spec["validated_shape"][1], "height", "width")),
            )
            for name, spec in side["parts"].items()
        }
        return Export(path, side["codec"], side.get("precision", "fp32"), side["weights_sha256"],
                      side.get("weights_file"), int(side["opset"]), side.get("int8_scheme"), parts)
    except FileNotFoundError:
        raise RuntimeUnavailable(f"no export sidecar {path}") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as e:
        raise RuntimeUnavailable(f"{path} is not an export sidecar: {e}") from None


class Runtime(ABC):
    """A loaded model part. run() takes and returns float32 numpy arrays by name, whatever the
    precision inside."""

    backend: str = ""

    def __init__(self, input_names, output_names, device: str, precision: str):
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        self.device = device
        self.precision = precision

    @abstractmethod
    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if set(inputs) != set(self.input_names):
            raise RuntimeInputError(
                f"inputs {sorted(inputs)} do not match the model's {list(self.input_names)}"
            )
        feed = {}
        for name, value in inputs.items():
            arr = np.ascontiguousarray(value, dtype=np.float32)
            if arr.ndim != 4:
                raise RuntimeInputError(f"input {name!r} must be (batch, channels, height, width), got {arr.shape}")
            feed[name] = arr
        return self._run(feed)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.backend} {self.device} {self.precision} "
                f"{list(self.input_names)} -> {list(self.output_names)}>")


def backend_available(backend: str, device: str = "cpu") -> bool:
    """Whether `load` would find the backend's library (and device) here."""
    import importlib.util

    if backend == "onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            return False
        if device == "cpu":
            return True
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if backend == "torch":
        if importlib.util.find_spec("torch") is None:
            return False
        if device == "cpu":
            return True
        import torch

        return torch.cuda.is_available()
    if backend == "tensorrt":
        return device == "cuda" and importlib.util.find_spec("tensorrt") is not None
    raise ValueError(f"unknown backend {backend!r} ({', '.join(BACKENDS)})")


def backend_order(backend: str = "auto", device: str = "cpu") -> tuple[str, ...]:
    """THE backend policy, for every codec and bench: a named backend alone; auto tries
    TensorRT on a GPU, then ONNX Runtime, then PyTorch."""
    if backend == "auto":
        return ("tensorrt", "onnx", "torch") if device == "cuda" else ("onnx", "torch")
    if backend not in BACKENDS:
        raise CodecUsageError(f"unknown backend {backend!r} ({', '.join(BACKENDS)}, auto)")
    return (backend,)


def pick_backend(device: str = "cpu") -> str:
    """auto: the first backend in backend_order whose library (and device) is here."""
    for backend in backend_order("auto", device):
        if backend_available(backend, device):
            return backend
    raise RuntimeUnavailable(
        f"no backend for device {device!r}: install onnxruntime (CPU), onnxruntime-gpu or "
        "TensorRT (CUDA), or torch"
    )


def first_that_loads(backend: str, device: str, load: Callable[[str], T],
                     errors=(CodecError, RuntimeUnavailable, ImportError)) -> T:
    """load(name) for each backend of backend_order in turn: the first that loads; the last
    one's error when none does (a named backend's own error)."""
    order = backend_order(backend, device)
    for i, name in enumerate(order):
        try:
            return load(name)
        except errors:
            if i == len(order) - 1:
                raise
    raise AssertionError("unreachable")


def load(sidecar: Path | Export, part: str, backend: str = "auto", device: str = "cpu",
         threads: int | None = None, weights: Path | None = None, **options) -> Runtime:
    """Load one part of an export with a backend. `weights` (torch only) defaults to the
    weights file named in the sidecar, beside it; options go to the backend (TensorRT:
    cache_dir, profile)."""
    exp = sidecar if isinstance(sidecar, Export) else read_export(sidecar)
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r} ({', '.join(DEVICES)})")
    if part not in exp.parts:
        raise ValueError(f"{exp.path} has no part {part!r} ({', '.join(exp.parts)})")
    if backend == "auto":
        backend = pick_backend(device)
    spec = exp.parts[part]
    if backend == "onnx":
        from tokc.runtimes.ort import OrtRuntime

        return OrtRuntime(spec.path, device=device, precision=exp.precision, threads=threads)
    if backend == "torch":
        from tokc.runtimes.torch import TorchRuntime

        weights = Path(weights) if weights else exp.path.parent / (exp.weights_file or f"{exp.codec}.safetensors")
        return TorchRuntime.from_weights(weights, part, device=device, precision=exp.precision,
                                         threads=threads, expected_sha256=exp.weights_sha256,
                                         io=(spec.input, spec.output))
    if backend == "tensorrt":
        from tokc.runtimes.trt import TensorRTRuntime

        return TensorRTRuntime.from_part(spec, exp, device=device, **options)
    raise ValueError(f"unknown backend {backend!r} ({', '.join(BACKENDS)}, auto)")


class Transforms:
    """The named parts of a model (e.g. g_a, h_a, g_s), each a Runtime, run on one unbatched
    array: run(part, x) -> array. What a codec's float transforms are, whatever the backend."""

    def __init__(self, runtimes: Mapping[str, Runtime], name: str | None = None):
        self.runtimes = dict(runtimes)
        first = next(iter(self.runtimes.values()))
        self.name = name or first.backend
        self.device, self.precision = first.device, first.precision

    def run(self, part: str, x: np.ndarray) -> np.ndarray:
        rt = self.runtimes[part]
        return rt.run({rt.input_names[0]: x[None]})[rt.output_names[0]][0]


def load_parts(sidecar: Path | Export, backend: str = "auto", device: str = "cpu",
               threads: int | None = None, **options) -> Transforms:
    """Every part of an export, loaded with one backend."""
    exp = sidecar if isinstance(sidecar, Export) else read_export(sidecar)
    return Transforms({p: load(exp, p, backend, device, threads, **options) for p in exp.parts})


def open_export(folder: Path, codec_id: str, precision: str, weights_sha256: str) -> Export:
    """The export of a codec's weights in a folder, checked to be made from these weights
    (CodecError otherwise: decoding with other weights would be silently wrong)."""
    folder = Path(folder)
    path = folder / sidecar_name(codec_id, precision)
    if not path.exists():
        raise CodecError(f"no {precision} ONNX export in {folder} "
                         f"(tokc export {codec_id} -o {folder} --precision {precision})")
    try:
        exp = read_export(path)
    except RuntimeUnavailable as e:
        raise CodecError(str(e)) from None
    if exp.weights_sha256 != weights_sha256:
        raise CodecError(f"the {precision} ONNX files in {folder} were made from other weights")
    return exp
