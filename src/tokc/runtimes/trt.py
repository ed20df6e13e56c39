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

import ctypes
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from tokc import format as fmt
from tokc.runtimes.base import Export, Part, Runtime, RuntimeUnavailable

# height/width (min, opt, max) of each part's input, in its own units: g_a in pixels (the
# codec's tiles are at most 768 + 2*64 = 896), h_a in latents over the whole image (256 = 4096
# px: at 512, a 288-channel input alone is 302 MB, too much beside the other engines on an
# 8 GB Jetson; larger images run h_a on ONNX Runtime, see TensorRTRuntime), g_s in latents
# (tiles of at most 48 + 2*4 = 56).
PROFILES = {"g_a": (64, 768, 896), "h_a": (4, 48, 256), "g_s": (4, 48, 56)}
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


# What build_engine sets besides the ONNX file, precision and profile: part of the cache key,
# so that an edit of the build settings never reuses an engine built with the old ones. Bump
# BUILD_VERSION when build_engine changes in another way.
BUILD_VERSION = 2
STRONGLY_TYPED_FROM = (10, 12)  # TensorRT version from which networks are built strongly typed


def build_config() -> dict:
    return {"version": BUILD_VERSION, "workspace": WORKSPACE,
            "strongly_typed_from": list(STRONGLY_TYPED_FROM)}


def engine_key(onnx_sha256: str, trt_version: str, compute_capability: str, precision: str,
               profile: dict, build: dict | None = None) -> str:
    """The cache key: any change to one of these makes another engine."""
    fields = {
        "onnx_sha256": onnx_sha256, "tensorrt": trt_version, "compute_capability": compute_capability,
        "precision": precision,
        "profile": {k: [list(s) for s in v] for k, v in sorted(profile.items())},
        "build": build_config() if build is None else build,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


def version_tuple(version: str) -> tuple[int, int]:
    """"10.12.0.36" -> (10, 12)."""
    parts = version.split(".")
    minor = parts[1] if len(parts) > 1 else "0"
    return int(parts[0]), int(minor) if minor.isdigit() else 0


def network_flags(trt) -> int:
    """Explicit batch before TensorRT 10 (where it became the only mode); from 10.12 strongly
    typed networks, which take each layer's precision from the graph (the fp16 export's casts,
    the int8 export's Q/DQ nodes): the FP16/INT8 builder flags are deprecated there and gone
    in TensorRT 11."""
    version = version_tuple(trt.__version__)
    flags = 0
    if version[0] < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if version >= STRONGLY_TYPED_FROM:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def precision_flags(trt, precision: str) -> list:
    """The builder flags that let a weakly typed network (TensorRT < 10.12) run at the
    export's precision: FP16 for fp16, FP16 and INT8 for int8 (scales from the Q/DQ nodes);
    none for strongly typed networks or fp32 (TF32 stays on, TensorRT's default)."""
    if version_tuple(trt.__version__) >= STRONGLY_TYPED_FROM or precision == "fp32":
        return []
    flags = [trt.BuilderFlag.FP16]
    if precision == "int8":
        flags.append(trt.BuilderFlag.INT8)
    return flags


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
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE)
    for flag in precision_flags(trt, precision):
        config.set_flag(flag)
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
        fmt.write_atomic(path, build_engine(onnx_path, precision, profile))
        fmt.write_atomic(path.with_suffix(".json"), (json.dumps({
            "onnx": str(onnx_path), "onnx_sha256": sha, "tensorrt": trt.__version__,
            "compute_capability": cc, "precision": precision,
            "profile": {k: [list(s) for s in v] for k, v in profile.items()}, "build": build_config(),
        }, indent=1) + "\n").encode())
    return path


def check_int8_scheme(export: Export) -> None:
    if export.precision == "int8" and export.int8_scheme != "s8s8":
        raise RuntimeUnavailable(
            "TensorRT needs symmetric int8 (zero points 0): export with "
            "`tokc export MODEL -o DIR --precision int8 --int8-scheme s8s8`"
        )


class TensorRTRuntime(Runtime):
    """One engine on the GPU. Device buffers are allocated once per tensor and grown only when
    a larger shape comes (never per call); host copies go through pinned buffers with async
    copies on the runtime's stream. On an integrated GPU (Jetson), where host and device share
    memory, the pinned buffers are mapped and the engine reads and writes them directly: no
    copies. Inputs outside the engine's shape profile run on ONNX Runtime's CPU provider
    instead (`fallback`), with a warning, when the runtime came from an export."""

    backend = "tensorrt"

    def __init__(self, engine_path: Path, precision: str, profile: dict, device: str = "cuda",
                 fallback=None):
        if device != "cuda":
            raise RuntimeUnavailable("the tensorrt backend runs on device 'cuda' only")
        trt = _tensorrt()
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
            Path(engine_path).read_bytes())
        if engine is None:
            raise RuntimeUnavailable(f"TensorRT cannot load the engine {engine_path}; delete it to rebuild")
        self._setup(trt, _cudart(), engine, precision, profile, fallback)

    def _setup(self, trt, cudart, engine, precision: str, profile: dict, fallback=None) -> None:
        self.trt, self.cudart, self.engine = trt, cudart, engine
        self.context = engine.create_execution_context()
        self.stream = _check(cudart, cudart.cudaStreamCreate())
        self.profile = profile
        self.fallback = fallback  # () -> Runtime, for inputs outside the profile
        self._fallback_rt = None
        props = _check(cudart, cudart.cudaGetDeviceProperties(0))
        self.zero_copy = bool(getattr(props, "integrated", 0))
        self._device: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self._host: dict[str, tuple[int, int, int]] = {}  # name -> (host pointer, bytes, device view)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = [engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        super().__init__([n for n, i in zip(names, is_input, strict=True) if i],
                         [n for n, i in zip(names, is_input, strict=True) if not i], "cuda", precision)

    @classmethod
    def from_part(cls, part: Part, export: Export, device: str = "cuda", cache_dir: Path | None = None,
                  profile: tuple[int, int, int] | None = None) -> TensorRTRuntime:
        check_int8_scheme(export)
        shapes = profile_shapes(part, profile)
        engine = cached_engine(part.path, export.precision, shapes, cache_dir)

        def fallback():
            from tokc.runtimes.ort import OrtRuntime

            return OrtRuntime(part.path, device="cpu", precision=export.precision)

        return cls(engine, export.precision, shapes, device, fallback)

    # -- buffers: allocated once, grown when a larger shape comes --
    def _host_buffer(self, name: str, nbytes: int) -> tuple[int, int]:
        """(host pointer, device pointer) of a pinned host buffer of at least nbytes; the
        device pointer is the same memory mapped (zero copy) or 0."""
        cur = self._host.get(name)
        if cur is None or cur[1] < nbytes:
            if cur is not None:
                self.cudart.cudaFreeHost(cur[0])
            size = max(nbytes, 1)
            if self.zero_copy:
                host = _check(self.cudart, self.cudart.cudaHostAlloc(size, self.cudart.cudaHostAllocMapped))
                dev = _check(self.cudart, self.cudart.cudaHostGetDevicePointer(host, 0))
            else:
                host, dev = _check(self.cudart, self.cudart.cudaMallocHost(size)), 0
            self._host[name] = cur = (int(host), size, int(dev))
        return cur[0], cur[2]

    def _device_buffer(self, name: str, nbytes: int) -> int:
        cur = self._device.get(name)
        if cur is None or cur[1] < nbytes:
            if cur is not None:
                self.cudart.cudaFree(cur[0])
            size = max(nbytes, 1)
            self._device[name] = cur = (int(_check(self.cudart, self.cudart.cudaMalloc(size))), size)
        return cur[0]

    def _address(self, name: str, nbytes: int) -> tuple[int, int]:
        """(host pointer, the engine's pointer) for a tensor of nbytes."""
        host, mapped = self._host_buffer(name, nbytes)
        return host, mapped if self.zero_copy else self._device_buffer(name, nbytes)

    def _outside(self, inputs: dict[str, np.ndarray]) -> bool:
        for name, arr in inputs.items():
            lo, _, hi = self.profile[name]
            if any(not a <= s <= b for a, s, b in zip(lo, arr.shape, hi, strict=True)):
                if self.fallback is None:
                    raise ValueError(f"input {name!r} of shape {arr.shape} is outside the engine's "
                                     f"profile {lo}..{hi}")
                return True
        return False

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._outside(inputs):
            if self._fallback_rt is None:
                warnings.warn("an input outside the TensorRT engine's shape profile runs on "
                              "ONNX Runtime (CPU); see PROFILES in tokc/runtimes/trt.py")
                self._fallback_rt = self.fallback()
            return self._fallback_rt.run(inputs)
        trt, cudart, ctx = self.trt, self.cudart, self.context
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, arr in inputs.items():
            arr = np.ascontiguousarray(arr, trt.nptype(self.engine.get_tensor_dtype(name)))
            if not ctx.set_input_shape(name, arr.shape):
                raise RuntimeError(f"TensorRT refused the shape {arr.shape} for input {name!r}")
            host, dev = self._address(name, arr.nbytes)
            np.copyto(_view(host, arr.shape, arr.dtype), arr)
            if not self.zero_copy:
                _check(cudart, cudart.cudaMemcpyAsync(dev, host, arr.nbytes, h2d, self.stream))
            ctx.set_tensor_address(name, dev)
        outs = {}
        for name in self.output_names:
            shape = tuple(ctx.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            host, dev = self._address(name, nbytes)
            ctx.set_tensor_address(name, dev)
            outs[name] = (host, dev, shape, dtype, nbytes)
        if not ctx.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execution failed")
        if not self.zero_copy:
            for host, dev, _, _, nbytes in outs.values():
                _check(cudart, cudart.cudaMemcpyAsync(host, dev, nbytes, d2h, self.stream))
        _check(cudart, cudart.cudaStreamSynchronize(self.stream))
        # copies: the pinned buffers are reused by the next call
        return {name: _view(host, shape, dtype).astype(np.float32)
                for name, (host, _, shape, dtype, _) in outs.items()}

    def close(self) -> None:
        """Free the buffers and the stream (also when the runtime is garbage-collected)."""
        cudart = getattr(self, "cudart", None)
        if cudart is None:
            return
        for ptr, _ in self._device.values():
            cudart.cudaFree(ptr)
        for ptr, _, _ in self._host.values():
            cudart.cudaFreeHost(ptr)
        self._device, self._host = {}, {}
        if getattr(self, "stream", None) is not None:
            cudart.cudaStreamDestroy(self.stream)
            self.stream = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the CUDA runtime may be gone
            pass


def _view(ptr: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A numpy array over host memory at ptr (a pinned buffer)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    return np.frombuffer((ctypes.c_byte * max(n, 1)).from_address(ptr), dtype, int(np.prod(shape))).reshape(shape)


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
