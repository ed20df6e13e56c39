"""The .tokc container: framing only, no models.

A file is: magic, format version, a CRC-protected header (codec id, weights digest, modality,
dimensions, rate parameters), then chunks (4-character tag, length, payload, CRC32), then an
end marker. The byte layout, limits and error behaviour are specified in docs/FORMAT.md.

Reading never trusts a length: every length and dimension is checked against the limits below
before anything is allocated, and every failure on any input is a `TokcFormatError`.
"""

from __future__ import annotations

import hashlib
import io
import operator
import os
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAGIC = b"TOKC"
FORMAT_VERSION = 1
END_MARKER = b"\x00\x00\x00\x00"  # where a chunk tag would be

# Limits, checked both when writing and (before allocating) when reading.
DIGEST_BYTES = 8  # first 8 bytes of the sha256 of the weights file
MAX_CODEC_BYTES = 64
MAX_SIDE = 65535
MAX_PIXELS = 1 << 28
MAX_IMAGE_CHANNELS = 4
MAX_AUDIO_CHANNELS = 16
MAX_SAMPLE_RATE = 384_000
MAX_SAMPLES = 1 << 34
MAX_RATE_PARAMS = 16
MAX_RATE_NAME_BYTES = 32
MAX_CHUNK_BYTES = 1 << 28
MAX_HEADER_BYTES = 1024  # a valid header body is at most 774 bytes

_MODALITY_CODES = {"image": 1, "audio": 2}
_MODALITIES = {code: name for name, code in _MODALITY_CODES.items()}
_ID = re.compile(r"[A-Za-z0-9._-]+")
_TAG = re.compile(r"[\x20-\x7e]{4}")
_INT64 = (-(1 << 63), (1 << 63) - 1)
_READ_BLOCK = 1 << 20  # a claimed length is read in blocks, never allocated up front


class TokcFormatError(ValueError):
    """Anything wrong with a .tokc file, or with values that cannot be written to one."""


class TruncatedError(TokcFormatError):
    """The data ends before the file does."""


class CorruptError(TokcFormatError):
    """The bytes are not a valid .tokc file."""


class ChecksumError(CorruptError):
    """A CRC32 does not match."""


class UnsupportedVersionError(TokcFormatError):
    """The file was written by a newer format version."""


class WeightsMismatchError(TokcFormatError):
    """The file was made with other weights than the ones loaded."""


class LimitError(TokcFormatError):
    """A length, dimension or count exceeds the limits of the format."""


@dataclass(frozen=True)
class Header:
    """What made a file and what it decodes to. Validated on construction (the limits above);
    `rate` may be given as a mapping or pairs and is kept as an ordered tuple of pairs."""

    codec: str
    weights_digest: bytes
    modality: str
    width: int = 0
    height: int = 0
    channels: int = 0
    sample_rate: int = 0
    num_samples: int = 0
    rate: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        for name in ("width", "height", "channels", "sample_rate", "num_samples"):
            value = operator.index(getattr(self, name))
            if value < 0:
                raise TokcFormatError(f"{name} must not be negative, got {value}")
            object.__setattr__(self, name, value)
        if not isinstance(self.weights_digest, (bytes, bytearray, memoryview)):
            raise TypeError(f"weights_digest must be bytes, got {type(self.weights_digest)}")
        object.__setattr__(self, "weights_digest", bytes(self.weights_digest))
        items = self.rate.items() if isinstance(self.rate, Mapping) else self.rate
        object.__setattr__(self, "rate", tuple((n, operator.index(v)) for n, v in items))
        _check_header(self)

    def rate_dict(self) -> dict[str, int]:
        return dict(self.rate)


@dataclass(frozen=True)
class Chunk:
    """One piece of codec data: a 4-character printable ascii tag and its payload."""

    tag: str
    payload: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tag, str) or not _TAG.fullmatch(self.tag):
            raise TokcFormatError(
                f"a chunk tag is 4 printable ascii characters, got {self.tag!r}"
            )
        if not isinstance(self.payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"chunk payload must be bytes, got {type(self.payload).__name__}")
        payload = bytes(self.payload)
        if len(payload) > MAX_CHUNK_BYTES:
            raise LimitError(
                f"chunk {self.tag!r} of {len(payload)} bytes exceeds the limit of "
                f"{MAX_CHUNK_BYTES} bytes"
            )
        object.__setattr__(self, "payload", payload)


def _check_id(what: str, value: object, limit: int) -> None:
    if not isinstance(value, str):
        raise TokcFormatError(f"{what} must be a str, got {type(value).__name__}")
    if len(value) > limit:
        raise LimitError(f"{what} of {len(value)} characters exceeds the limit of {limit}")
    if not _ID.fullmatch(value):
        raise TokcFormatError(f"{what} must be ascii letters, digits, '.', '_' or '-': {value!r}")


def _check_header(h: Header) -> None:
    _check_id("codec id", h.codec, MAX_CODEC_BYTES)
    if len(h.weights_digest) != DIGEST_BYTES:
        raise TokcFormatError(
            f"weights digest must be {DIGEST_BYTES} bytes, got {len(h.weights_digest)}"
        )
    if h.modality == "image":
        if h.sample_rate or h.num_samples:
            raise TokcFormatError("an image header has no sample_rate or num_samples")
        if not (h.width and h.height and h.channels):
            raise TokcFormatError(f"image {h.width}x{h.height}x{h.channels} has a zero size")
        if h.width > MAX_SIDE or h.height > MAX_SIDE or h.width * h.height > MAX_PIXELS:
            raise LimitError(
                f"image {h.width}x{h.height} exceeds the limit of {MAX_SIDE}x{MAX_SIDE} "
                f"and {MAX_PIXELS} pixels"
            )
        if h.channels > MAX_IMAGE_CHANNELS:
            raise LimitError(
                f"image with {h.channels} channels exceeds the limit of {MAX_IMAGE_CHANNELS}"
            )
    elif h.modality == "audio":
        if h.width or h.height:
            raise TokcFormatError("an audio header has no width or height")
        if not (h.sample_rate and h.channels):
            raise TokcFormatError("audio needs a sample rate and at least one channel")
        if h.sample_rate > MAX_SAMPLE_RATE:
            raise LimitError(
                f"sample rate {h.sample_rate} Hz exceeds the limit of {MAX_SAMPLE_RATE} Hz"
            )
        if h.channels > MAX_AUDIO_CHANNELS:
            raise LimitError(
                f"audio with {h.channels} channels exceeds the limit of {MAX_AUDIO_CHANNELS}"
            )
        if h.num_samples > MAX_SAMPLES:
            raise LimitError(
                f"{h.num_samples} samples per channel exceeds the limit of {MAX_SAMPLES}"
            )
    else:
        raise TokcFormatError(f"modality must be 'image' or 'audio', got {h.modality!r}")
    if len(h.rate) > MAX_RATE_PARAMS:
        raise LimitError(f"{len(h.rate)} rate parameters exceed the limit of {MAX_RATE_PARAMS}")
    for name, value in h.rate:
        _check_id("rate parameter name", name, MAX_RATE_NAME_BYTES)
        if not _INT64[0] <= value <= _INT64[1]:
            raise LimitError(f"rate parameter {name}={value} does not fit in 64 bits")
    names = [name for name, _ in h.rate]
    if len(set(names)) != len(names):
        raise TokcFormatError(f"rate parameter names repeat: {names}")


# --- varints (unsigned LEB128; signed values zigzag-encoded) ---


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_uvarint(src: _Stream | _Cursor, what: str) -> int:
    value = 0
    for i in range(10):
        byte = src.take(1, what)[0]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            if byte == 0 and i > 0:
                raise CorruptError(f"{what}: over-long varint")
            if value >= 1 << 64:
                raise CorruptError(f"{what}: varint exceeds 64 bits")
            return value
    raise CorruptError(f"{what}: varint longer than 10 bytes")


def _zigzag(v: int) -> int:
    return (v << 1) ^ (v >> 63)


def _unzigzag(u: int) -> int:
    return (u >> 1) ^ -(u & 1)


# --- sources: a file read in bounded blocks, or the header body in memory ---


class _Stream:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.offset = 0

    def take(self, n: int, what: str) -> bytes:
        blocks, got = [], 0
        while got < n:
            block = self.f.read(min(n - got, _READ_BLOCK))
            if not block:
                raise TruncatedError(
                    f"truncated at byte {self.offset + got} in {what}: "
                    f"{n - got} more bytes expected"
                )
            blocks.append(block)
            got += len(block)
        self.offset += n
        return b"".join(blocks)


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise CorruptError(f"{what} runs past the end of the header")
        self.pos += n
        return self.data[self.pos - n : self.pos]


# --- encoding ---


def _ascii_field(s: str) -> bytes:
    raw = s.encode("ascii")
    return _uvarint(len(raw)) + raw


def _encode_header(h: Header) -> bytes:
    body = bytearray(_ascii_field(h.codec))
    body += h.weights_digest
    body.append(_MODALITY_CODES[h.modality])
    if h.modality == "image":
        dims = (h.width, h.height, h.channels)
    else:
        dims = (h.sample_rate, h.channels, h.num_samples)
    for v in dims:
        body += _uvarint(v)
    body += _uvarint(len(h.rate))
    for name, value in h.rate:
        body += _ascii_field(name) + _uvarint(_zigzag(value))
    head = MAGIC + bytes([FORMAT_VERSION]) + _uvarint(len(body)) + body
    return head + zlib.crc32(head).to_bytes(4, "little")


# --- decoding ---


def _read_header(src: _Stream) -> Header:
    magic = src.take(len(MAGIC), "magic")
    if magic != MAGIC:
        raise CorruptError(f"not a .tokc file (starts with {magic!r}, expected {MAGIC!r})")
    version = src.take(1, "format version")[0]
    if version > FORMAT_VERSION:
        raise UnsupportedVersionError(
            f"format version {version} is newer than this tokc (reads up to {FORMAT_VERSION})"
        )
    if version == 0:
        raise CorruptError("format version 0 is not valid")
    size = _read_uvarint(src, "header length")
    if size > MAX_HEADER_BYTES:
        raise LimitError(f"header of {size} bytes exceeds the limit of {MAX_HEADER_BYTES}")
    body = src.take(size, "header")
    stored = int.from_bytes(src.take(4, "header CRC"), "little")
    computed = zlib.crc32(magic + bytes([version]) + _uvarint(size) + body)
    if stored != computed:
        raise ChecksumError(f"header CRC mismatch (stored {stored:08x}, computed {computed:08x})")
    return _decode_header_body(_Cursor(body))


def _read_ascii(cur: _Cursor, what: str, limit: int) -> str:
    n = _read_uvarint(cur, f"{what} length")
    if n > limit:
        raise LimitError(f"{what} of {n} bytes exceeds the limit of {limit}")
    raw = cur.take(n, what)
    if not raw.isascii():
        raise CorruptError(f"{what} is not ascii: {raw!r}")
    return raw.decode("ascii")


def _decode_header_body(cur: _Cursor) -> Header:
    codec = _read_ascii(cur, "codec id", MAX_CODEC_BYTES)
    digest = cur.take(DIGEST_BYTES, "weights digest")
    code = cur.take(1, "modality")[0]
    if code not in _MODALITIES:
        raise CorruptError(f"unknown modality code {code}")
    modality = _MODALITIES[code]
    if modality == "image":
        names = ("width", "height", "channels")
    else:
        names = ("sample_rate", "channels", "num_samples")
    dims = {name: _read_uvarint(cur, name) for name in names}
    count = _read_uvarint(cur, "rate parameter count")
    if count > MAX_RATE_PARAMS:
        raise LimitError(f"{count} rate parameters exceed the limit of {MAX_RATE_PARAMS}")
    rate = []
    for _ in range(count):
        name = _read_ascii(cur, "rate parameter name", MAX_RATE_NAME_BYTES)
        rate.append((name, _unzigzag(_read_uvarint(cur, f"rate parameter {name}"))))
    if cur.pos != len(cur.data):
        raise CorruptError(f"{len(cur.data) - cur.pos} unexpected bytes at the end of the header")
    return Header(codec=codec, weights_digest=digest, modality=modality, rate=tuple(rate), **dims)


def _read_chunk(src: _Stream, index: int) -> Chunk | None:
    """The next chunk, or None at the end marker."""
    where = f"chunk #{index}"
    tag = src.take(4, f"{where} tag")
    if tag == END_MARKER:
        return None
    if not all(0x20 <= b <= 0x7E for b in tag):
        raise CorruptError(f"{where} has an invalid tag {tag!r} at byte {src.offset - 4}")
    where = f"chunk #{index} {tag.decode('ascii')!r}"
    size = _read_uvarint(src, f"{where} length")
    if size > MAX_CHUNK_BYTES:
        raise LimitError(f"{where} claims {size} bytes, the limit is {MAX_CHUNK_BYTES}")
    payload = src.take(size, where)
    stored = int.from_bytes(src.take(4, f"{where} CRC"), "little")
    computed = zlib.crc32(payload, zlib.crc32(tag + _uvarint(size)))
    if stored != computed:
        raise ChecksumError(f"{where} CRC mismatch (stored {stored:08x}, computed {computed:08x})")
    return Chunk(tag.decode("ascii"), payload)


# --- public API ---


class Writer:
    """Writes the header at once, then one chunk per `write_chunk`; `close` ends the file.

    Leaving a `with` block by an exception does not write the end marker, so the partial file
    reads as truncated rather than as complete.
    """

    def __init__(self, fileobj: BinaryIO, header: Header) -> None:
        if not isinstance(header, Header):
            raise TypeError(f"header must be a Header, got {type(header).__name__}")
        self.header = header
        self.closed = False
        self.bytes_written = 0
        self._f = fileobj
        self._write(_encode_header(header))

    def _write(self, data: bytes) -> None:
        self._f.write(data)
        self.bytes_written += len(data)

    def write_chunk(self, tag: str, payload: bytes) -> None:
        if self.closed:
            raise ValueError("write_chunk() after close()")
        chunk = Chunk(tag, payload)
        prefix = chunk.tag.encode("ascii") + _uvarint(len(chunk.payload))
        self._write(prefix)
        self._write(chunk.payload)
        self._write(zlib.crc32(chunk.payload, zlib.crc32(prefix)).to_bytes(4, "little"))

    def close(self) -> None:
        """Write the end marker (once). The file object is left open."""
        if not self.closed:
            self._write(END_MARKER)
            self.closed = True

    def __enter__(self):  # -> Self (typing.Self needs Python 3.11)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()


class Reader:
    """Reads the header at once; iterating yields the chunks one at a time.

    Errors (truncation, CRC mismatch, data after the end marker) are raised when reached.
    `bytes_read` counts the bytes consumed so far.
    """

    def __init__(self, fileobj: BinaryIO) -> None:
        self._src = _Stream(fileobj)
        self._index = 0
        self._done = False
        self._error: TokcFormatError | None = None
        self.header = _read_header(self._src)

    @property
    def bytes_read(self) -> int:
        return self._src.offset

    def __iter__(self) -> Iterator[Chunk]:
        return self

    def __next__(self) -> Chunk:
        if self._error is not None:
            raise self._error
        if self._done:
            raise StopIteration
        try:
            chunk = _read_chunk(self._src, self._index)
            if chunk is None:
                self._done = True
                if self._src.f.read(1):
                    raise CorruptError(f"data after the end marker at byte {self.bytes_read}")
                raise StopIteration
        except TokcFormatError as e:
            self._error = e
            raise
        self._index += 1
        return chunk


def pack(header: Header, chunks: Iterable[Chunk]) -> bytes:
    out = io.BytesIO()
    with Writer(out, header) as w:
        for chunk in chunks:
            w.write_chunk(chunk.tag, chunk.payload)
    return out.getvalue()


def unpack(data: bytes) -> tuple[Header, list[Chunk]]:
    reader = Reader(io.BytesIO(data))
    return reader.header, list(reader)


def read_header(data_or_file: bytes | BinaryIO) -> Header:
    """The header of in-memory bytes or of a binary file (read up to the end of the header)."""
    if isinstance(data_or_file, (bytes, bytearray, memoryview)):
        data_or_file = io.BytesIO(data_or_file)
    return Reader(data_or_file).header


def write_atomic(path, data: bytes) -> None:
    """Write a file whole or not at all: a temporary file of its own beside it (two writers do
    not clash), with the mode a new file gets under the umask, then renamed into place."""
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path) -> str:
    """The sha256 of a file (hex), read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_READ_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def digest_weights(path: str) -> bytes:
    """The weights digest stored in headers: the first 8 bytes of the file's sha256."""
    return bytes.fromhex(sha256_file(path))[:DIGEST_BYTES]


def check_weights(header: Header, digest: bytes) -> None:
    """Raise WeightsMismatchError unless `digest` (8 bytes, or a full sha256) matches."""
    digest = bytes(digest)[:DIGEST_BYTES]
    if len(digest) != DIGEST_BYTES:
        raise ValueError(f"a weights digest has at least {DIGEST_BYTES} bytes")
    if header.weights_digest != digest:
        raise WeightsMismatchError(
            f"{header.codec} file made by weights {header.weights_digest.hex()}, "
            f"this install has {digest.hex()}"
        )
