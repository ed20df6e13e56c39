"""The shared codec parts on a 1-D signal laid out as (C, 1, T), as the audio codec uses them:
latent coding with the even/odd context, 1-D segmenting, rate control."""

import numpy as np
import pytest

from tokc import format as fmt
from tokc.compress import latent, ratecontrol, tiling
from tokc.compress.base import CodecError


def test_checkerboard_is_even_odd_frames_on_one_row():
    anchor, rest = latent.checkerboard((1, 7))
    np.testing.assert_array_equal(anchor[0], [True, False] * 3 + [True])
    np.testing.assert_array_equal(rest, ~anchor)
    np.testing.assert_array_equal(latent.checkerboard((5,))[0], [True, False, True, False, True])
    assert latent.checkerboard((3, 4))[0].sum() == 6


def _conv1d(x, taps):
    """A 'same' convolution along the last axis, per channel, zero padded."""
    r = len(taps) // 2
    pad = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(r, r)])
    return sum(t * pad[..., i : i + x.shape[-1]] for i, t in enumerate(taps)).astype(np.float32)


@pytest.mark.parametrize("shape", [(3, 1, 203), (2, 64)])
def test_segmented_equals_one_pass(shape):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    taps = np.array([0.1, -0.3, 1.0, 0.5, 0.2], np.float32)  # radius 2 samples

    def down(v):  # 4 samples -> 1 latent, seeing 2 samples around
        return _conv1d(v, taps)[..., ::4]

    def up(v):  # 1 latent -> 4 samples
        return _conv1d(np.repeat(v, 4, axis=-1), taps)

    t = shape[-1] // 4 * 4
    np.testing.assert_allclose(tiling.segmented(down, x[..., :t], 4, 1, seg=5, margin=1), down(x[..., :t]),
                               atol=1e-6)
    y = down(x[..., :t])
    np.testing.assert_allclose(tiling.segmented(up, y, 1, 4, seg=3, margin=1), up(y), atol=1e-6)


def test_latent_coding_of_a_one_row_latent(tiny_weights):
    """The tiny tokc-image-v1 weights (3x3 context networks: on one row they see the frames
    either side) code a (C, 1, T) latent with the even/odd context, and the decoder reads back
    exactly the encoder's tokens, tables and offsets."""
    from tokc.compress.weights import LatentWeights

    w = LatentWeights(tiny_weights)
    hs = w.hs
    w.hs = lambda z: hs(z)[:, :1]  # the image hyper-synthesis upsamples rows too: keep one
    coder = latent.LatentCoder(w)
    rng = np.random.default_rng(1)
    m, cz = w.config["m"], w.z_tables.freq.shape[0]
    z = rng.integers(-2, 3, (cz, 1, 5)).astype(np.int64)
    mean, log_scale_q = coder.entropy_params(z)
    assert mean.shape == (m, 1, 20) and len(w.spatial) == 3
    y = rng.normal(0, 4, mean.shape).astype(np.float32)
    plain = coder.code(y, mean, log_scale_q, 2500)
    for weight in (None, np.full(m, 0.5)):
        c = coder.code(y, mean, log_scale_q, 2500, weight)
        assert np.abs(c.q).sum() > 0
        z2, c2 = coder.read({ch.tag: ch.payload for ch in coder.chunks(z, c)}, (1, 5), 2500)
        np.testing.assert_array_equal(z2, z)
        for got, want in ((c2.q, c.q), (c2.index, c.index), (c2.offset, c.offset)):
            np.testing.assert_array_equal(got, want)
    assert (c.q != plain.q).any()  # RDOQ moved some tokens
    assert coder.latents(c, 2500).shape == (m, 1, 20)
    with pytest.raises(fmt.TokcFormatError, match="'ans '"):
        coder.read({}, (1, 5), 2500)


def test_choose_level_from_callbacks():
    sizes = lambda lv: 1000 + lv // 10  # noqa: E731
    assert ratecontrol.choose_level(6, sizes, None, size=1300) == 3009  # 1300 bytes: 3000..3009
    assert ratecontrol.choose_level(6, sizes, None, quality=100) == 5000
    assert 2500 <= ratecontrol.choose_level(6, None, lambda lv: 30 + lv / 1000, target=32.5) <= 2510
    with pytest.warns(UserWarning, match="out of reach"):
        assert ratecontrol.choose_level(6, None, lambda lv: 30.0, target=40) == 5000
    with pytest.raises(CodecError, match="no quality fits in 10 bytes"):
        ratecontrol.choose_level(6, sizes, None, size=10)
