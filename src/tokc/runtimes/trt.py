"""TensorRT backend: engines built from the exported ONNX files, cached on disk.

- One optimization profile per engine covering the part's dynamic axes (batch 1; height and
  width from `PROFILES`, in the units of the part's input).
- Precision follows the export: fp32 (TF32 where the GPU has it), fp16 (FP16 flag), int8
  (an explicitly quantized QDQ graph, `tokc export --precision int8 --int8-scheme s8s8`: the
  calibration on training crops happened at export; FP16 and INT8 flags).
- Cache key: sha256 of the ONNX file, TensorRT version, GPU compute capability, precision and
  shape profile. An engine is only valid for the TensorRT version and GPU it was built on.
- Device memory through cuda-python (`pip install cuda-python`); no torch needed.

Prebuild the engines of an export (e.g. on a Jetson, once):
    python -m tokc.runtimes.trt path/to/tokc-image-v1.fp16.onnx.json [--cache-dir DIR]

This file has not run on a GPU in this repository's CI (TensorRT is not installable on its
CPU machines); benchmarks/gpu_check.sh and docs/JETSON.md are how it is checked on one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from tokc.runtimes.base import Export, Part, Runtime, RuntimeUnavailable

# height/width (min, opt, max) of each part's input, in its own units: g_a in pixels (the
# codec's tiles are at most 768 + 2*64 = 896), h_a in latents over the whole image (512 = 8192
# px), g_s in latents (tiles of at most 48 + 2*4 = 56).
PROFILES = {"g_a": (64, 768, 896), "h_a": (4, 48, 512), "g_s": (4, 48, 56)}
WORKSPACE = 1 << 30
UNAVAILABLE = ("TensorRT is not installed (on a Jetson it comes with JetPack; on x86 see "
               "docs/JETSON.md)")


class EngineBuildError(RuntimeError):
    pass


def default_cache_dir() -> Path:
    return Path(os.environ.get("TOKC_ENGINE_CACHE") or Path.home() / ".cache" / "tokc" / "engines")


def profile_shapes(part: Part, spatial: tuple[int, int, int] | None = None) -> dict:
    """{input name: (min shape, opt shape, max shape)} for one part, batch 1, square extents."""
    lo, opt, hi = spatial or PROFILES[part.name]
    if not 1 <= lo <= opt <= hi:
        raise ValueError(f"a shape profile needs 1 <= min <= opt <= max, got {(lo, opt, hi)}")
    c = part.channels
    return {part.input: ((1, c, lo, lo), (1, c, opt, opt), (1, c, hi, hi))}


def engine_key(onnx_sha256: str, trt_version: str, compute_capability: str, precision: str,
               profile: dict) -> str:
    """The cache key: any change to one of these makes another engine."""
    fields = {
        "onnx_sha256": onnx_sha256, "tensorrt": trt_version, "compute_capability": compute_capability,
        "precision": precision,
        "profile": {k: [list(s) for s in v] for k, v in sorted(profile.items())},
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


def _tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise RuntimeUnavailable(UNAVAILABLE) from None
    return tensorrt


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise RuntimeUnavailable("the tensorrt backend needs cuda-python: pip install cuda-python") from None
    return cudart


def _check(cudart, result):
    """cuda-python calls return (error, value...)."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"CUDA error: {err}")
    return rest[0] if len(rest) == 1 else rest


def compute_capability(device: int = 0) -> str:
    cudart = _cudart()
    props = _check(cudart, cudart.cudaGetDeviceProperties(device))
    return f"{props.major}.{props.minor}"


def build_engine(onnx_path: Path, precision: str, profile: dict) -> bytes:
    """Parse the ONNX file and build a serialized engine (minutes on a Jetson)."""
    trt = _tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # scales come from the graph's Q/DQ nodes
    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        opt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {onnx_path} ({precision})")
    return bytes(plan)


def cached_engine(onnx_path: Path, precision: str, profile: dict, cache_dir: Path | None = None) -> Path:
    """The engine file for this ONNX file, precision and profile on this GPU and TensorRT:
    built once, then read from the cache."""
    trt = _tensorrt()
    onnx_path = Path(onnx_path)
    cache_dir = Path(cache_dir or default_cache_dir())
    sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    cc = compute_capability()
    key = engine_key(sha, trt.__version__, cc, precision, profile)
    path = cache_dir / f"{onnx_path.stem}.{key}.engine"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        plan = build_engine(onnx_path, precision, profile)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(plan)
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps({
            "onnx": str(onnx_path), "onnx_sha256": sha, "tensorrt": trt.__version__,
            "compute_capability": cc, "precision": precision,
            "profile": {k: [list(s) for s in v] for k, v in profile.items()},
        }, indent=1) + "\n")
    return path


def check_int8_scheme(export: Export) -> None:
    if export.precision == "int8" and export.int8_scheme != "s8s8":
        raise RuntimeUnavailable(
            "TensorRT needs symmetric int8 (zero points 0): export with "
            "`tokc export MODEL -o DIR --precision int8 --int8-scheme s8s8`"
        )


class TensorRTRuntime(Runtime):
    backend = "tensorrt"

    def __init__(self, engine_path: Path, precision: str, profile: dict, device: str = "cuda"):
        if device != "cuda":
            raise RuntimeUnavailable("the tensorrt backend runs on device 'cuda' only")
        trt = _tensorrt()
        self.trt, self.cudart = trt, _cudart()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise RuntimeUnavailable(f"TensorRT cannot load the engine {engine_path}; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.stream = _check(self.cudart, self.cudart.cudaStreamCreate())
        self.profile = profile
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        super().__init__([n for n, i in zip(names, is_input, strict=True) if i],
                         [n for n, i in zip(names, is_input, strict=True) if not i], device, precision)

    @classmethod
    def from_part(cls, part: Part, export: Export, device: str = "cuda", cache_dir: Path | None = None,
                  profile: tuple[int, int, int] | None = None) -> TensorRTRuntime:
        check_int8_scheme(export)
        shapes = profile_shapes(part, profile)
        engine = cached_engine(part.path, export.precision, shapes, cache_dir)
        return cls(engine, export.precision, shapes, device)

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        trt, cudart, ctx = self.trt, self.cudart, self.context
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        pointers = []
        try:
            for name, arr in inputs.items():
                lo, _, hi = self.profile[name]
                if any(not a <= s <= b for a, s, b in zip(lo, arr.shape, hi, strict=True)):
                    raise ValueError(f"input {name!r} of shape {arr.shape} is outside the engine's "
                                     f"profile {lo}..{hi}")
                arr = arr.astype(trt.nptype(self.engine.get_tensor_dtype(name)), copy=False)
                ctx.set_input_shape(name, arr.shape)
                ptr = _check(cudart, cudart.cudaMalloc(arr.nbytes))
                pointers.append(ptr)
                _check(cudart, cudart.cudaMemcpy(ptr, arr.ctypes.data, arr.nbytes, h2d))
                ctx.set_tensor_address(name, int(ptr))
            outs = {}
            for name in self.output_names:
                shape = tuple(ctx.get_tensor_shape(name))
                out = np.empty(shape, trt.nptype(self.engine.get_tensor_dtype(name)))
                ptr = _check(cudart, cudart.cudaMalloc(max(out.nbytes, 1)))
                pointers.append(ptr)
                ctx.set_tensor_address(name, int(ptr))
                outs[name] = (out, ptr)
            if not ctx.execute_async_v3(int(self.stream)):
                raise RuntimeError("TensorRT execution failed")
            for out, ptr in outs.values():
                _check(cudart, cudart.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, d2h, self.stream))
            _check(cudart, cudart.cudaStreamSynchronize(self.stream))
            return {name: out.astype(np.float32, copy=False) for name, (out, _) in outs.items()}
        finally:
            for ptr in pointers:
                cudart.cudaFree(ptr)


def main(argv=None) -> None:
    import argparse

    from tokc.runtimes.base import read_export

    ap = argparse.ArgumentParser(description="Build (or find in the cache) the TensorRT engines of an export.")
    ap.add_argument("sidecar", type=Path, help="an export's .onnx.json")
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    exp = read_export(args.sidecar)
    check_int8_scheme(exp)
    for part in exp.parts.values():
        print(cached_engine(part.path, exp.precision, profile_shapes(part), args.cache_dir))


if __name__ == "__main__":
    main()
