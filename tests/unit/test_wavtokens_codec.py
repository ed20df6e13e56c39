"""wavtokenizer-v1: WavTokenizer tokens, entropy coded in segments, on the tiny parity fixture."""

import io
from pathlib import Path

import numpy as np
import pytest

from tokc import format as fmt
from tokc.compress.base import CodecUsageError

pytest.importorskip("torch")

FIXTURE = Path(__file__).resolve().parents[3] / "shared/fixtures/wavtokenizer"
if not FIXTURE.exists():
    pytest.skip("the WavTokenizer fixture (../shared/fixtures/wavtokenizer) is not here",
                allow_module_level=True)

from tokc.compress import registry, wavtokens  # noqa: E402


@pytest.fixture(scope="module")
def codec():
    c = wavtokens.open_codec(checkpoint=FIXTURE)
    c.segment, c.context = 40, 10  # short segments: several per test clip
    return c


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)


def test_tokens_match_the_fixture(codec):
    io_ = np.load(FIXTURE / "io.npz")
    np.testing.assert_array_equal(codec.encode(io_["audio"][0]), io_["codes"][0, 0])


def test_entropy_coding_roundtrip_and_skew_pays():
    rng = np.random.default_rng(0)
    skewed = np.minimum(rng.geometric(0.3, 750) - 1, 4095)
    data = wavtokens.encode_tokens(skewed, 4096)
    assert data[0] == wavtokens.ADAPTIVE
    np.testing.assert_array_equal(wavtokens.decode_tokens(data, 750, 4096), skewed)
    assert len(data) * 8 / 750 < 6  # its entropy is ~2.9 bits; raw would be 12
    uniform = rng.integers(0, 4096, 750)
    data = wavtokens.encode_tokens(uniform, 4096)
    assert data[0] == wavtokens.RAW and len(data) == 1 + 750 * 12 // 8
    np.testing.assert_array_equal(wavtokens.decode_tokens(data, 750, 4096), uniform)
    with pytest.raises(fmt.TokcFormatError):
        wavtokens.decode_tokens(b"\x07" + data[1:], 750, 4096)


def test_frequencies_are_exact_integers():
    f = wavtokens.frequencies(np.array([1, 1, 50, 3]))
    assert f.sum() == 1 << 16 and f.min() >= 1 and f.dtype == np.int64


@pytest.mark.parametrize("rate,channels", [
    (16000, 2), pytest.param(24000, 1, marks=pytest.mark.slow),
    pytest.param(44100, 1, marks=pytest.mark.slow)])
def test_roundtrip_keeps_rate_length_channels(codec, rate, channels):
    x = np.repeat(tone(1.3, rate)[:, None], channels, 1)
    res = codec.compress(x, sample_rate=rate)
    header = fmt.read_header(res.data)
    assert header.codec == "wavtokenizer-v1" and header.sample_rate == rate
    out = registry.for_header(header, checkpoint=FIXTURE)
    out.segment, out.context = codec.segment, codec.context
    sound = out.decompress(res.data)
    assert sound.sample_rate == rate and sound.samples.shape == x.shape
    # the tokens in the file are the encoder's
    _, chunks = fmt.unpack(res.data)
    seg = [wavtokens.decode_tokens(c.payload, min(40, res.num_tokens - 40 * i), codec.codebook)
           for i, c in enumerate(chunks)]
    np.testing.assert_array_equal(np.concatenate(seg), res.tokens)


def test_streams_and_no_clicks_at_seams(codec):
    x = tone(2.5, 24000)
    data = codec.compress(x, sample_rate=24000).data
    blocks = list(codec.decompress_stream(fmt.Reader(io.BytesIO(data))))
    assert len(blocks) == 5  # 188 tokens in segments of 40
    y = np.concatenate(blocks)[:, 0]
    jumps = np.abs(np.diff(y))
    seams = np.array([40 * 320 * k for k in range(1, 5)])
    at_seams = max(jumps[s - 2 : s + 2].max() for s in seams)
    assert at_seams <= jumps.max() and at_seams <= 4 * np.percentile(jumps, 99)


def test_empty_and_short_inputs(codec):
    for n in (0, 1, 100):
        res = codec.compress(np.zeros(n, np.float32), sample_rate=16000)
        assert codec.decompress(res.data).samples.shape == (n, 1)


def test_bad_input_and_files(codec):
    with pytest.raises(CodecUsageError, match="--checkpoint"):
        wavtokens.open_codec()
    with pytest.raises(Exception, match="NaN"):
        codec.compress(np.full(100, np.nan, np.float32), sample_rate=16000)
    data = codec.compress(tone(1.0, 24000), sample_rate=24000).data
    header, chunks = fmt.unpack(data)
    with pytest.raises(fmt.TokcFormatError):
        codec.decompress(fmt.pack(header, chunks[:0]))
    bad = fmt.pack(header, [fmt.Chunk("wtok", b"\x01\x08\x00\x00\x00xx")])
    with pytest.raises(fmt.TokcFormatError):
        codec.decompress(bad)
