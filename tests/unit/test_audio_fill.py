"""The learned fill: the numpy decoder (tokc.dsp.learned_fill) computes what its torch twin
(tokc.models.audio_fill, which trains it) computes, and the decoder gives only the zero tokens
the predicted RMS."""

import numpy as np
import pytest

from tokc import dsp


def random_params(seed: int = 0, hidden: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    chans = [dsp.FILL_FEATURES] + [hidden] * 4
    out = {}
    for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
        out[f"conv{i}.weight"] = rng.normal(0, 0.3, (b, a, 3, 3))
        out[f"conv{i}.bias"] = rng.normal(0, 0.1, b)
    out["out.weight"] = rng.normal(0, 0.5, (1, hidden, 1, 1))
    out["out.bias"] = np.array([-1.0])
    return out


def segment(seed: int = 0, hop: int = 320, frames: int = 23):
    """A decoded segment's fill inputs: envelope, tokens (mostly zero above 2 kHz), u_hat, cap."""
    rng = np.random.default_rng(seed)
    env = rng.uniform(-9, -4, (16, frames))
    q = np.round(rng.normal(0, 1.5, (hop, frames)) * (np.arange(hop) < 80)[:, None]).astype(np.int64)
    cap = np.full((hop, 1), 0.05)
    return env, q, q * 2 * cap, cap


def test_numpy_equals_torch_twin():
    torch = pytest.importorskip("torch")
    from tokc.models.audio_fill import FillNet

    net = FillNet(hidden=8).double()
    params = random_params()
    net.load_state_dict({k.replace("conv", "convs."): torch.from_numpy(v) for k, v in params.items()})
    env, q, u_hat, cap = segment()
    feats = dsp.fill_features(q, env, u_hat, cap, 1.5, 0.8, 0.15)
    assert feats.shape == (dsp.FILL_FEATURES, 320, 23) and np.isfinite(feats).all()
    with torch.no_grad():
        want = net(torch.from_numpy(np.ascontiguousarray(feats))[None])[0].numpy()
    got = dsp.learned_fill(feats, params)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)  # float32 here
    assert got.std() > 0.05  # the weights did something


def test_only_zero_tokens_are_filled_at_the_predicted_rms():
    params = random_params(1)
    env, q, u_hat, cap = segment(1)
    coefs = dsp.decode_frames_learned(env, q, u_hat, cap, 2.0, params, 0.8, 0.15, np.random.default_rng(0))
    scale = dsp.band_scale(env, 0.15, 320)
    u = dsp.compand(coefs / scale, 0.8)
    nz = q != 0
    np.testing.assert_allclose(u[nz], u_hat[nz], rtol=1e-9, atol=1e-12)
    rms = np.exp(0.5 * dsp.learned_fill(dsp.fill_features(q, env, u_hat, cap, 2.0, 0.8, 0.15), params)) * cap
    np.testing.assert_allclose(np.abs(u[~nz]), rms[~nz], rtol=1e-9)
    assert 0.4 < np.mean(u[~nz] > 0) < 0.6  # random signs
    again = dsp.decode_frames_learned(env, q, u_hat, cap, 2.0, params, 0.8, 0.15, np.random.default_rng(0))
    np.testing.assert_array_equal(coefs, again)


def test_fill_shape_moves_each_group_toward_the_true_level():
    """The encoder's symbols say, per group of 5 coefficients below 4 kHz holding a zero token
    in a band above SHAPE_MIN_ENV, whether the true uncoded energy is about 2**1.5 above or
    below the fill's; the decoder scales only those zero-coded coefficients, never past a zero
    token's largest magnitude."""
    params = random_params(2)
    env, q, u_hat, cap = segment(2)
    env[:, :4] = np.log2(dsp.ENV_FLOOR)  # 4 silent frames
    env[3, 4] = dsp.SHAPE_MIN_ENV - 0.5  # and one quiet band (coefficients 60..79, groups 12..15)
    rng = np.random.default_rng(2)
    filled = dsp.decode_frames_learned(env, q, u_hat, cap, 2.0, params, 0.8, 0.15, np.random.default_rng(0))
    zero = q == 0
    width, bins = dsp.shape_layout(320)
    assert (width, bins) == (5, 160)
    level = rng.choice([0.1, 0.5, 1.0, 1.5, 3.0, 10.0], (bins // width, 23))  # true RMS / fill RMS per group
    true = filled.copy()
    true[:bins] *= np.repeat(level, width, axis=0)
    groups = dsp.shape_groups(zero, env)
    symbols = dsp.fill_shape_symbols(true, filled, zero, groups)
    assert symbols.shape == groups.shape and groups.any() and not groups.all()
    assert not groups[:, :4].any() and not groups[12:16, 4].any() and groups[16:, 4].all()
    np.testing.assert_array_equal(symbols[groups], np.clip(np.round(np.log2(level[groups]) / 1.5), -1, 1))
    assert (symbols[~groups] == 0).all()
    cap_coefs = dsp.expand(np.broadcast_to(cap, q.shape), 0.8) * dsp.band_scale(env, 0.15, 320)
    shaped = dsp.apply_fill_shape(filled, zero, cap_coefs, symbols, groups)
    moved = shaped != filled
    assert moved.any() and not moved[bins:].any() and not moved[~zero].any()
    assert (np.abs(shaped[zero]) <= np.maximum(cap_coefs[zero], np.abs(filled[zero])) + 1e-15).all()
    up = np.repeat(symbols == 1, width, axis=0) & zero[:bins]
    assert (np.abs(shaped[:bins][up]) >= np.abs(filled[:bins][up])).all()
    down = np.repeat(symbols == -1, width, axis=0) & zero[:bins]
    np.testing.assert_allclose(shaped[:bins][down], np.clip(filled[:bins][down] * 2**-1.5,
                                                            -cap_coefs[:bins][down], cap_coefs[:bins][down]))


def test_fill_signs_take_the_true_sign_where_the_mask_says():
    """The fill signs cover the zero tokens below 1 kHz (40 of 320 coefficients) in bands above
    SHAPE_MIN_ENV, in frames whose loudest band is within SIGN_RANGE of the segment's loudest;
    applied, those coefficients get the given signs with their magnitudes kept, and nothing
    else moves."""
    env, q, u_hat, cap = segment(3)
    env = np.round(env / 0.75) * 0.75  # on the envelope's grid, as decoded
    env[:, 0] = np.log2(dsp.ENV_FLOOR)  # a silent frame
    env[0, 1] = dsp.SHAPE_MIN_ENV - 0.75  # a quiet lowest band (coefficients 0..19)
    env[:, 2] = env.max() - dsp.SIGN_RANGE - 0.75  # a frame just too far below the loudest
    env[:, 3] = env.max() - dsp.SIGN_RANGE  # and one just within
    zero = q == 0
    mask = dsp.sign_mask(zero, env)
    assert mask.shape == q.shape and not mask[40:].any() and not mask[~zero].any()
    assert not mask[:, 0].any() and not mask[:20, 1].any() and mask[20:40, 1].any()
    assert not mask[:, 2].any() and mask[:, 3].any()
    np.testing.assert_array_equal(mask[:40, 4:], zero[:40, 4:])
    params = random_params(3)
    filled = dsp.decode_frames_learned(env, q, u_hat, cap, 2.0, params, 0.8, 0.15, np.random.default_rng(0))
    negative = np.random.default_rng(3).random(int(mask.sum())) < 0.5
    signed = dsp.apply_fill_signs(filled, mask, negative)
    np.testing.assert_array_equal(np.abs(signed), np.abs(filled))
    np.testing.assert_array_equal(signed[~mask], filled[~mask])
    np.testing.assert_array_equal(signed[mask] < 0, negative)
