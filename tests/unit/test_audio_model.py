"""tokc-audio-v1's model layer: the fixed MDCT (numpy spec and torch twin), the latents, and a
tiny model's training pass (rate only)."""

import numpy as np
import pytest

from tokc import dsp

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("length", [1, 319, 320, 5000])
def test_mdct_reconstructs_exactly(length):
    x = np.random.default_rng(length).standard_normal(length)
    t = dsp.frames_for(length, 320, 4)
    assert t % 4 == 0
    padded = dsp.pad_signal(x, 320, t)
    y = dsp.imdct(dsp.mdct(padded, 320), 320)
    np.testing.assert_allclose(y[320 : 320 + length], x, atol=1e-9)


def test_compand_inverts():
    x = np.linspace(-2, 2, 101)
    np.testing.assert_allclose(dsp.expand(dsp.compand(x, 0.5), 0.5), x, atol=1e-12)


def tiny_model():
    from tokc.models.audio import AudioConfig, AudioModel

    return AudioModel(AudioConfig(hop=32, bands=4, m=36, nz=4, ctx_slices=3, ctx_width=8))


def test_torch_analysis_matches_numpy():
    model = tiny_model()
    cfg = model.config
    x = np.random.default_rng(0).standard_normal(2000) * 0.1
    padded = dsp.pad_signal(x, 32, dsp.frames_for(2000, 32, 4))
    frames = model.analyse_frames(torch.from_numpy(padded).float()[None])
    coefs = dsp.mdct(padded, 32)
    np.testing.assert_allclose(frames[0, :, 0].numpy(), coefs, atol=1e-5)
    k, u = dsp.analysis(coefs, 4, cfg.env_step, cfg.norm, cfg.power)
    y = model.g_a(frames)[0, :, 0].numpy()
    np.testing.assert_allclose(y[:4], k * cfg.env_step, atol=1e-6)
    np.testing.assert_allclose(y[4:], u, rtol=1e-4, atol=1e-5)


def test_decode_inverts_analysis_without_quantization():
    coefs = np.random.default_rng(1).standard_normal((32, 20)) * 0.05
    k, u = dsp.analysis(coefs, 4, 0.75, 0.3, 0.8)
    back = dsp.decode_frames(k * 0.75, u, np.zeros(u.shape, bool), 0.0, 0.4, 0.8, 0.3,
                             np.random.default_rng(0))
    np.testing.assert_allclose(back, coefs, atol=1e-12)
    # the envelope sits on its grid: within half a step (log2) of the true band RMS
    assert np.abs(k * 0.75 - dsp.envelope(coefs, 4)).max() <= 0.375 + 1e-12


def test_noise_fill_restores_band_energy_only_where_tokens_are_zero():
    rng = np.random.default_rng(0)
    coefs = rng.standard_normal((32, 50))
    env = dsp.envelope(coefs, 4)
    zero = rng.random(coefs.shape) < 0.5
    kept = np.where(zero, 0.0, coefs)
    filled = dsp.noise_fill(kept, zero, env, 1.0, np.inf, np.random.default_rng(1))
    np.testing.assert_array_equal(filled[~zero], coefs[~zero])
    # kappa 1: the bands' energy comes back, on average
    ratio = np.sum(filled**2) / np.sum(coefs**2)
    assert 0.8 < ratio < 1.2
    capped = dsp.noise_fill(kept, zero, env, 1.0, 0.01, np.random.default_rng(1))
    assert np.abs(capped[zero]).max() <= 0.01 * 6


def test_levels_are_fixed_steps():
    model = tiny_model()
    cfg = model.config
    gains = model.log_gain.exp()
    np.testing.assert_allclose(gains[:, : cfg.bands].numpy(), 1 / cfg.env_step, rtol=1e-6)
    np.testing.assert_allclose(gains[0, cfg.bands].item(), cfg.gain_min, rtol=1e-5)
    np.testing.assert_allclose(gains[-1, cfg.bands].item(), cfg.gain_max, rtol=1e-5)
    assert not any(n.startswith("log_gain") for n, _ in model.named_parameters())


def test_tiny_model_trains_a_step():
    torch.manual_seed(0)
    model = tiny_model()
    wave = torch.randn(3, 33 * 32) * 0.05
    levels = torch.tensor([0.0, 2.5, 5.0])
    out = model(wave, levels)
    assert out["kbps"].shape == (3,) and torch.isfinite(out["kbps"]).all()
    out["kbps"].mean().backward()
    for part in (model.h_a, model.h_s, model.ctx[0], model.spatial[0]):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    # a finer step costs more bits
    with torch.no_grad():
        rates = [model(wave[:1], torch.tensor([lv]))["kbps"].item() for lv in (0.0, 5.0)]
    assert rates[0] < rates[1]
