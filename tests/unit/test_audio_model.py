"""tokc-audio-v1's model layer: the fixed MDCT (numpy spec and torch twin) and a tiny model's
training pass."""

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


def test_torch_transforms_match_numpy():
    from tokc.models.audio import AudioConfig, AudioModel

    model = AudioModel(AudioConfig(n=16, m=8, nz=4, ctx_slices=2, ctx_width=8))
    x = np.random.default_rng(0).standard_normal(2000) * 0.1
    padded = dsp.pad_signal(x, 320, dsp.frames_for(2000, 320, 4))
    xc = model.analyse_frames(torch.from_numpy(padded).float()[None])
    want = dsp.compand(dsp.mdct(padded, 320), 0.5)
    np.testing.assert_allclose(xc[0, :, 0].numpy(), want, atol=1e-5)
    back = model.synthesise_frames(xc)[0].numpy()
    np.testing.assert_allclose(back[320:2320], x, atol=1e-5)


def test_tiny_model_trains_a_step():
    from tokc.models.audio import AudioConfig, AudioModel, pca_init

    torch.manual_seed(0)
    model = AudioModel(AudioConfig(n=16, m=8, nz=4, ctx_slices=2, ctx_width=8))
    waves = [np.random.default_rng(i).standard_normal(9 * 320).astype(np.float32) * 0.05 for i in range(3)]
    pca_init(model, waves)
    wave = torch.from_numpy(np.stack(waves)[:, : 9 * 320])
    out = model(wave, torch.tensor([0.0, 2.5, 5.0]))
    assert out["kbps"].shape == (3,) and torch.isfinite(out["kbps"]).all()
    assert out["wave_hat"].shape == wave.shape
    loss = (out["kbps"] + model.lmbda(torch.tensor([0.0, 2.5, 5.0])) * (out["mse"] + out["spec"])).mean()
    loss.backward()
    assert model.g_a.short.weight.grad is not None
    # every level spends more bits than the one below at the start (gains spread by lambda)
    with torch.no_grad():
        rates = [model(wave[:1], torch.tensor([lv]))["kbps"].item() for lv in (0.0, 5.0)]
    assert rates[0] < rates[1]
