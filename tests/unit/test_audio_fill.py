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
