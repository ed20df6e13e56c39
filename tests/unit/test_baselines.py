from pathlib import Path

import numpy as np
import pytest

from tokc.baselines import (
    audio_codec,
    bisect_to_size,
    compress_audio,
    compress_audio_to_size,
    compress_image,
    compress_image_to_size,
    image_codec,
    image_codec_names,
    register_image_codec,
)
from tokc.baselines import image as image_module
from tokc.metrics import psnr, si_sdr

KODAK = Path(__file__).resolve().parents[2].parent / "shared/data/images/kodak"
IMAGE_CODECS = ("jpeg", "webp", "avif", "jxl")


def synthetic_image(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """Smooth colour fields, a sharp rectangle and mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack(
        [128 + 90 * np.sin(6 * x + 2 * y), 128 + 90 * np.cos(5 * y - 3 * x * y), 60 + 120 * x],
        axis=-1,
    )
    img[h // 4 : h // 2, w // 3 : 2 * w // 3] = (230, 40, 40)
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def speechlike(rate: int = 16000, seconds: float = 2.0) -> np.ndarray:
    """Harmonics on a gliding pitch, chopped into syllables, over a faint noise floor."""
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.7 * t)) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 30)) * np.sqrt(
        np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None)
    )
    x = 0.3 * x / np.abs(x).max() + 0.003 * np.random.default_rng(0).standard_normal(t.size)
    return x.astype(np.float32)


@pytest.fixture
def scratch_codecs():
    """Names registered by a test are removed afterwards."""
    before = set(image_codec_names())
    yield
    for name in set(image_codec_names()) - before:
        del image_module._CODECS[name]


@pytest.mark.parametrize("codec", IMAGE_CODECS)
def test_image_codec_round_trip_and_rate_grows_with_quality(codec):
    img = synthetic_image()
    low, high = compress_image(codec, img, 20), compress_image(codec, img, 80)
    for out in (low, high):
        assert out.decoded.shape == img.shape and out.decoded.dtype == np.uint8
        assert out.bpp == pytest.approx(8 * len(out.data) / (96 * 128))
        assert out.encode_s > 0 and out.decode_s is not None
    assert low.nbytes < high.nbytes
    assert 20 < psnr(img, low.decoded) < psnr(img, high.decoded) < 60


def test_webp_is_lossy():
    # imagecodecs' webp_encode is lossless unless told otherwise
    img = synthetic_image()
    out = compress_image("webp", img, 50)
    assert not np.array_equal(out.decoded, img)
    assert out.bpp < 3


@pytest.mark.skipif(not KODAK.is_dir(), reason="Kodak set not present")
def test_jpeg_on_kodak_crop_is_in_the_expected_range():
    from PIL import Image

    img = np.asarray(Image.open(KODAK / "kodim23.png").convert("RGB"))[128:384, 256:512]
    out = compress_image("jpeg", img, 50)
    assert 0.3 < out.bpp < 1.5
    assert 30 < psnr(img, out.decoded) < 40


@pytest.mark.parametrize("codec", IMAGE_CODECS)
def test_budget_fits_and_is_the_best_quality_that_fits(codec):
    img = synthetic_image()
    budget = compress_image(codec, img, 50).nbytes
    out = compress_image_to_size(codec, img, budget)
    assert out.nbytes <= budget
    assert out.quality >= 50  # quality 50 itself fits
    grid = image_codec(codec).budget_qualities
    if out.quality < grid[-1]:
        nxt = grid[grid.index(out.quality) + 1]
        assert compress_image(codec, img, nxt).nbytes > budget


def test_budget_too_small_raises():
    with pytest.raises(ValueError, match="cannot fit in 10 bytes"):
        compress_image_to_size("jpeg", synthetic_image(), 10)


def test_bisect_to_size_uses_few_encodes():
    calls = []

    class Out:
        def __init__(self, q):
            calls.append(q)
            self.data = b"x" * int(q)

    best = bisect_to_size([float(q) for q in range(1, 1001)], Out, 637)
    assert len(best.data) == 637
    assert len(calls) <= 11


def test_register_tuple_codec_and_lookup_errors(scratch_codecs):
    def posterize(img, quality):
        step = int(256 // (1 + quality))
        out = (img // step * step).astype(np.uint8)
        return bytes(out[::2, ::2].tobytes()), out

    register_image_codec("posterize", posterize, qualities=(1, 3, 7, 15))
    img = synthetic_image()
    out = compress_image("posterize", img, 3)
    assert out.decode_s is None  # timed inside encode
    assert out.nbytes == img.size // 4
    assert "posterize" in image_codec_names()
    with pytest.raises(ValueError, match="already registered"):
        register_image_codec("posterize", posterize)
    with pytest.raises(ValueError, match="unknown image codec 'nope'.*jpeg"):
        compress_image("nope", img, 3)


def test_bad_codecs_are_reported(scratch_codecs):
    img = synthetic_image()
    register_image_codec("bytes-only", lambda im, q: b"abc")
    with pytest.raises(TypeError, match="no decode"):
        compress_image("bytes-only", img, 1)
    register_image_codec("cropper", lambda im, q: (b"abc", im[1:]))
    with pytest.raises(ValueError, match="decoded"):
        compress_image("cropper", img, 1)
    with pytest.raises(ValueError, match="uint8 H x W x 3"):
        compress_image("jpeg", img.astype(np.float32), 50)


@pytest.mark.parametrize("codec", ["opus", "mp3"])
def test_audio_round_trip_is_aligned_and_rate_grows(codec):
    rate = 16000
    x = speechlike(rate)
    low, high = compress_audio(codec, x, rate, 16), compress_audio(codec, x, rate, 64)
    for out in (low, high):
        assert out.decoded.shape == x.shape and out.decoded.dtype == np.float32
        assert out.sample_rate == rate
    assert low.nbytes < high.nbytes
    # a delay of even a few samples would wreck SI-SDR on this signal
    assert si_sdr(x, high.decoded) > 15
    assert si_sdr(x, low.decoded) < si_sdr(x, high.decoded)


def test_mp3_is_cbr_at_the_asked_rate():
    x = speechlike(16000, 3.0)
    out = compress_audio("mp3", x, 16000, 32)
    assert out.actual_kbps == pytest.approx(32, rel=0.1)


def test_audio_at_44k_and_stereo():
    rate = 44100
    mono = speechlike(rate, 1.0)
    stereo = np.stack([mono, 0.5 * mono], axis=1)
    for codec in ("opus", "mp3"):
        out = compress_audio(codec, stereo, rate, 96)
        assert out.decoded.shape == stereo.shape
        assert si_sdr(stereo[:, 1], out.decoded[:, 1]) > 10


@pytest.mark.parametrize("codec", ["opus", "mp3"])
def test_audio_budget_fits(codec):
    x = speechlike(16000)
    budget = 6000
    out = compress_audio_to_size(codec, x, 16000, budget)
    assert out.nbytes <= budget
    choices = audio_codec(codec).bitrate_choices(16000)
    if out.kbps < choices[-1]:
        nxt = choices[choices.index(out.kbps) + 1]
        assert compress_audio(codec, x, 16000, nxt).nbytes > budget


def test_mp3_bitrate_choices_follow_the_mpeg_version():
    choices = audio_codec("mp3").bitrate_choices
    assert choices(16000)[0] == 8 and choices(16000)[-1] == 160
    assert choices(44100)[0] == 32 and choices(44100)[-1] == 320
