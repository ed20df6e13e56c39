"""Audio quality metrics on mono float arrays (samples in [-1, 1]) of equal length.

- PESQ: ITU-T P.862.2 wideband via the `pesq` package, always at 16 kHz (resampled).
- STOI: `pystoi` (which resamples to 10 kHz itself); extended=True gives ESTOI.
- log-mel distance: own numpy code, see `log_mel_distance`.
- SI-SDR: scale-invariant SDR (Le Roux et al. 2019), in dB.
- ViSQOL v3: `visqol-python` (a Python port of Google's ViSQOL, its models in the wheel, runs
  offline). Speech mode at 16 kHz with the deep-lattice mapper (the C++ default; needs the
  `[lattice]` extra, refused rather than silently replaced by the polynomial fallback), audio
  mode at 48 kHz (SVR mapper); signals are resampled to the mode's rate first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from math import gcd

import numpy as np

PESQ_RATE = 16000
VISQOL_RATES = {"speech": 16000, "audio": 48000}


@dataclass(frozen=True)
class AudioMetrics:
    pesq: float  # wideband MOS-LQO, about 1.0 .. 4.64
    stoi: float  # 0 .. 1
    mel_distance: float  # lower is better, 0 = identical
    si_sdr: float  # dB, +inf for identical signals
    visqol: float = math.nan  # MOS-LQO 1 .. 5 (speech mode); nan when not asked for


def _check_pair(ref: np.ndarray, deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref, dtype=np.float64)
    deg = np.asarray(deg, dtype=np.float64)
    if ref.ndim != 1 or deg.ndim != 1:
        raise ValueError(f"expected mono 1-D signals, got {ref.shape} and {deg.shape}")
    if ref.shape != deg.shape:
        raise ValueError(f"length mismatch: {ref.size} vs {deg.size} samples")
    return ref, deg


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (scipy); returns x unchanged when the rates agree."""
    if rate_in == rate_out:
        return np.asarray(x)
    from scipy.signal import resample_poly

    g = gcd(int(rate_in), int(rate_out))
    return resample_poly(x, rate_out // g, rate_in // g)


def pesq_wb(ref: np.ndarray, deg: np.ndarray, sample_rate: int) -> float:
    """Wideband PESQ; both signals are resampled to 16 kHz first if needed."""
    ref, deg = _check_pair(ref, deg)
    from pesq import pesq

    ref = resample(ref, sample_rate, PESQ_RATE)
    deg = resample(deg, sample_rate, PESQ_RATE)
    return float(pesq(PESQ_RATE, ref, deg, "wb"))


def stoi(ref: np.ndarray, deg: np.ndarray, sample_rate: int, extended: bool = False) -> float:
    """STOI (or ESTOI with extended=True) from pystoi."""
    ref, deg = _check_pair(ref, deg)
    from pystoi import stoi as _stoi

    return float(_stoi(ref, deg, sample_rate, extended=extended))


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular filters on the HTK mel scale from 0 Hz to Nyquist, shape (n_mels, n_fft//2+1)."""
    mel_max = 2595.0 * np.log10(1.0 + (sample_rate / 2) / 700.0)
    edges_hz = 700.0 * (10 ** (np.linspace(0.0, mel_max, n_mels + 2) / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    bank = np.zeros((n_mels, freqs.size))
    for i in range(n_mels):
        lo, centre, hi = edges_hz[i : i + 3]
        rising = (freqs - lo) / (centre - lo)
        falling = (hi - freqs) / (hi - centre)
        bank[i] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bank


def log_mel(
    x: np.ndarray, sample_rate: int, n_fft: int = 1024, hop: int = 256, n_mels: int = 80
) -> np.ndarray:
    """log10 of the mel-filtered STFT magnitude (Hann window, centred frames), floored at 1e-5."""
    x = np.pad(np.asarray(x, dtype=np.float64), n_fft // 2, mode="reflect")
    n_frames = 1 + (x.size - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop][:n_frames]
    magnitude = np.abs(np.fft.rfft(frames * np.hanning(n_fft + 1)[:-1], axis=1))
    mel = magnitude @ mel_filterbank(sample_rate, n_fft, n_mels).T
    return np.log10(np.maximum(mel, 1e-5))


def log_mel_distance(
    ref: np.ndarray,
    deg: np.ndarray,
    sample_rate: int,
    n_fft: int = 1024,
    hop: int = 256,
    n_mels: int = 80,
) -> float:
    """Mean absolute difference of `log_mel` spectrograms (log10 units); 0 for identical."""
    ref, deg = _check_pair(ref, deg)
    if ref.size <= n_fft // 2:
        raise ValueError(f"signal too short for n_fft={n_fft}: {ref.size} samples")
    a = log_mel(ref, sample_rate, n_fft, hop, n_mels)
    b = log_mel(deg, sample_rate, n_fft, hop, n_mels)
    return float(np.mean(np.abs(a - b)))


def si_sdr(ref: np.ndarray, deg: np.ndarray) -> float:
    """Scale-invariant SDR in dB (both signals made zero-mean); +inf when deg = c * ref."""
    ref, deg = _check_pair(ref, deg)
    ref = ref - ref.mean()
    deg = deg - deg.mean()
    energy = np.dot(ref, ref)
    if energy == 0:
        raise ValueError("SI-SDR is undefined for a silent reference")
    target = (np.dot(deg, ref) / energy) * ref
    noise = deg - target
    noise_energy = np.dot(noise, noise)
    if noise_energy <= 1e-20 * energy:
        return math.inf
    return float(10 * np.log10(np.dot(target, target) / noise_energy))


@cache
def _visqol_api(mode: str):
    from visqol import VisqolApi

    api = VisqolApi()
    if mode == "speech":
        api.create(mode="speech", use_lattice_model=True)
    else:
        api.create(mode="audio")
    return api


def visqol_available() -> str:
    """"" when ViSQOL (speech mode with its lattice mapper) can run, else why not."""
    try:
        _visqol_api("speech")
    except ImportError as e:
        return f"visqol-python[lattice] is not installed ({e})"
    return ""


def visqol(ref: np.ndarray, deg: np.ndarray, sample_rate: int, mode: str = "speech") -> float:
    """ViSQOL MOS-LQO (1 .. 5): mode "speech" (16 kHz, lattice mapper) or "audio" (48 kHz)."""
    ref, deg = _check_pair(ref, deg)
    if mode not in VISQOL_RATES:
        raise ValueError(f"unknown ViSQOL mode {mode!r}; use 'speech' or 'audio'")
    rate = VISQOL_RATES[mode]
    ref = resample(ref, sample_rate, rate)
    deg = resample(deg, sample_rate, rate)
    return float(_visqol_api(mode).measure_from_arrays(ref, deg, sample_rate=rate).moslqo)


def audio_metrics(
    ref: np.ndarray, deg: np.ndarray, sample_rate: int, with_visqol: bool = False
) -> AudioMetrics:
    """PESQ-WB, STOI, log-mel distance, SI-SDR and (with_visqol) ViSQOL speech mode."""
    return AudioMetrics(
        pesq=pesq_wb(ref, deg, sample_rate),
        stoi=stoi(ref, deg, sample_rate),
        mel_distance=log_mel_distance(ref, deg, sample_rate),
        si_sdr=si_sdr(ref, deg),
        visqol=visqol(ref, deg, sample_rate, "speech") if with_visqol else math.nan,
    )
