"""The shipped tokc-image-v1 weights: golden bitstream, exact decode, rate control on a photo.

Regenerate the golden values after replacing the weights with TOKC_REGEN_GOLDEN=1 (never
silently): the test then rewrites tests/golden/image_v1.json and fails, so that the change is
seen and committed on purpose."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tokc.compress import image
from tokc.metrics.image import psnr

GOLDEN = Path(__file__).with_name("image_v1.json")
GOLDEN_FILE = Path(__file__).with_name("image_v1_q60.tokc")


@pytest.fixture(scope="module")
def codec():
    pytest.importorskip("torch")
    return image.ImageCodec(backend="torch")


def _tokens_digest(codec, data: bytes) -> str:
    _, _, z, c = codec.decode_tokens(data)
    return hashlib.sha256(z.tobytes() + c.q.tobytes() + c.index.tobytes()).hexdigest()


def test_golden_bitstream_and_tokens(codec, photo):
    data = codec.compress(photo, quality=60).data
    got = {
        "weights_digest": codec.weights.digest.hex(),
        "md5_q60": hashlib.md5(data).hexdigest(),
        "tokens_sha256": _tokens_digest(codec, data),
    }
    if os.environ.get("TOKC_REGEN_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
        GOLDEN_FILE.write_bytes(data)
        pytest.fail("golden values regenerated: review and commit tests/golden/image_v1.*")
    want = json.loads(GOLDEN.read_text())
    assert got["weights_digest"] == want["weights_digest"], "weights changed: regenerate golden"
    assert got["md5_q60"] == want["md5_q60"]
    # the committed file decodes to the same tokens here as where it was made
    assert _tokens_digest(codec, GOLDEN_FILE.read_bytes()) == want["tokens_sha256"]


def test_quality_is_monotone_in_bytes(codec, photo):
    sizes = [len(codec.compress(photo, quality=q).data) for q in range(0, 101, 10)]
    assert sizes == sorted(sizes)


def test_psnr_target_is_reached(codec, photo):
    lo = psnr(photo, codec.decompress(codec.compress(photo, quality=10).data))
    target = lo + 2
    res = codec.compress(photo, psnr=target)
    got = psnr(photo, codec.decompress(res.data))
    assert got >= target
    # and it is the smallest such file, within the search tolerance of 10 thousandths of a
    # level: PSNR rises with the level only to within a few thousandths of a dB (tokens move
    # by whole steps), so a level just below may touch the target by less than 0.01 dB
    smaller = codec.pack(codec.analyse(photo), int(round(res.level * 1000)) - 11, 3)
    assert psnr(photo, codec.decompress(smaller)) < target + 0.01 or len(smaller) >= len(res.data)


@pytest.mark.parametrize("quality", [5, 95])
def test_integer_networks_same_in_onnxruntime_as_in_numpy(codec, photo, quality):
    """The shipped hyper-synthesis and context networks on a real photo's tokens: ONNX Runtime's
    float32 graphs (intnet_ort) give the integers of the numpy spec (intnet.run)."""
    pytest.importorskip("onnxruntime")
    from tokc.compress import intnet

    w = codec.weights
    _, _, z, c = codec.decode_tokens(codec.compress(photo, quality=quality).data)
    cs = w.slice_channels
    anchors = codec.latent.parts(c.q.shape[1:])[0]
    cases = [(w.hs, z)] + [(net, c.q[: s * cs]) for s, net in enumerate(w.ctx, 1)]
    cases += [(net, c.q[s * cs : (s + 1) * cs] * anchors) for s, net in enumerate(w.spatial)]
    for net, x in cases:
        assert net.session is not None and net.exact_in_float32(x)
        np.testing.assert_array_equal(net(x), intnet.run(net.layers, x))
