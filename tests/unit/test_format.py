"""The .tokc container: round trips, truncation, corruption, limits, streaming."""

import hashlib
import io
import string
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokc import format as fmt
from tokc.format import (
    MAGIC,
    ChecksumError,
    Chunk,
    CorruptError,
    Header,
    LimitError,
    Reader,
    TokcFormatError,
    TruncatedError,
    UnsupportedVersionError,
    WeightsMismatchError,
    Writer,
    check_weights,
    digest_weights,
    pack,
    read_header,
    unpack,
)

DIGEST = bytes.fromhex("a1b2c3d4e5f60718")
IMAGE = Header(
    "tokc-image-v1", DIGEST, "image", width=640, height=480, channels=3,
    rate=(("q", 75), ("level_milli", 2500)),
)
AUDIO = Header(
    "tokc-audio-v1", DIGEST, "audio", sample_rate=48000, channels=2, num_samples=480000,
    rate=(("kbps", 6),),
)


def sample_file(sizes=(300, 200, 400)) -> bytes:
    chunks = [Chunk(f"TOK{i}", bytes((7 * i + j) % 256 for j in range(n)))
              for i, n in enumerate(sizes)]
    return pack(IMAGE, chunks)


# Written from docs/FORMAT.md, independently of the module, to craft files it would not write.
def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def raw_file(body: bytes, version: int = 1) -> bytes:
    head = MAGIC + bytes([version]) + uvarint(len(body)) + body
    return head + zlib.crc32(head).to_bytes(4, "little")


def image_body(width: int, height: int, channels: int = 3) -> bytes:
    codec = b"tokc-image-v1"
    dims = uvarint(width) + uvarint(height) + uvarint(channels)
    return uvarint(len(codec)) + codec + DIGEST + b"\x01" + dims + b"\x00"


# --- round trips ---


def ids(max_size):
    return st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=max_size)


@st.composite
def headers(draw):
    rate = draw(st.lists(st.tuples(ids(fmt.MAX_RATE_NAME_BYTES),
                                   st.integers(-(1 << 63), (1 << 63) - 1)),
                         max_size=fmt.MAX_RATE_PARAMS, unique_by=lambda p: p[0]))
    common = {"codec": draw(ids(fmt.MAX_CODEC_BYTES)),
              "weights_digest": draw(st.binary(min_size=8, max_size=8)), "rate": tuple(rate)}
    if draw(st.booleans()):
        w = draw(st.integers(1, fmt.MAX_SIDE))
        h = draw(st.integers(1, min(fmt.MAX_SIDE, fmt.MAX_PIXELS // w)))
        c = draw(st.integers(1, fmt.MAX_IMAGE_CHANNELS))
        return Header(modality="image", width=w, height=h, channels=c, **common)
    return Header(modality="audio", sample_rate=draw(st.integers(1, fmt.MAX_SAMPLE_RATE)),
                  channels=draw(st.integers(1, fmt.MAX_AUDIO_CHANNELS)),
                  num_samples=draw(st.integers(0, fmt.MAX_SAMPLES)), **common)


tags = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=4, max_size=4)
chunk_lists = st.lists(st.builds(Chunk, tags, st.binary(max_size=300)), max_size=6)


@settings(max_examples=200, deadline=None)
@given(headers(), chunk_lists)
def test_round_trip(header, chunks):
    data = pack(header, chunks)
    assert unpack(data) == (header, chunks)
    assert read_header(data) == header
    reader = Reader(io.BytesIO(data))
    assert reader.header == header
    assert list(reader) == chunks
    assert reader.bytes_read == len(data)
    out = io.BytesIO()
    with Writer(out, header) as w:
        for c in chunks:
            w.write_chunk(c.tag, c.payload)
    assert out.getvalue() == data
    assert w.bytes_written == len(data)


def test_typical_image_header_costs_tens_of_bytes():
    data = pack(IMAGE, [Chunk("TOKS", bytes(300))])
    assert data[:6] == MAGIC + b"\x01" + bytes([47])  # body of 47 bytes
    assert len(data) - 300 == 71  # header 57, chunk framing 10, end marker 4
    assert data.endswith(b"\x00\x00\x00\x00")
    only_q = Header("tokc-image-v1", DIGEST, "image", 640, 480, 3, rate={"q": 75})
    assert len(pack(only_q, [Chunk("TOKS", bytes(300))])) - 300 == 57  # header 43


def test_header_normalises_rate_and_ints():
    h = Header("c", DIGEST, "image", 2, 3, 1, rate={"q": 75, "level_milli": -2500})
    assert h.rate == (("q", 75), ("level_milli", -2500))
    assert h.rate_dict() == {"q": 75, "level_milli": -2500}
    assert Header("c", bytearray(DIGEST), "image", 2, 3, 1, rate=[["q", 75]]) == Header(
        "c", DIGEST, "image", 2, 3, 1, rate=(("q", 75),))


# --- truncation and corruption ---


def test_every_truncation_raises_truncated_error():
    data = sample_file()
    for n in range(len(data)):
        with pytest.raises(TruncatedError):
            unpack(data[:n])


def test_truncation_message_says_where():
    data = sample_file()
    with pytest.raises(TruncatedError, match=r"truncated at byte 100 in chunk #0 'TOK0': \d+ more"):
        unpack(data[:100])
    with pytest.raises(TruncatedError, match="chunk #3 tag"):
        unpack(data[:-4])  # only the end marker is missing


def test_every_truncation_of_the_header_raises_in_read_header():
    data = sample_file()
    header_size = len(pack(IMAGE, [])) - 4
    for n in range(header_size):
        with pytest.raises(TruncatedError):
            read_header(io.BytesIO(data[:n]))
    assert read_header(io.BytesIO(data[:header_size])) == IMAGE


def test_every_single_byte_corruption_raises():
    data = sample_file(sizes=(60, 0, 90))
    for pos in range(len(data)):
        for xor in (0x01, 0x80, 0xFF, 0x5A):
            bad = bytearray(data)
            bad[pos] ^= xor
            with pytest.raises(TokcFormatError):
                unpack(bytes(bad))


def test_crc_mismatches_name_the_part():
    data = bytearray(sample_file())
    data[10] ^= 1
    with pytest.raises(ChecksumError, match="header CRC mismatch"):
        unpack(bytes(data))
    data = bytearray(sample_file())
    data[-20] ^= 1  # in the last chunk's payload
    with pytest.raises(ChecksumError, match="chunk #2 'TOK2' CRC mismatch"):
        unpack(bytes(data))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200),
                 st.binary(max_size=200).map(lambda b: MAGIC + b"\x01" + b)))
def test_arbitrary_bytes_only_raise_format_errors(data):
    try:
        unpack(data)
    except TokcFormatError:
        pass


def test_not_a_tokc_file():
    with pytest.raises(CorruptError, match=r"not a \.tokc file"):
        unpack(b"\x89PNG\r\n\x1a\n" + bytes(40))


def test_data_after_the_end_marker_is_refused():
    with pytest.raises(CorruptError, match="after the end marker"):
        unpack(sample_file() + b"\x00")


def test_over_long_varint_is_refused():
    head = pack(IMAGE, [])[:-4]
    with pytest.raises(CorruptError, match="over-long varint"):
        unpack(head + b"TOKS" + b"\x81\x00" + b"x" + bytes(4) + bytes(4))


def test_unknown_modality_code():
    body = bytearray(image_body(2, 2))
    body[14 + 8] = 9
    with pytest.raises(CorruptError, match="unknown modality code 9"):
        unpack(raw_file(bytes(body)) + bytes(4))


# --- versions and weights ---


def test_unsupported_version():
    data = bytearray(sample_file())
    data[4] = 3
    with pytest.raises(UnsupportedVersionError,
                       match=r"^format version 3 is newer than this tokc \(reads up to 1\)$"):
        unpack(bytes(data))
    data[4] = 0
    with pytest.raises(CorruptError, match="version 0"):
        unpack(bytes(data))


def test_weights_mismatch(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"some weights")
    sha = hashlib.sha256(b"some weights").digest()
    assert digest_weights(weights) == sha[:8]
    header = Header("tokc-image-v1", sha[:8], "image", 4, 4, 3)
    check_weights(header, sha[:8])
    check_weights(header, sha)  # a full sha256 works too
    with pytest.raises(WeightsMismatchError,
                       match=f"made by weights {sha[:8].hex()}, this install has {DIGEST.hex()}"):
        check_weights(header, DIGEST)
    with pytest.raises(ValueError):
        check_weights(header, b"short")


# --- limits: refused before allocating ---


def test_huge_image_in_a_tiny_file_is_refused_at_once():
    data = raw_file(image_body(10**6, 10**6)) + bytes(4)
    assert len(data) <= 45
    tracemalloc.start()
    try:
        with pytest.raises(LimitError, match="image 1000000x1000000 exceeds the limit of"):
            unpack(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


@pytest.mark.parametrize("width,height", [(65536, 1), (1, 65536), (65535, 65535)])
def test_image_limits_when_reading(width, height):
    with pytest.raises(LimitError):
        unpack(raw_file(image_body(width, height)) + bytes(4))


def test_header_length_over_the_limit():
    with pytest.raises(LimitError, match="header of 5000 bytes"):
        unpack(MAGIC + b"\x01" + uvarint(5000) + bytes(10))


def test_chunk_length_of_2_to_the_40_is_refused():
    head = pack(IMAGE, [])[:-4]
    with pytest.raises(LimitError, match=f"claims {1 << 40} bytes"):
        unpack(head + b"TOKS" + uvarint(1 << 40) + bytes(20))


@pytest.mark.parametrize("as_file", [False, True])
def test_large_claimed_chunk_in_a_short_file_is_truncated_without_allocating(tmp_path, as_file):
    data = pack(IMAGE, [])[:-4] + b"TOKS" + uvarint(fmt.MAX_CHUNK_BYTES) + bytes(100)
    path = tmp_path / "x.tokc"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(TruncatedError, match=f"truncated at byte {len(data)}"):
            if as_file:
                with open(path, "rb") as f:
                    list(Reader(f))
            else:
                unpack(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


# --- writing validates ---

GOOD = {"codec": "tokc-image-v1", "weights_digest": DIGEST, "modality": "image",
        "width": 8, "height": 8, "channels": 3}
GOOD_AUDIO = {"codec": "tokc-audio-v1", "weights_digest": DIGEST, "modality": "audio",
              "sample_rate": 48000, "channels": 1, "num_samples": 10}


@pytest.mark.parametrize("base,changes,error", [
    (GOOD, {"modality": "video"}, TokcFormatError),
    (GOOD, {"codec": ""}, TokcFormatError),
    (GOOD, {"codec": "tokc image"}, TokcFormatError),
    (GOOD, {"codec": "tökc"}, TokcFormatError),
    (GOOD, {"codec": "x" * 65}, LimitError),
    (GOOD, {"weights_digest": DIGEST[:7]}, TokcFormatError),
    (GOOD, {"width": 0}, TokcFormatError),
    (GOOD, {"width": -1}, TokcFormatError),
    (GOOD, {"width": 70000}, LimitError),
    (GOOD, {"width": 65535, "height": 65535}, LimitError),
    (GOOD, {"channels": 5}, LimitError),
    (GOOD, {"sample_rate": 44100}, TokcFormatError),
    (GOOD, {"rate": [("q", 1), ("q", 2)]}, TokcFormatError),
    (GOOD, {"rate": [("a b", 1)]}, TokcFormatError),
    (GOOD, {"rate": [("n" * 33, 1)]}, LimitError),
    (GOOD, {"rate": [("q", 1 << 63)]}, LimitError),
    (GOOD, {"rate": [(f"p{i}", i) for i in range(17)]}, LimitError),
    (GOOD_AUDIO, {"sample_rate": 0}, TokcFormatError),
    (GOOD_AUDIO, {"sample_rate": 400000}, LimitError),
    (GOOD_AUDIO, {"channels": 17}, LimitError),
    (GOOD_AUDIO, {"num_samples": fmt.MAX_SAMPLES + 1}, LimitError),
    (GOOD_AUDIO, {"width": 4}, TokcFormatError),
])
def test_bad_header_values_are_refused(base, changes, error):
    with pytest.raises(error):
        Header(**{**base, **changes})


@pytest.mark.parametrize("tag", ["TOK", "TOKSX", "\x00\x00\x00\x00", "TÖKS", "TO\nK"])
def test_bad_chunk_tags_are_refused(tag):
    with pytest.raises(TokcFormatError):
        Writer(io.BytesIO(), IMAGE).write_chunk(tag, b"x")


def test_chunk_payload_limit(monkeypatch):
    monkeypatch.setattr(fmt, "MAX_CHUNK_BYTES", 10)
    w = Writer(io.BytesIO(), IMAGE)
    w.write_chunk("TOKS", bytes(10))
    with pytest.raises(LimitError, match="11 bytes exceeds the limit of 10"):
        w.write_chunk("TOKS", bytes(11))


def test_writer_does_not_end_a_file_after_an_exception():
    out = io.BytesIO()
    with pytest.raises(RuntimeError), Writer(out, AUDIO) as w:
        w.write_chunk("AUD0", b"abc")
        raise RuntimeError("encoder failed")
    with pytest.raises(TruncatedError):
        unpack(out.getvalue())
    w.close()
    assert unpack(out.getvalue())[1] == [Chunk("AUD0", b"abc")]
    with pytest.raises(ValueError, match="after close"):
        w.write_chunk("AUD1", b"")


# --- streaming ---


class Trickle:
    """A read-only, unseekable stream returning at most 7 bytes a call, counting what it gave."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)
        self.consumed = 0

    def read(self, n: int = -1) -> bytes:
        block = self._f.read(7 if n < 0 else min(n, 7))
        self.consumed += len(block)
        return block


def test_audio_streams_chunk_by_chunk():
    out = io.BytesIO()
    ends = []
    with Writer(out, AUDIO) as w:
        ends.append(len(out.getvalue()))
        for i in range(5):
            w.write_chunk("AUDI", bytes([i]) * (100 + i))
            ends.append(len(out.getvalue()))  # written through, nothing held back
    data = out.getvalue()
    assert len(data) == ends[-1] + 4

    f = Trickle(data)
    reader = Reader(f)
    assert reader.header == AUDIO
    assert f.consumed == ends[0]  # nothing read past the header
    for i in range(5):
        chunk = next(reader)
        assert chunk == Chunk("AUDI", bytes([i]) * (100 + i))
        assert f.consumed == ends[i + 1]  # nothing read past this chunk
    assert list(reader) == []
    assert f.consumed == len(data)


def test_reader_raises_errors_when_reached():
    data = sample_file()
    reader = Reader(io.BytesIO(data[:-50]))
    assert next(reader).tag == "TOK0"
    assert next(reader).tag == "TOK1"
    with pytest.raises(TruncatedError):
        next(reader)
    with pytest.raises(TruncatedError):
        next(reader)  # and keeps raising
