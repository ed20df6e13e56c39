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
    with pytest.raises(ValueError, match="outside the engine's profile"):
        rt.run({"y_hat": np.zeros((1, m, 2, 2), np.float32)})


def test_tensorrt_refuses_asymmetric_int8(tmp_path):
    import json

    side = json.loads(SIDECAR.read_text())
    u8 = tmp_path / "tokc-image-v1.int8.onnx.json"
    u8.write_text(json.dumps({**side, "precision": "int8", "int8_scheme": "u8s8"}))
    with pytest.raises(base.RuntimeUnavailable, match="--int8-scheme s8s8"):
        trt.check_int8_scheme(base.read_export(u8))
    trt.check_int8_scheme(base.read_export(SIDECAR))  # fp32: nothing to check
