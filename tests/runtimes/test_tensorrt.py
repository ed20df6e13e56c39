"""TensorRT: the cache key and shape profiles run everywhere; building and running engines
needs TensorRT and a GPU, which this project's CPU machines do not have (its PyPI libs package
is a stub that downloads from a host they cannot reach), so those tests skip there."""

import importlib.util

import numpy as np
import pytest

from tokc.compress import image
from tokc.runtimes import base, trt

SIDECAR = image.WEIGHTS.with_name(base.sidecar_name(image.CODEC_ID))
NO_TRT = ("needs TensorRT and a CUDA GPU: not installable on this project's CPU machines (its PyPI "
          "libs package is a stub that downloads from an unreachable host)")


def test_engine_key_changes_with_every_field():
    shapes = {"x": ((1, 3, 64, 64), (1, 3, 768, 768), (1, 3, 896, 896))}
    args = ("a" * 64, "10.3.0", "8.7", "fp16", shapes)
    key = trt.engine_key(*args)
    assert key == trt.engine_key(*args)  # stable
    other_shapes = {"x": ((1, 3, 64, 64), (1, 3, 512, 512), (1, 3, 896, 896))}
    variants = [("b" * 64, *args[1:]), (args[0], "10.4.0", *args[2:]),
                (*args[:2], "9.0", *args[3:]), (*args[:3], "int8", shapes), (*args[:4], other_shapes)]
    keys = {trt.engine_key(*v) for v in variants}
    assert len(keys) == len(variants) and key not in keys


def test_profiles_cover_the_codec_tiles():
    exp = base.read_export(SIDECAR)
    g_a = trt.profile_shapes(exp.parts["g_a"])
    lo, opt, hi = g_a["x"]
    assert lo == (1, 3, 64, 64) and opt == (1, 3, 768, 768)
    # the codec's largest tile: 48 latents + 4 of margin on each side, 16 px per latent
    tile = (image.TILE + 2 * image.MARGIN) * image.UNIT
    assert hi[2] >= tile and trt.profile_shapes(exp.parts["g_s"])["y_hat"][2][2] >= tile // image.UNIT
    m = exp.parts["h_a"].channels
    assert trt.profile_shapes(exp.parts["h_a"], (4, 8, 16))["y"] == ((1, m, 4, 4), (1, m, 8, 8), (1, m, 16, 16))
    with pytest.raises(ValueError):
        trt.profile_shapes(exp.parts["g_s"], (8, 4, 16))


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_without_tensorrt_load_says_so():
    with pytest.raises(base.RuntimeUnavailable, match="TensorRT is not installed"):
        base.load(SIDECAR, "g_s", backend="tensorrt", device="cuda")
    assert not base.backend_available("tensorrt", "cuda")


@pytest.mark.trt
@pytest.mark.gpu
def test_tensorrt_engine_matches_onnxruntime(tmp_path):
    pytest.importorskip("tensorrt", reason=NO_TRT)
    if not base.backend_available("tensorrt", "cuda"):
        pytest.skip(NO_TRT)
    rng = np.random.default_rng(0)
    m = base.read_export(SIDECAR).parts["g_s"].channels
    y_hat = rng.normal(0, 3, (1, m, 24, 40)).astype(np.float32)
    rt = base.load(SIDECAR, "g_s", backend="tensorrt", device="cuda", cache_dir=tmp_path)
    ref = base.load(SIDECAR, "g_s", backend="onnx").run({"y_hat": y_hat})["x_hat"]
    out = rt.run({"y_hat": y_hat})["x_hat"]
    assert out.shape == ref.shape == (1, 3, 384, 640)
    np.testing.assert_allclose(out, ref, atol=1e-2)  # TF32 convolutions
    engines = list(tmp_path.glob("*.engine"))
    assert len(engines) == 1 and engines[0].with_suffix(".json").exists()
    base.load(SIDECAR, "g_s", backend="tensorrt", device="cuda", cache_dir=tmp_path)
    assert list(tmp_path.glob("*.engine")) == engines  # the second load reads the cache
    small = rng.normal(0, 3, (1, m, 2, 2)).astype(np.float32)  # under the profile: ONNX Runtime
    with pytest.warns(UserWarning, match="ONNX Runtime"):
        np.testing.assert_allclose(rt.run({"y_hat": small})["x_hat"],
                                   base.load(SIDECAR, "g_s", backend="onnx").run({"y_hat": small})["x_hat"])
    rt.close()


def test_tensorrt_refuses_asymmetric_int8(tmp_path):
    import json

    side = json.loads(SIDECAR.read_text())
    u8 = tmp_path / "tokc-image-v1.int8.onnx.json"
    u8.write_text(json.dumps({**side, "precision": "int8", "int8_scheme": "u8s8"}))
    with pytest.raises(base.RuntimeUnavailable, match="--int8-scheme s8s8"):
        trt.check_int8_scheme(base.read_export(u8))
    trt.check_int8_scheme(base.read_export(SIDECAR))  # fp32: nothing to check


# --- build settings and the runtime's buffers, with stand-ins for tensorrt and cuda-python ---

class _Flag:
    EXPLICIT_BATCH, STRONGLY_TYPED = 0, 5


def _fake_trt(version: str):
    from types import SimpleNamespace

    return SimpleNamespace(__version__=version, NetworkDefinitionCreationFlag=_Flag,
                           BuilderFlag=SimpleNamespace(FP16="FP16", INT8="INT8"))


@pytest.mark.parametrize("version, strongly_typed, explicit", [
    ("8.5.2.2", False, True), ("10.3.0", False, False), ("10.12.0.36", True, False), ("11.0.1", True, False)])
def test_network_flags_by_tensorrt_version(version, strongly_typed, explicit):
    flags = trt.network_flags(_fake_trt(version))
    assert bool(flags & 1 << _Flag.STRONGLY_TYPED) == strongly_typed
    assert bool(flags & 1 << _Flag.EXPLICIT_BATCH) == explicit
    # the deprecated precision flags only where the network is weakly typed
    want = {"fp32": [], "fp16": ["FP16"], "int8": ["FP16", "INT8"]}
    for precision, flags_then in want.items():
        assert trt.precision_flags(_fake_trt(version), precision) == ([] if strongly_typed else flags_then)


def test_engine_key_follows_the_build_settings():
    shapes = {"x": ((1, 3, 64, 64), (1, 3, 768, 768), (1, 3, 896, 896))}
    args = ("a" * 64, "10.3.0", "8.7", "fp16", shapes)
    assert trt.engine_key(*args) == trt.engine_key(*args, trt.build_config())
    assert trt.engine_key(*args) != trt.engine_key(*args, {**trt.build_config(), "version": -1})
    assert trt.engine_key(*args) != trt.engine_key(*args, {**trt.build_config(), "workspace": 1})


def test_engine_files_are_written_through_unique_temporaries(tmp_path):
    target = tmp_path / "x.engine"
    from tokc import format as fmt

    fmt.write_atomic(target, b"plan")
    fmt.write_atomic(target, b"plan2")  # a second writer replaces it whole
    assert target.read_bytes() == b"plan2" and [p.name for p in tmp_path.iterdir()] == ["x.engine"]


class _FakeCudart:
    """cuda-python's runtime API over host memory: 'device' buffers are ctypes buffers, so
    copies and the fake engine's kernel are memmoves and numpy; counts every allocation."""

    class cudaError_t:  # noqa: N801
        cudaSuccess = 0

    class cudaMemcpyKind:  # noqa: N801
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = 1, 2

    cudaHostAllocMapped = 2

    def __init__(self, integrated=0):
        import ctypes

        self.ctypes, self.integrated = ctypes, integrated
        self.live, self.calls = {}, {"malloc": 0, "host": 0, "copy": 0, "free": 0}

    def _alloc(self, n):
        buf = (self.ctypes.c_byte * n)()
        ptr = self.ctypes.addressof(buf)
        self.live[ptr] = buf
        return ptr

    def cudaMalloc(self, n):  # noqa: N802
        self.calls["malloc"] += 1
        return 0, self._alloc(n)

    def cudaMallocHost(self, n):  # noqa: N802
        self.calls["host"] += 1
        return 0, self._alloc(n)

    def cudaHostAlloc(self, n, flags):  # noqa: N802
        self.calls["host"] += 1
        return 0, self._alloc(n)

    def cudaHostGetDevicePointer(self, ptr, flags):  # noqa: N802
        return 0, ptr

    def cudaFree(self, ptr):  # noqa: N802
        self.calls["free"] += 1
        self.live.pop(ptr)
        return (0,)

    cudaFreeHost = cudaFree

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):  # noqa: N802
        self.calls["copy"] += 1
        self.ctypes.memmove(dst, src, n)
        return (0,)

    def cudaStreamCreate(self):  # noqa: N802
        return 0, 7

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (0,)

    def cudaStreamDestroy(self, stream):  # noqa: N802
        return (0,)

    def cudaGetDeviceProperties(self, device):  # noqa: N802
        from types import SimpleNamespace

        return 0, SimpleNamespace(integrated=self.integrated)


class _FakeEngine:
    """An engine whose output 'y' is 2 * input 'x' (float32, same shape)."""

    num_io_tensors = 2

    def __init__(self):
        self.shapes, self.addr = {}, {}

    def get_tensor_name(self, i):
        return ("x", "y")[i]

    def get_tensor_mode(self, name):
        return "IN" if name == "x" else "OUT"

    def get_tensor_dtype(self, name):
        return np.float32

    def create_execution_context(self):
        engine = self

        class Ctx:
            def set_input_shape(self, name, shape):
                engine.shapes[name] = tuple(shape)
                return True

            def get_tensor_shape(self, name):
                return engine.shapes["x"]

            def set_tensor_address(self, name, ptr):
                engine.addr[name] = ptr

            def execute_async_v3(self, stream):
                x = trt._view(engine.addr["x"], engine.shapes["x"], np.float32)
                np.copyto(trt._view(engine.addr["y"], engine.shapes["x"], np.float32), 2 * x)
                return True

        return Ctx()


@pytest.mark.parametrize("integrated", [0, 1])
def test_buffers_are_allocated_once_and_grown_not_per_call(integrated):
    from types import SimpleNamespace

    fake_trt = SimpleNamespace(TensorIOMode=SimpleNamespace(INPUT="IN"), nptype=lambda t: t)
    cudart = _FakeCudart(integrated)
    rt = trt.TensorRTRuntime.__new__(trt.TensorRTRuntime)
    profile = {"x": ((1, 2, 1, 1), (1, 2, 4, 4), (1, 2, 16, 16))}
    rt._setup(fake_trt, cudart, _FakeEngine(), "fp32", profile)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.normal(size=(1, 2, 4, 6)).astype(np.float32)
        np.testing.assert_array_equal(rt.run({"x": x})["y"], 2 * x)
    device_allocs = 0 if integrated else 2
    assert cudart.calls["malloc"] == device_allocs and cudart.calls["host"] == 2
    assert cudart.calls["copy"] == (0 if integrated else 10)  # one in and one out per call
    big = rng.normal(size=(1, 2, 12, 16)).astype(np.float32)
    np.testing.assert_array_equal(rt.run({"x": big})["y"], 2 * big)  # grown once
    small = rng.normal(size=(1, 2, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(rt.run({"x": small})["y"], 2 * small)  # reuses the large ones
    assert cudart.calls["host"] == 4 and cudart.calls["malloc"] == 2 * device_allocs
    with pytest.raises(ValueError, match="outside the engine's profile"):
        rt.run({"x": np.zeros((1, 2, 32, 32), np.float32)})
    rt.close()
    assert not cudart.live  # every buffer freed


def test_inputs_outside_the_profile_fall_back_to_onnxruntime():
    from types import SimpleNamespace

    fake_trt = SimpleNamespace(TensorIOMode=SimpleNamespace(INPUT="IN"), nptype=lambda t: t)

    class Cpu:
        def run(self, inputs):
            return {"y": 3 * inputs["x"]}

    rt = trt.TensorRTRuntime.__new__(trt.TensorRTRuntime)
    rt._setup(fake_trt, _FakeCudart(), _FakeEngine(), "fp32",
              {"x": ((1, 2, 1, 1), (1, 2, 4, 4), (1, 2, 8, 8))}, fallback=Cpu)
    x = np.ones((1, 2, 9, 9), np.float32)
    with pytest.warns(UserWarning, match="ONNX Runtime"):
        assert (rt.run({"x": x})["y"] == 3).all()
    assert (rt.run({"x": np.ones((1, 2, 2, 2), np.float32)})["y"] == 2).all()  # the engine again
