"""The shipped tokc-image-v1 weights: golden bitstream, exact decode, rate control on a photo.

Regenerate the golden values after replacing the weights with TOKC_REGEN_GOLDEN=1 (never
silently): the test then rewrites tests/golden/image_v1.json and fails, so that the change is
seen and committed on purpose."""

import hashlib
import json
import os
from pathlib import Path

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
