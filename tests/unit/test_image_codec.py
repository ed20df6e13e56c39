import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from tokc import format as fmt
from tokc.compress import image


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 200, 3), (65, 67, 3), (37, 50), (40, 30, 4)])
def test_any_shape_round_trips(tiny_codec, shape):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=shape, dtype=np.uint8)
    res = tiny_codec.compress(img, quality=50)
    out = tiny_codec.decompress(res.data)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert fmt.unpack(res.data)[0].channels == (shape[2] if len(shape) == 3 else 1)
    if len(shape) == 3 and shape[2] == 4:
        np.testing.assert_array_equal(out[:, :, 3], img[:, :, 3])  # alpha is lossless


@pytest.mark.parametrize("weights", ["tiny_weights", "tiny_channel_weights", "tiny_plain_weights"])
def test_tokens_decode_exactly_as_encoded(request, weights, photo):
    codec = image.ImageCodec(image.ImageWeights(request.getfixturevalue(weights)), backend="torch")
    a = codec.analyse(photo)
    data = codec.pack(a, 3100, 3)
    _, _, z, c = codec.decode_tokens(data)
    want = codec.code(a, 3100)
    np.testing.assert_array_equal(z, a.z)
    np.testing.assert_array_equal(c.q, want.q)
    np.testing.assert_array_equal(c.index, want.index)
    np.testing.assert_array_equal(c.offset, want.offset)


DECODE_TOKENS = textwrap.dedent("""
    import hashlib, sys, torch
    torch.set_num_threads(int(sys.argv[2]))
    from tokc.compress.image import ImageCodec, ImageWeights
    codec = ImageCodec(ImageWeights(sys.argv[1]), backend="torch")
    _, _, z, c = codec.decode_tokens(sys.stdin.buffer.read())
    print(hashlib.sha256(z.tobytes() + c.q.tobytes() + c.index.tobytes()).hexdigest())
""")


@pytest.mark.parametrize("threads", [1, 2])
def test_tokens_identical_across_thread_counts(tiny_codec, tiny_weights, photo, threads):
    import hashlib

    a = tiny_codec.analyse(photo)
    data = tiny_codec.pack(a, 2000, 3)
    c = tiny_codec.code(a, 2000)
    want = hashlib.sha256(a.z.tobytes() + c.q.tobytes() + c.index.tobytes()).hexdigest()
    env = {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", DECODE_TOKENS, str(tiny_weights), str(threads)],
                         input=data, capture_output=True, env=env, check=True)
    assert out.stdout.decode().strip() == want


def test_quality_changes_rate_and_size_control(tiny_codec, photo):
    sizes = [len(tiny_codec.compress(photo, quality=q).data) for q in (0, 50, 100)]
    assert sizes[0] < sizes[1] < sizes[2]
    budget = (sizes[0] + sizes[2]) // 2
    res = tiny_codec.compress(photo, size=budget)
    assert len(res.data) <= budget
    bigger = tiny_codec.pack(tiny_codec.analyse(photo), int(res.level * 1000) + 1, 3)
    assert len(bigger) > budget or res.level == 5  # the next level up would not fit
    with pytest.raises(image.CodecError, match="no quality fits"):
        tiny_codec.compress(photo, size=10)


def test_tiles_leave_no_seams(tiny_codec, photo, monkeypatch):
    a = tiny_codec.analyse(photo)
    c = tiny_codec.code(a, 2500)
    whole = tiny_codec.reconstruct(c, 2500, *photo.shape[:2])
    monkeypatch.setattr(image, "TILE", 2)  # 32-px tiles: many seams
    a2 = tiny_codec.analyse(photo)
    np.testing.assert_allclose(a2.y, a.y, atol=1e-4)
    tiles = tiny_codec.reconstruct(c, 2500, *photo.shape[:2])
    assert np.abs(tiles.astype(int) - whole.astype(int)).max() <= 1
    err = np.abs(tiles.astype(float) - photo).mean(2)
    seam = np.zeros(err.shape, bool)
    seam[31::32] = seam[32::32] = True
    seam[:, 31::32] = seam[:, 32::32] = True
    assert err[seam].mean() <= err[~seam].mean() * 1.05


def test_effort_refines_latents(tiny_codec, photo):
    fast = tiny_codec.compress(photo, quality=60)
    slow = tiny_codec.compress(photo, quality=60, effort=4)
    lam = 0.0018 ** 0.4 * 0.0932 ** 0.6  # lambda at quality 60
    def cost(res):
        mse = np.mean((tiny_codec.decompress(res.data).astype(float) - photo) ** 2) / 255**2
        return 8 * len(res.data) / photo.shape[0] / photo.shape[1] + lam * 255**2 * mse
    assert cost(slow) < cost(fast)


def test_bad_inputs_are_codec_errors(tiny_codec):
    with pytest.raises(image.CodecError):
        tiny_codec.compress(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(image.CodecError):
        tiny_codec.compress(np.zeros((5, 5, 5), np.uint8))  # (H, W, 2) is grey + alpha
    with pytest.raises(image.CodecError):
        tiny_codec.compress(np.zeros((5, 5), np.int32))
    with pytest.raises(image.CodecError):
        tiny_codec.compress(np.zeros((5, 5, 3), np.uint8), quality=101)
    with pytest.raises(image.CodecError):
        tiny_codec.compress(np.zeros((5, 5, 3), np.uint8), effort=10)


def test_16_bit_input_warns(tiny_codec):
    img = (np.arange(64 * 48 * 3, dtype=np.uint16).reshape(64, 48, 3) * 7)
    with pytest.warns(UserWarning, match="16-bit"):
        res = tiny_codec.compress(img)
    assert tiny_codec.decompress(res.data).shape == img.shape


def test_corrupt_and_foreign_files_fail_cleanly(tiny_codec, photo, tmp_path):
    data = tiny_codec.compress(photo[:40, :40]).data
    for i in range(0, len(data), 7):
        bad = bytearray(data)
        bad[i] ^= 0x41
        with pytest.raises((fmt.TokcFormatError, image.CodecError)):
            tiny_codec.decompress(bytes(bad))
    header, chunks = fmt.unpack(data)
    other = fmt.pack(fmt.Header(**{**header.__dict__, "weights_digest": b"\x00" * 8}), chunks)
    with pytest.raises(fmt.WeightsMismatchError):
        tiny_codec.decompress(other)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(fmt.TokcFormatError):
            tiny_codec.decompress(b"TOKC")


def test_shipped_onnx_export_matches_shipped_weights():
    import hashlib
    import json

    side = json.loads(image.WEIGHTS.with_name(f"{image.CODEC_ID}.onnx.json").read_text())
    assert side["weights_sha256"] == hashlib.sha256(image.WEIGHTS.read_bytes()).hexdigest(), \
        "re-export: python -m tokc.export.onnx"
    assert set(side["parts"]) == {"g_a", "h_a", "g_s"}


def test_files_are_interchangeable_between_backends(photo):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    by = {b: image.ImageCodec(backend=b) for b in ("torch", "onnx")}
    for enc, dec in (("torch", "onnx"), ("onnx", "torch")):
        data = by[enc].compress(photo, quality=55).data
        _, _, z1, c1 = by[enc].decode_tokens(data)
        _, _, z2, c2 = by[dec].decode_tokens(data)
        np.testing.assert_array_equal(z1, z2)
        np.testing.assert_array_equal(c1.q, c2.q)
        np.testing.assert_array_equal(c1.index, c2.index)
        diff = np.abs(by[enc].decompress(data).astype(int) - by[dec].decompress(data))
        assert diff.max() <= 2  # float differences in the synthesis only move pixels a little


def test_rdoq_moves_tokens_one_step_toward_the_prediction_and_saves_bytes(tiny_weights, photo):
    w = image.ImageWeights(tiny_weights)
    assert w.tensors["synth_gain"].shape == (w.config["m"],) and (w.tensors["synth_gain"] > 0).all()
    codec = image.ImageCodec(w, backend="torch")
    a = codec.analyse(photo[:128, :128])
    # latents far from their predictions, so that tokens of every size occur
    a = image.Analysed(a.rgb, np.random.default_rng(2).normal(0, 3, a.y.shape).astype(np.float32),
                       a.z, a.mean, a.log_scale_q)
    rdoq = codec.code(a, 2500)
    plain_w = image.ImageWeights(tiny_weights)
    del plain_w.tensors["synth_gain"]
    plain_codec = image.ImageCodec(plain_w, backend="torch")
    plain = plain_codec.code(a, 2500)
    first = slice(0, w.slice_channels)  # later slices' predictions depend on earlier tokens
    step = (plain.q - rdoq.q)[first]
    assert set(np.unique(step)) <= {-1, 0, 1}
    assert (step == np.sign(plain.q[first]) * np.abs(step)).all()  # only ever toward zero
    assert 0 < np.abs(step).sum() < (plain.q[first] != 0).sum()  # some moved, not all
    assert len(codec.pack(a, 2500, 3)) < len(plain_codec.pack(a, 2500, 3))
    # distortion weighted without bound: plain rounding
    w.tensors["synth_gain"] = np.full_like(w.tensors["synth_gain"], 1e12)
    np.testing.assert_array_equal(codec.code(a, 2500).q, plain.q)
