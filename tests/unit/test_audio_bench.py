"""The audio RD benchmark's parts (issue 15): tokc in the audio registry, Opus voip with its
rate from the packets, points below a codec's lowest rate skipped, BD-rates over rate ranges
(pchip), the bar, index.tsv splits, ViSQOL."""

import math

import numpy as np
import pytest

from tokc.baselines.audio import (
    Encoded,
    Unreachable,
    _av_encode,
    audio_codec,
    compress_audio,
)
from tokc.bench.rd import (
    AUDIO_BD_RANGES,
    RDPoint,
    RDResult,
    _mean_points,
    bar_checks,
    range_bd,
    split_files,
)
from tokc.metrics.audio import audio_metrics
from tokc.metrics.bdrate import bd_rate


def voice(rate=16000, seconds=1.0, seed=0):
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.7 * t)) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 30)) * np.sqrt(
        np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None)
    )
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * x / np.abs(x).max() + 0.003 * noise).astype(np.float32)


# --- baselines ---------------------------------------------------------------------------------


def test_opus_voip_rate_counts_the_packets_not_the_ogg_file():
    x = voice(seconds=2.0)
    out = compress_audio("opus-voip", x, 16000, 12)
    assert out.decoded.shape == x.shape
    assert 0 < out.counted_bytes < out.nbytes  # the Ogg pages and headers are not counted
    assert out.counted_kbps < out.actual_kbps
    assert out.counted_kbps == pytest.approx(12, rel=0.35)
    assert audio_codec("opus-voip").bitrates == (6, 8, 10, 12, 16, 24)
    assert "voip" in audio_codec("opus-voip").settings
    assert "packets" in audio_codec("opus-voip").settings


def test_av_encoder_options_reach_libopus():
    x = voice()
    assert isinstance(_av_encode(x, 16000, "libopus", "ogg", 12, 16000, {"application": "voip"}),
                      Encoded)
    with pytest.raises(Exception, match="libopus"):  # a bad option is refused, not ignored
        _av_encode(x, 16000, "libopus", "ogg", 12, 16000, {"application": "bogus"})


@pytest.fixture
def tiny_tokc(tiny_audio_weights):
    from tokc.baselines.learned import register_tokc_audio

    return register_tokc_audio(tiny_audio_weights, name="tokc-tiny", replace=True, digest=True)


def test_tokc_audio_round_trip_and_below_lowest_rate_is_unreachable(tiny_tokc):
    x = voice()
    out = compress_audio("tokc-tiny", x, 16000, 256)
    assert out.decoded.shape == x.shape and out.decoded.dtype == np.float32
    assert out.counted_bytes is None and out.counted_kbps == out.actual_kbps <= 256
    with pytest.raises(Unreachable, match="lowest rate"):
        compress_audio("tokc-tiny", x, 16000, 1)
    assert "sha256" in tiny_tokc.settings and "whole .tokc file" in tiny_tokc.settings


def test_tokc_is_registered_with_the_issue_grid_and_env_weights(monkeypatch, tmp_path):
    from tokc.baselines.learned import AUDIO_WEIGHTS_ENV, audio_weights_path

    assert audio_codec("tokc").bitrates == (4, 6, 8, 10, 12, 16, 24)
    assert 4 in audio_codec("tokc").bitrate_choices(16000)
    monkeypatch.setenv(AUDIO_WEIGHTS_ENV, str(tmp_path / "cand.safetensors"))
    assert audio_weights_path() == (tmp_path / "cand.safetensors").resolve()
    assert audio_weights_path(tmp_path / "x.safetensors").name == "x.safetensors"


# --- RD pieces -----------------------------------------------------------------------------------


def point(codec, setting, rate, pesq, item="mean", seconds=2.0, enc=0.05, dec=0.02):
    metrics = {"pesq": pesq, "stoi": 0.8 + pesq / 50, "visqol": pesq, "mel_distance": 1 / pesq,
               "si_sdr": pesq}
    return RDPoint(codec, setting, item, rate * 125 * seconds, rate, metrics, enc, dec, seconds)


def result(means, codecs=("tokc", "opus-voip")):
    return RDResult("audio", "kbps", "x", ("a",), codecs, {}, {}, (), tuple(means), 0.0,
                    profile="speech")


# Opus-like anchor: narrowband up to 8 kbps, then a jump in quality at 10 kbps
OPUS = [(6, 5.3, 2.06), (8, 7.0, 2.61), (10, 9.3, 3.28), (12, 11.1, 3.70), (16, 15.4, 4.03),
        (24, 22.8, 4.31)]


def test_range_bd_uses_the_anchor_points_of_each_range_with_pchip():
    anchor = [point("opus-voip", s, r, q) for s, r, q in OPUS]
    half = [point("tokc", s, r / 2, q) for s, r, q in OPUS]  # same qualities at half the rate
    entries = range_bd(result(anchor + half))
    assert {(e.range, e.metric) for e in entries} == {
        (r.label, m) for r in AUDIO_BD_RANGES for m in r.metrics
    }
    for e in entries:
        assert e.bd_rate == pytest.approx(-50.0, abs=1), e  # the end slopes differ a little
        assert e.reference == "opus-voip" and e.note == ""
    wide = [e for e in entries if e.range.startswith("Opus wideband")]
    assert wide[0].anchor_settings == (10, 12, 16)  # three points: pchip, not the cubic fit
    assert wide[0].quality == pytest.approx((3.28, 4.03))


def test_bar_checks_bd_rates_and_single_thread_speed():
    anchor = [point("opus-voip", s, r, q) for s, r, q in OPUS]
    # better than Opus where Opus is narrowband, worse where it is wideband
    tokc = [point("tokc", s, r * (0.6 if s <= 8 else 1.3), q, enc=0.1, dec=0.05)
            for s, r, q in OPUS]
    res = result(anchor + tokc)
    bar = bar_checks(res, range_bd(res))
    by = {b.what: b for b in bar}
    wide = by["BD-rate pesq vs opus-voip, Opus wideband 10-16 kbps < 0 %"]
    assert wide.passed is False and wide.value == pytest.approx(30.0, abs=3)
    assert by["decode > 20x real time, 1 thread (slowest point)"].value == pytest.approx(40.0)
    assert by["encode > 10x real time, 1 thread (slowest point)"].passed is True


def test_pchip_bd_rate_needs_two_points_cubic_four():
    rates, q = [9.3, 11.1, 15.4], [3.28, 3.70, 4.03]
    assert bd_rate(rates, q, [r * 0.8 for r in rates], q, "pchip") == pytest.approx(-20.0)
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate(rates, q, rates, q, "cubic")


def test_means_drop_grid_points_missing_on_some_clips():
    pts = [point("tokc", 4, 4.1, 2.0, item="a"), point("tokc", 8, 8.0, 3.0, item="a"),
           point("tokc", 8, 7.8, 3.2, item="b")]
    means = _mean_points(pts, "audio", complete=2)
    assert [(p.setting, p.item) for p in means] == [(8, "mean")]
    assert means[0].rate == pytest.approx(7.9) and means[0].duration_s == 2.0
    assert means[0].encode_xrt == pytest.approx(40.0) and means[0].decode_xrt == pytest.approx(100)


def test_split_files_reads_index_tsv(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.tsv").write_text(
        "path\tspeaker\tsplit\nsub/a.flac\ts1\ttrain\nsub/b.flac\ts2\tval\nc.flac\ts3\tval\n"
    )
    assert split_files(tmp_path, "val") == [tmp_path / "sub/b.flac", tmp_path / "c.flac"]
    assert split_files(tmp_path, "val", limit=1) == [tmp_path / "sub/b.flac"]
    with pytest.raises(ValueError, match="splits: train, val"):
        split_files(tmp_path, "test")
    with pytest.raises(ValueError, match="index.tsv"):
        split_files(tmp_path / "sub", "val")


# --- ViSQOL --------------------------------------------------------------------------------------


def test_visqol_speech_orders_distortions():
    pytest.importorskip("visqol")
    from tokc.metrics.audio import visqol

    x = np.tile(voice(seconds=1.0), 2)
    noisy = x + 0.02 * np.random.default_rng(1).standard_normal(x.size)
    clean = visqol(x, x, 16000, "speech")
    assert 3.5 < clean <= 5.0
    assert 1.0 <= visqol(x, noisy, 16000, "speech") < clean - 1
    with pytest.raises(ValueError, match="mode"):
        visqol(x, x, 16000, "music")
    assert math.isnan(audio_metrics(x, x, 16000).visqol)  # only when asked for
