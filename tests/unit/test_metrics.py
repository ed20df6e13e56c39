import math

import numpy as np
import pytest

from tokc.metrics import (
    bd_quality,
    bd_rate,
    log_mel_distance,
    ms_ssim,
    ms_ssim_db,
    pesq_wb,
    psnr,
    si_sdr,
    ssimulacra2,
    stoi,
)
from tokc.metrics.audio import mel_filterbank


def smooth_image(h: int = 176, w: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack(
        [128 + 90 * np.sin(6 * x + 2 * y), 128 + 90 * np.cos(5 * y), 60 + 120 * x], axis=-1
    ) + rng.normal(0, 4, (h, w, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def noisy(img: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, img.shape)
    return np.clip(np.round(img + noise), 0, 255).astype(np.uint8)


# --- images ------------------------------------------------------------------------------------


def test_psnr_known_value_and_identical_is_inf():
    img = smooth_image()
    img[img == 255] = 254
    assert psnr(img, img + 1) == pytest.approx(10 * math.log10(255**2))  # MSE exactly 1
    assert psnr(img, img) == math.inf


def test_psnr_rejects_non_uint8_and_shape_mismatch():
    img = smooth_image()
    with pytest.raises(ValueError, match="uint8"):
        psnr(img, img.astype(np.float64))
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(img, img[1:])


def test_ms_ssim_orders_distortions_and_db_scale():
    img = smooth_image()
    assert ms_ssim(img, img) == pytest.approx(1.0)
    mild, strong = ms_ssim(img, noisy(img, 5)), ms_ssim(img, noisy(img, 25))
    assert 0.5 < strong < mild < 1.0
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    assert ms_ssim_db(1.0) == math.inf


def test_ms_ssim_needs_161_pixels():
    img = smooth_image(160, 200)
    with pytest.raises(ValueError, match="161"):
        ms_ssim(img, img)


def test_ssimulacra2_identical_is_100_and_orders_distortions():
    img = smooth_image(96, 128)
    assert ssimulacra2(img, img) == pytest.approx(100.0)
    mild, strong = ssimulacra2(img, noisy(img, 3)), ssimulacra2(img, noisy(img, 20))
    assert strong < mild < 100.0


# --- audio -------------------------------------------------------------------------------------


def speechlike(rate: int = 16000, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.7 * t)) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 30)) * np.sqrt(
        np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None)
    )
    x = 0.3 * x / np.abs(x).max() + 0.003 * np.random.default_rng(0).standard_normal(t.size)
    return x.astype(np.float32)


def with_noise(x: np.ndarray, level: float) -> np.ndarray:
    return (x + level * np.random.default_rng(2).standard_normal(x.size)).astype(np.float32)


def test_si_sdr_known_values():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(8000)
    ref -= ref.mean()
    noise = rng.standard_normal(8000)
    noise -= noise.mean()
    noise -= noise @ ref / (ref @ ref) * ref  # orthogonal to ref
    noise *= np.sqrt((ref @ ref) / (noise @ noise) / 10)  # 10x less energy
    assert si_sdr(ref, ref + noise) == pytest.approx(10.0)
    assert si_sdr(ref, 3 * ref + noise) == pytest.approx(10 * math.log10(90))
    assert si_sdr(ref, 0.5 * ref) == math.inf  # scale does not matter
    with pytest.raises(ValueError, match="silent"):
        si_sdr(np.zeros(100), ref[:100])


def test_mel_filterbank_shape_and_coverage():
    bank = mel_filterbank(16000, 1024, 80)
    assert bank.shape == (80, 513)
    assert bank.max() == pytest.approx(1.0, abs=0.05)
    assert np.all(bank.sum(axis=1) > 0)  # no empty filter at this resolution


def test_log_mel_distance_is_zero_for_identical_and_grows_with_noise():
    x = speechlike()
    assert log_mel_distance(x, x, 16000) == 0.0
    assert (
        0
        < log_mel_distance(x, with_noise(x, 0.001), 16000)
        < log_mel_distance(x, with_noise(x, 0.03), 16000)
    )


def test_pesq_and_stoi_order_distortions_and_resample():
    x = speechlike()
    assert pesq_wb(x, x, 16000) > 4.5
    assert stoi(x, x, 16000) == pytest.approx(1.0)
    mild, strong = with_noise(x, 0.003), with_noise(x, 0.05)
    assert pesq_wb(x, strong, 16000) < pesq_wb(x, mild, 16000) < 4.5
    assert stoi(x, strong, 16000) < stoi(x, mild, 16000)
    x48 = speechlike(48000)
    assert pesq_wb(x48, x48, 48000) > 4.5  # resampled to 16 kHz inside


def test_audio_metrics_reject_length_mismatch():
    x = speechlike()
    with pytest.raises(ValueError, match="length mismatch"):
        si_sdr(x, x[:-1])


# --- Bjøntegaard -------------------------------------------------------------------------------

RATES = [0.1, 0.25, 0.5, 0.8, 1.2, 1.6]
PSNRS = [26.0, 28.7, 31.2, 33.0, 34.9, 36.3]


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_bd_rate_of_scaled_rates_is_exact(method):
    assert bd_rate(RATES, PSNRS, [0.8 * r for r in RATES], PSNRS, method) == pytest.approx(-20.0)
    assert bd_rate(RATES, PSNRS, [1.25 * r for r in RATES], PSNRS, method) == pytest.approx(25.0)
    assert bd_rate(RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_bd_rate_of_shifted_log_linear_curve_over_partial_overlap(method):
    # anchor: D = a ln R + b; test: same curve shifted up by 1.5 dB, so at equal quality
    # ln R differs by -1.5/a everywhere, whatever the overlap.
    a, b, shift = 4.0, 34.0, 1.5
    rates = np.geomspace(0.1, 2.0, 7)
    anchor_q = a * np.log(rates) + b
    test_rates = np.geomspace(0.05, 1.0, 6)
    test_q = a * np.log(test_rates) + b + shift
    expected = (math.exp(-shift / a) - 1) * 100
    assert bd_rate(rates, anchor_q, test_rates, test_q, method) == pytest.approx(expected)
    assert bd_quality(rates, anchor_q, test_rates, test_q, method) == pytest.approx(shift)


def test_bd_rate_ignores_point_order_and_infinite_points():
    order = [3, 0, 5, 1, 4, 2]
    r = [RATES[i] for i in order] + [3.0]
    q = [PSNRS[i] for i in order] + [math.inf]
    assert bd_rate(r, q, [0.8 * x for x in RATES], PSNRS) == pytest.approx(-20.0)


def test_bd_rate_errors():
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate(RATES[:3], PSNRS[:3], RATES, PSNRS)
    with pytest.raises(ValueError, match="do not overlap"):
        bd_rate(RATES, PSNRS, RATES, [p + 20 for p in PSNRS])
    with pytest.raises(ValueError, match="unknown BD method"):
        bd_rate(RATES, PSNRS, RATES, PSNRS, method="akima")
