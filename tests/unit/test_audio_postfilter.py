"""The learned post-filter: the numpy decoder (tokc.dsp.LearnedPostfilter) computes what its
torch twin (tokc.models.audio_postfilter, which trains it) computes, and streams."""

import numpy as np
import pytest

from tokc import dsp


def random_params(seed: int = 0, bands: int = 16, hidden: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = 0.3 if bands == 16 else 0.05
    shapes = {"conv0": (hidden, bands + 4, 5), "conv1": (hidden, hidden, 5), "conv2": (1 + bands, hidden, 1)}
    out = {}
    for name, shape in shapes.items():
        out[f"{name}.weight"] = rng.normal(0, scale, shape)
        out[f"{name}.bias"] = rng.normal(0, scale, shape[0])
    return out


def voiced(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    f0 = 140 + 30 * np.sin(2 * np.pi * 1.5 * t)
    x = sum(0.2 / k * np.sin(2 * np.pi * k * np.cumsum(f0) / 16000) for k in range(1, 6))
    return x * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t) ** 2) + 0.02 * rng.standard_normal(n)


@pytest.mark.parametrize("bands", [16, 161])  # post-filter 1: 16 bands; 2: one per bin
def test_numpy_equals_torch_twin(bands):
    torch = pytest.importorskip("torch")
    from tokc.models.audio_postfilter import HOP, PostfilterNet, pitch

    net = PostfilterNet(bands=bands, hidden=12).double()
    params = random_params(bands=bands)
    net.load_state_dict({**net.state_dict(), **{k: torch.from_numpy(v) for k, v in params.items()}})
    y = voiced(7777)
    padded, lags, r, ahead = pitch(y)
    with torch.no_grad():
        out = net(torch.from_numpy(padded)[None], torch.from_numpy(lags)[None], torch.from_numpy(r)[None],
                  torch.from_numpy(ahead)[None], torch.tensor([1.3], dtype=torch.float64))[0].numpy()
    got = dsp.learned_postfilter(y, params, 1.3)
    assert got.shape == y.shape
    # the twin keeps its window and band matrices in float32
    np.testing.assert_allclose(got, out[HOP : HOP + len(y)], rtol=0, atol=1e-6)
    assert np.abs(got - y).max() > 0.01  # it did filter


@pytest.mark.parametrize("bands", [16, 161])
@pytest.mark.parametrize("n", [7777, 1500, 300, 1, 0])
def test_streaming_equals_whole(n, bands):
    params = random_params(1, bands)
    y = voiced(n, 1)
    whole = dsp.learned_postfilter(y, params, 2.0)
    assert len(whole) == n
    for size in (1, 100, 777, 5000):
        pf = dsp.LearnedPostfilter(params, 2.0)
        parts = [pf.push(y[s : s + size]) for s in range(0, n, size)] + [pf.flush()]
        np.testing.assert_allclose(np.concatenate(parts), whole, rtol=0, atol=1e-12)


def test_zero_network_is_a_gentle_comb():
    """With the last layer at zero (how training starts) the gains are one and the comb weight
    sigmoid(-1)·r: silence stays silent and a steady voiced tone passes nearly unchanged."""
    params = random_params(2)
    params["conv2.weight"][:] = 0
    params["conv2.bias"][:] = 0
    assert not dsp.learned_postfilter(np.zeros(4000), params, 1.0).any()
    t = np.arange(16000) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 200 * t)  # period 80 samples: the comb adds the tone to itself
    out = dsp.learned_postfilter(tone, params, 1.0)
    inner = slice(1000, -1000)
    assert np.abs(out - tone)[inner].max() < 0.01
