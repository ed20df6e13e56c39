"""tokc-audio-v1's codec on a tiny packed model: round trips, rates, streaming, stereo and other
sample rates, segment seams, determinism and bad input."""

import dataclasses
import io

import numpy as np
import pytest

from tokc import format as fmt
from tokc.compress.audio import (
    LEARNED_POSTFILTER,
    LOW_BAND_BOOST,
    SEGMENT,
    SHAPE_TAG,
    SIGN_TAG,
    TAG,
    AudioCodec,
    AudioWeights,
    decoder_params,
)
from tokc.compress.base import CodecError, Sound
from tokc.dsp import LearnedPostfilter, PitchPostfilter, pitch_postfilter


def snr_db(ref, out):
    ref, out = np.asarray(ref, np.float64), np.asarray(out, np.float64)
    return 10 * np.log10(np.sum(ref**2) / max(np.sum((ref - out) ** 2), 1e-20))


def tone(seconds, rate=16000, channels=1, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.3 * np.sin(2 * np.pi * 2 * t))
    return np.repeat(x[:, None], channels, 1).astype(np.float32)


def test_round_trip_keeps_length_rate_and_signal(tiny_audio_codec, speech):
    res = tiny_audio_codec.compress(speech, quality=100)
    out = tiny_audio_codec.decompress(res.data)
    assert out.sample_rate == speech.sample_rate and out.samples.shape == speech.samples.shape
    assert out.samples.dtype == np.float32
    assert res.num_samples == speech.samples.shape[0] and res.kbps > 0
    assert snr_db(speech.samples, out.samples) > 12  # the fixed transform at its finest step


def test_rate_rises_with_quality(tiny_audio_codec, speech):
    sizes = [len(tiny_audio_codec.compress(speech, quality=q).data) for q in (0, 25, 50, 75, 100)]
    assert sizes == sorted(sizes) and sizes[0] < 0.7 * sizes[-1]


def test_kbps_and_size_targets_are_met(tiny_audio_codec, speech):
    top = tiny_audio_codec.compress(speech, quality=100).kbps
    low = tiny_audio_codec.compress(speech, quality=0).kbps
    for target in ((low + top) / 2, 0.9 * top):
        res = tiny_audio_codec.compress(speech, kbps=target)
        assert res.kbps <= target
        # a level that fits while the next level up (one thousandth) does not: the bytes of
        # the fill shape and signs fall as the level rises, so the file size is not monotonic
        # in the level and a fitting level may lie above one that does not fit
        up = tiny_audio_codec.compress(speech, quality=res.quality + 100 / 6000)
        assert up.kbps > target or up.quality >= 100
        assert res.kbps > 0.95 * target
    size = len(tiny_audio_codec.compress(speech, quality=50).data) + 10
    assert len(tiny_audio_codec.compress(speech, size=size).data) <= size
    with pytest.raises(CodecError, match="no quality fits"):
        tiny_audio_codec.compress(speech, size=20)
    with pytest.raises(CodecError, match="lowest rate"):
        tiny_audio_codec.compress(speech, kbps=low / 10)


def test_same_input_same_file_and_same_decode(tiny_audio_weights, speech):
    a = AudioCodec(AudioWeights(tiny_audio_weights, threads=1))
    b = AudioCodec(AudioWeights(tiny_audio_weights, threads=2))
    da, db = a.compress(speech, quality=60).data, b.compress(speech, quality=60).data
    assert da == db
    np.testing.assert_array_equal(a.decompress(da).samples, b.decompress(da).samples)


def test_streaming_decode_equals_whole_decode(tiny_audio_codec):
    x = tone(0.5)
    data = tiny_audio_codec.compress(x, sample_rate=16000, quality=80).data
    blocks = list(tiny_audio_codec.decompress_stream(io.BytesIO(data)))
    hop = tiny_audio_codec.weights.hop
    assert len(blocks) == -(-(8000 // hop + 1) // SEGMENT)  # SEGMENT frames each
    np.testing.assert_array_equal(np.concatenate(blocks), tiny_audio_codec.decompress(data).samples)


@pytest.mark.parametrize("postfilter", [False, True])
def test_truncated_file_fails_after_the_audio_it_holds(tiny_audio_codec, postfilter):
    data = tiny_audio_codec.compress(tone(0.5), sample_rate=16000, quality=80, postfilter=postfilter).data
    header, chunks = fmt.unpack(data)
    assert ("lpf" in header.rate_dict()) == postfilter and "pf" not in header.rate_dict()
    # 'seg ' (+ 'fsh ' and 'fsg ': the fill shape and signs)
    first_segment = chunks[:3] if postfilter else chunks[:1]
    assert [c.tag for c in first_segment] == ([TAG, SHAPE_TAG, SIGN_TAG] if postfilter else [TAG])
    cut = fmt.pack(header, first_segment)[:-4]  # the first segment, then no end marker
    stream = tiny_audio_codec.decompress_stream(io.BytesIO(cut))
    first = next(stream)
    hop = tiny_audio_codec.weights.hop
    # a segment less the padding frame, less what the post-filter still holds back
    lp = LearnedPostfilter(decoder_params("post-filter", LEARNED_POSTFILTER), 0.0)
    held = lp.WINDOW + lp.MAX_LAG + (lp.context + 1) * lp.HOP if postfilter else 0
    assert SEGMENT * hop - hop - held <= len(first) <= SEGMENT * hop - hop
    with pytest.raises(fmt.TokcFormatError):
        next(stream)
    with pytest.raises(fmt.TokcFormatError):
        tiny_audio_codec.decompress(cut)


def test_pitch_postfilter_streams_and_reinforces_harmonics():
    """Blocks of any size give the whole-signal output; a voiced tone in noise comes out with a
    better signal-to-noise ratio; strength 0 or an unvoiced signal passes through."""
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    clean = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.1 * np.sin(2 * np.pi * 360 * t)
    noisy = clean + 0.05 * rng.standard_normal(len(t))
    whole = pitch_postfilter(noisy, 0.5)
    for size in (777, 100, 1, 5000):  # blocks shorter than a hop too
        pf = PitchPostfilter(0.5)
        parts = [pf.push(noisy[s:s + size]) for s in range(0, len(noisy), size)] + [pf.flush()]
        np.testing.assert_allclose(np.concatenate(parts), whole, rtol=0, atol=1e-12)
    short = noisy[:300]  # shorter than the filter's delay: the same samples as in a long signal
    np.testing.assert_allclose(pitch_postfilter(short, 0.5)[:100], pitch_postfilter(noisy[:5000], 0.5)[:100],
                               rtol=0, atol=0.05)
    assert len(pitch_postfilter(short, 0.5)) == 300 and len(pitch_postfilter(noisy[:0], 0.5)) == 0
    inner = slice(1000, -1000)
    before = np.mean((noisy - clean)[inner] ** 2)
    after = np.mean((whole - clean)[inner] ** 2)
    assert after < 0.6 * before
    np.testing.assert_allclose(pitch_postfilter(noisy, 0.0), noisy, rtol=0, atol=1e-12)
    white = rng.standard_normal(16000)
    assert np.abs(pitch_postfilter(white, 0.5) - white).max() < 1e-12


def test_out_of_range_postfilter_is_a_format_error(tiny_audio_codec):
    data = tiny_audio_codec.compress(tone(0.5), sample_rate=16000, quality=80).data
    header, chunks = fmt.unpack(data)
    # what the tokens need: the level and the low band's gain (lbg)
    coded = {k: header.rate_dict()[k] for k in ("level_milli", "lbg")}
    assert coded["lbg"] == LOW_BAND_BOOST
    bad = dataclasses.replace(header, rate={**header.rate_dict(), "pf": 1001})
    with pytest.raises(fmt.TokcFormatError, match="post-filter"):
        tiny_audio_codec.decompress(fmt.pack(bad, chunks))
    bad = dataclasses.replace(header, rate={**header.rate_dict(), "nf": 4001})
    with pytest.raises(fmt.TokcFormatError, match="noise fill"):
        tiny_audio_codec.decompress(fmt.pack(bad, chunks))
    for lpf, message in ((99, "learned post-filter 99, which this version"), (-1, "post-filter -1")):
        bad = dataclasses.replace(header, rate={**header.rate_dict(), "lpf": lpf})
        with pytest.raises(fmt.TokcFormatError, match=message):
            tiny_audio_codec.decompress(fmt.pack(bad, chunks))
    bad = dataclasses.replace(header, rate={**header.rate_dict(), "pf": 300})
    with pytest.raises(fmt.TokcFormatError, match="two post-filters"):
        tiny_audio_codec.decompress(fmt.pack(bad, chunks))
    for lnf, message in ((99, "learned fill 99, which this version"), (-1, "fill -1")):
        bad = dataclasses.replace(header, rate={**coded, "lnf": lnf})
        with pytest.raises(fmt.TokcFormatError, match=message):
            tiny_audio_codec.decompress(fmt.pack(bad, chunks))
    bad = dataclasses.replace(header, rate={**coded, "lnf": 1, "nf": 1000})
    with pytest.raises(fmt.TokcFormatError, match="two noise fills"):
        tiny_audio_codec.decompress(fmt.pack(bad, chunks))
    unsigned_rate = {k: v for k, v in header.rate_dict().items() if k != "fsg"}
    for rate, message in (({**header.rate_dict(), "lbg": -1}, "low band gain out of range"),
                          ({**header.rate_dict(), "lbg": 8193}, "low band gain out of range"),
                          ({**header.rate_dict(), "fsh": 2}, "fill shape 2, which this version"),
                          ({**header.rate_dict(), "lnf": 0}, "fill shape without the learned fill"),
                          ({**header.rate_dict(), "fsg": 2}, "fill signs 2, which this version"),
                          ({k: v for k, v in header.rate_dict().items() if k != "fsh"},
                           "fill signs without the fill shape")):
        bad = dataclasses.replace(header, rate=rate)
        with pytest.raises(fmt.TokcFormatError, match=message):
            tiny_audio_codec.decompress(fmt.pack(bad, chunks))
    segs = [c for c in chunks if c.tag == TAG]  # the file less its fill shape and sign chunks
    shaped = [c for c in chunks if c.tag != SIGN_TAG]
    assert len(segs) < len(shaped) < len(chunks) and header.rate_dict()["fsh"] == header.rate_dict()["fsg"] == 1
    with pytest.raises(fmt.CorruptError, match="lacks its 'fsh ' chunk"):
        tiny_audio_codec.decompress(fmt.pack(header, segs))
    with pytest.raises(fmt.CorruptError, match="lacks its 'fsg ' chunk"):
        tiny_audio_codec.decompress(fmt.pack(header, shaped))
    signs = next(i for i, c in enumerate(chunks) if c.tag == SIGN_TAG)
    for payload, message in ((chunks[signs].payload + b"\0", "bytes where"),
                             (chunks[signs].payload[:-1], "bytes where")):
        bad_chunks = chunks[:signs] + [fmt.Chunk(SIGN_TAG, payload)] + chunks[signs + 1:]
        with pytest.raises(fmt.CorruptError, match=message):
            tiny_audio_codec.decompress(fmt.pack(header, bad_chunks))
    unsigned = dataclasses.replace(header, rate=unsigned_rate)
    assert not np.array_equal(tiny_audio_codec.decompress(fmt.pack(unsigned, shaped)).samples,
                              tiny_audio_codec.decompress(data).samples)
    unshaped = dataclasses.replace(header, rate={k: v for k, v in unsigned_rate.items() if k != "fsh"})
    assert not np.array_equal(tiny_audio_codec.decompress(fmt.pack(unshaped, segs)).samples,
                              tiny_audio_codec.decompress(fmt.pack(unsigned, shaped)).samples)
    # without the two parameters a file decodes as before they existed: no post-filter, the
    # weights' fill; nf scales only the noise (a file with nf 0 has no noise fill at all)
    chunks = segs
    plain = dataclasses.replace(header, rate={**coded})
    no_fill = dataclasses.replace(plain, rate={**plain.rate_dict(), "nf": 0})
    a = tiny_audio_codec.decompress(fmt.pack(plain, chunks)).samples
    b = tiny_audio_codec.decompress(fmt.pack(no_fill, chunks)).samples
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_no_seam_at_segment_boundaries(tiny_audio_codec):
    x = tone(1.0)
    out = tiny_audio_codec.decompress(tiny_audio_codec.compress(x, sample_rate=16000, quality=100).data).samples
    err = np.abs(out[:, 0] - x[:, 0])
    hop = tiny_audio_codec.weights.hop
    boundaries = [k * SEGMENT * hop - hop for k in (1, 2, 3)]  # where a segment starts to overlap-add
    around = max(err[b - 2 * hop : b + 2 * hop].max() for b in boundaries)
    elsewhere = np.percentile([err[i : i + 4 * hop].max() for i in range(2000, 14000, 4 * hop)], 90)
    assert around <= 1.5 * elsewhere


def test_stereo_and_other_rates(tiny_audio_codec):
    x = tone(2.5, rate=44100, channels=2)
    x[:, 1] *= 0.25  # a louder left
    res = tiny_audio_codec.compress(x, sample_rate=44100, quality=100)
    out = tiny_audio_codec.decompress(res.data)
    assert out.sample_rate == 44100 and out.samples.shape == x.shape
    assert snr_db(x[:, 0], out.samples[:, 0]) > 12 and snr_db(x[:, 1], out.samples[:, 1]) > 6
    mono = tiny_audio_codec.compress(x[:, :1], sample_rate=44100, quality=100)
    assert len(mono.data) < len(res.data)


@pytest.mark.parametrize("n", [0, 1, 319, 320, 321])
def test_tiny_and_empty_inputs(tiny_audio_codec, n):
    x = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
    out = tiny_audio_codec.decompress(tiny_audio_codec.compress(x, sample_rate=16000).data)
    assert out.samples.shape == (n, 1)


def test_integer_samples_are_scaled(tiny_audio_codec):
    x = tone(1.0)
    a = tiny_audio_codec.compress(x, sample_rate=16000, quality=90).data
    b = tiny_audio_codec.compress(np.round(x * 32768).astype(np.int16), sample_rate=16000, quality=90).data
    assert abs(len(a) - len(b)) < len(a) * 0.05


@pytest.mark.parametrize("bad, message", [
    (np.full(1000, np.nan), "NaN"),
    (np.zeros((1000, 3)), "mono or stereo"),
    (np.zeros((2, 3, 4)), "shape"),
    (np.array(["a"] * 10), "integer or float"),
])
def test_bad_input_is_a_clear_error(tiny_audio_codec, bad, message):
    with pytest.raises(CodecError, match=message):
        tiny_audio_codec.compress(bad, sample_rate=16000)


def test_array_needs_a_sample_rate(tiny_audio_codec):
    with pytest.raises(CodecError, match="sample_rate"):
        tiny_audio_codec.compress(np.zeros(100))
    with pytest.raises(CodecError, match="sample rate"):
        tiny_audio_codec.compress(np.zeros(100), sample_rate=0)


def test_corrupt_and_foreign_files_are_refused(tiny_audio_codec, tiny_audio_weights, tmp_path, speech):
    data = bytearray(tiny_audio_codec.compress(speech, quality=50).data)
    data[len(data) // 2] ^= 0x40
    with pytest.raises(fmt.TokcFormatError):
        tiny_audio_codec.decompress(bytes(data))
    header, chunks = fmt.unpack(tiny_audio_codec.compress(speech, quality=50).data)
    other = fmt.Header(**{**header.__dict__, "weights_digest": bytes(8)})
    with pytest.raises(fmt.WeightsMismatchError):
        tiny_audio_codec.decompress(fmt.pack(other, chunks))
    bad_level = fmt.Header(**{**header.__dict__, "rate": (("level_milli", 99000),)})
    with pytest.raises(fmt.TokcFormatError, match="level"):
        tiny_audio_codec.decompress(fmt.pack(bad_level, chunks))
    extra = fmt.pack(header, [*chunks, chunks[-1]])
    with pytest.raises(fmt.CorruptError, match="after the last segment"):
        tiny_audio_codec.decompress(extra)


def test_garbage_segments_fail_cleanly(tiny_audio_codec, speech):
    header, chunks = fmt.unpack(tiny_audio_codec.compress(speech, quality=50).data)
    rng = np.random.default_rng(0)
    for payload in (b"\x01", rng.bytes(3), rng.bytes(64), b"\xff\xff\xff\xff" + rng.bytes(8)):
        with pytest.raises(fmt.TokcFormatError):
            tiny_audio_codec.decompress(fmt.pack(header, [fmt.Chunk("seg ", payload), *chunks[1:]]))


def test_an_empty_segment_is_digital_silence(tiny_audio_codec, speech):
    """An empty 'seg ' chunk codes a segment whose coefficients are all zero, and decodes so."""
    x = speech.samples[:, 0]
    gap = np.concatenate([np.zeros(5 * 16000, np.float32), x[:16000]])
    data = tiny_audio_codec.compress(gap, sample_rate=16000, quality=50).data
    segs = [c for c in fmt.unpack(data)[1] if c.tag == TAG]  # (beside them: fill shape and signs)
    assert segs[0].payload == b"" and segs[-1].payload
    out = tiny_audio_codec.decompress(data).samples[:, 0]
    assert not out[: 4 * 16000].any() and out.shape == gap.shape


def test_sound_paths_read_through_soundfile(tiny_audio_codec, tmp_path):
    import soundfile

    x = tone(1.2, rate=22050, channels=2)
    path = tmp_path / "t.flac"
    soundfile.write(path, x, 22050)
    out = tiny_audio_codec.decompress(tiny_audio_codec.compress(path, quality=90).data)
    assert out.sample_rate == 22050 and out.samples.shape == x.shape
    (tmp_path / "junk.wav").write_bytes(b"RIFF....junk")
    with pytest.raises(CodecError, match="cannot read audio"):
        tiny_audio_codec.compress(tmp_path / "junk.wav")


def test_numpy_h_a_matches_the_model(tiny_audio_weights):
    torch = pytest.importorskip("torch")
    from tokc.models.audio import AudioConfig, AudioModel

    w = AudioWeights(tiny_audio_weights)
    model = AudioModel(AudioConfig(**w.config))
    model.h_a.load_state_dict({k: torch.from_numpy(v) for k, v in w.float_state("h_a").items()})
    y = np.random.default_rng(0).standard_normal((36, 40))
    want = model.h_a(torch.from_numpy(y).float()[None, :, None])[0, :, 0].detach().numpy()
    np.testing.assert_allclose(w.h_a(y), want, atol=1e-3)


def test_sound_is_the_decoded_type():
    s = Sound(np.zeros((16000, 2), np.float32), 16000)
    assert s.channels == 2 and s.seconds == 1.0


def test_fill_sign_chunk_must_hold_its_bits_exactly(tiny_audio_codec):
    mask = np.zeros((4, 3), bool)
    mask[0, :] = True  # three signs: one byte, five unused bits
    np.testing.assert_array_equal(tiny_audio_codec.read_signs(bytes([0b10100000]), mask), [True, False, True])
    for payload, message in ((bytes([0b10100100]), "bits past its signs"), (b"", "0 bytes where 1"),
                             (bytes(2), "2 bytes where 1")):
        with pytest.raises(fmt.CorruptError, match=message):
            tiny_audio_codec.read_signs(payload, mask)
