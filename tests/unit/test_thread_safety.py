"""One codec object shared by an app's threads: concurrent compress and decompress calls give
the bytes and the samples of the same calls made one after another (the codecs keep no
per-call state on the object; ONNX Runtime sessions run concurrently)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tokc.compress.image import ImageCodec, ImageWeights


def _images(n=8):
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        h, w = 48 + 16 * (i % 3), 64 + 8 * i
        y, x = np.mgrid[0:h, 0:w] / w
        img = np.stack([128 + 90 * np.sin((4 + i) * x + 3 * y), 120 + 60 * np.cos(5 * y), 70 + 140 * x * y], -1)
        out.append(np.clip(img + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8))
    return out


def _round_trip(codec, item):
    img, q = item
    data = codec.compress(img, quality=q).data
    return data, codec.decompress(data)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_image_codec_shared_by_threads(tiny_weights, backend):
    pytest.importorskip("torch")
    if backend == "onnx":  # the shipped weights: the ONNX export lies beside them
        codec = ImageCodec(backend="onnx")
    else:
        codec = ImageCodec(ImageWeights(tiny_weights), backend="torch")
    items = [(img, 20 + 10 * i) for i, img in enumerate(_images())]
    serial = [_round_trip(codec, it) for it in items]
    fresh = ImageCodec(codec.weights, backend=backend)  # nothing loaded yet: loads race too
    with ThreadPoolExecutor(4) as pool:
        for _ in range(2):
            got = list(pool.map(lambda it: _round_trip(fresh, it), items))
            for (d1, p1), (d2, p2) in zip(serial, got):
                assert d1 == d2
                np.testing.assert_array_equal(p1, p2)


def test_audio_codec_shared_by_threads(tiny_audio_codec):
    from tokc import Sound

    rng = np.random.default_rng(0)
    sounds = [Sound((0.1 * rng.standard_normal((4000 + 700 * i, 1))).astype(np.float32), 16000)
              for i in range(6)]

    def trip(s):
        data = tiny_audio_codec.compress(s, quality=50).data
        return data, tiny_audio_codec.decompress(data).samples

    serial = [trip(s) for s in sounds]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(trip, sounds))
    for (d1, a1), (d2, a2) in zip(serial, got):
        assert d1 == d2
        np.testing.assert_array_equal(a1, a2)


def test_threads_cap_the_sessions_and_change_nothing_else():
    """tokc.open_model(..., threads=N): a codec of its own whose ONNX Runtime sessions (the
    transforms and the integer networks) use N threads; the same bytes and pixels."""
    import tokc

    shared, capped = tokc.open_model("tokc-image-v1"), tokc.open_model("tokc-image-v1", threads=1)
    assert capped is not shared and capped.weights.threads == 1
    assert tokc.open_model("tokc-image-v1") is shared  # the default one is loaded once
    img = _images(1)[0]
    data = shared.compress(img, quality=40).data
    assert capped.compress(img, quality=40).data == data
    assert capped.transforms.name == "onnx"
    for rt in capped.transforms.runtimes.values():
        assert rt.session.get_session_options().intra_op_num_threads == 1
    np.testing.assert_array_equal(capped.decompress(data), shared.decompress(data))
