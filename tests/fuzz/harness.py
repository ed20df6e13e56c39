"""Fuzz targets for every way tokc reads a .tokc file (issue 16), shared by the short run in
the test command (tests/fuzz/test_fuzz.py), the long run (`make fuzz`, tests/fuzz/fuzz.py)
and the regression files (tests/fuzz/regressions/).

Targets, all fed the same input:
- `container`: tokc.format (unpack, Reader chunk by chunk, read_header) on the raw bytes;
- `api`: tokc.decompress on the input re-framed (`reframe`: CRCs recomputed and the header's
  weights digest set to the fixture's, so that mutations reach the decoders instead of the
  CRC check) with the pixel limit of `MAX_PIXELS`;
- `codecs`: each registered codec's decompress (and decompress_stream where it has one)
  called directly, with the repo's tiny test models (tests/conftest.py): tokc-image-v1 and
  tokc-audio-v1, and the published tokenizers' codecs (one-d-piece-v1, wavtokenizer-v1) with
  their parity fixtures in ../shared/fixtures when present. A registered codec without a
  fixture here is reported by fuzz.py and not fuzzed.

The only exceptions a target may raise are the library's own: tokc.format.TokcFormatError and
tokc.compress.base.CodecError (and their subclasses). Anything else is a finding.
"""

from __future__ import annotations

import io
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tokc.format import _uvarint  # the container's own varint writer

TESTS = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = TESTS.parents[0].parent / "shared/fixtures"
# codecs of published tokenizers, with their parity fixtures (used when the checkout has them)
CHECKPOINTS = {"one-d-piece-v1": SHARED_FIXTURES / "one_d_piece",
               "wavtokenizer-v1": SHARED_FIXTURES / "wavtokenizer"}
# direct codec calls skip headers over this (the API's max_pixels refuses them; the fuzzer
# looks for crashes, not for big legitimate images)
MAX_PIXELS = 1 << 16


@dataclass
class Fixtures:
    """Weights files of the tiny models, by codec id (what tokc.decompress loads them with)."""

    options: dict[str, dict] = field(default_factory=dict)  # codec id -> decompress options


def build_fixtures(folder: Path) -> Fixtures:
    """The tiny models of tests/conftest.py, packed into folder (kept between runs)."""
    sys.path.insert(0, str(TESTS))
    import conftest

    class _Factory:  # what conftest's builders take from pytest's tmp_path_factory
        def mktemp(self, name: str) -> Path:
            folder.mkdir(parents=True, exist_ok=True)
            return folder

    image = folder / "tiny.safetensors"
    if not image.exists():
        conftest._tiny_weights(_Factory(), "tiny", 3, spatial=True)
    audio = folder / "tiny_audio.safetensors"
    if not audio.exists():
        conftest._tiny_audio_weights(_Factory())
    return fixtures_from(image, audio)


def fixtures_from(image: Path | None, audio: Path | None) -> Fixtures:
    """The tiny models' weights, and the parity fixtures of CHECKPOINTS that are present."""
    f = Fixtures()
    if image is not None:
        f.options["tokc-image-v1"] = {"model": str(image)}
    if audio is not None:
        f.options["tokc-audio-v1"] = {"model": str(audio)}
    for codec_id, folder in CHECKPOINTS.items():
        if (folder / "model.safetensors").exists():
            f.options[codec_id] = {"checkpoint": str(folder)}
    return f


# --- re-framing: the mutated fields past the CRCs -----------------------------------------------


def _read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(10):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return value, pos
    raise ValueError("varint")


def reframe(data: bytes, digests: dict[str, bytes] | None = None) -> bytes:
    """The input with every CRC recomputed and, for a codec id in `digests`, that digest in the
    header; the input unchanged where its framing does not parse (the container target sees
    those). Payloads cut short are kept as they are, with their real length."""
    try:
        if data[:4] != b"TOKC" or len(data) < 6:
            return data
        size, pos = _read_uvarint(data, 5)
        body = bytearray(data[pos : pos + size])
        pos += size + 4
        n, p = _read_uvarint(body, 0)
        codec = bytes(body[p : p + n]).decode("ascii", "replace")
        if digests and codec in digests and len(body) >= p + n + 8:
            body[p + n : p + n + 8] = digests[codec]
        head = data[:5] + _uvarint(len(body)) + bytes(body)
        out = bytearray(head + zlib.crc32(head).to_bytes(4, "little"))
        while pos < len(data):
            tag = data[pos : pos + 4]
            pos += 4
            if tag == b"\0\0\0\0" or len(tag) < 4:
                out += tag + data[pos:]
                break
            size, pos = _read_uvarint(data, pos)
            payload = data[pos : pos + size]
            pos += size + 4
            prefix = tag + _uvarint(len(payload))
            out += prefix + payload + zlib.crc32(payload, zlib.crc32(prefix)).to_bytes(4, "little")
        return bytes(out)
    except (IndexError, ValueError):
        return data


# --- the targets -----------------------------------------------------------------------------


class Harness:
    def __init__(self, fixtures: Fixtures, cache_codecs: bool = False):
        """cache_codecs: make registry.Entry.open return the codec it opened before for the
        same options (tokc.decompress loads the weights on each call: 20x slower than the
        decode of a tiny file). It patches the registry for the whole process: fuzz.py only."""
        import tokc
        from tokc import format as fmt
        from tokc.compress import registry
        from tokc.compress.base import CodecError

        if cache_codecs:
            _cache_opened_codecs(registry)

        self.tokc, self.fmt, self.registry = tokc, fmt, registry
        self.expected = (fmt.TokcFormatError, CodecError)
        self.options = fixtures.options
        self.codecs = {}  # codec id -> the codec, opened once
        for entry in registry.entries():
            opts = fixtures.options.get(entry.codec_id)
            if opts is None:
                continue  # no tiny model for it in this checkout
            load = {"weights": opts["model"]} if "model" in opts else dict(opts)
            self.codecs[entry.codec_id] = entry.open(**load)
        self.digests = {cid: _digest(c) for cid, c in self.codecs.items()}

    def container(self, data: bytes) -> None:
        fmt = self.fmt
        try:
            fmt.unpack(data)
        except fmt.TokcFormatError:
            pass
        try:
            for _ in fmt.Reader(io.BytesIO(data)):
                pass
        except fmt.TokcFormatError:
            pass

    def api(self, data: bytes) -> None:
        try:
            header = self.fmt.read_header(data)
        except self.fmt.TokcFormatError:
            return
        options = self.options.get(header.codec, {})
        try:
            self.tokc.decompress(data, max_pixels=MAX_PIXELS, **options)
        except self.expected:
            pass

    def codecs_direct(self, data: bytes) -> None:
        try:
            header = self.fmt.read_header(data)
        except self.fmt.TokcFormatError:
            return
        if header.width * header.height > MAX_PIXELS:
            return
        for codec in self.codecs.values():
            try:
                codec.decompress(data)
            except self.expected:
                pass
            if hasattr(codec, "decompress_stream"):
                try:
                    for _ in codec.decompress_stream(data):
                        pass
                except self.expected:
                    pass

    def all(self, data: bytes) -> None:
        """Every target: the raw bytes through the container reader, then re-framed through
        the API and each codec."""
        self.container(data)
        fixed = reframe(data, self.digests)
        if fixed != data:
            self.container(fixed)
        self.api(fixed)
        self.codecs_direct(fixed)


def _cache_opened_codecs(registry) -> None:
    original = registry.Entry.open
    opened = {}

    def open_once(entry, **options):
        key = (entry.codec_id, tuple(sorted((k, str(v)) for k, v in options.items())))
        if key not in opened:
            opened[key] = original(entry, **options)
        return opened[key]

    registry.Entry.open = open_once


def _digest(codec) -> bytes:
    for obj in (getattr(codec, "weights", None), codec):
        d = getattr(obj, "digest", None)
        if isinstance(d, bytes):
            return d[:8]
    raise AttributeError(f"{codec.codec_id}: no weights digest")


# --- the seed corpus: small real files of the tiny models ------------------------------------


def make_corpus(harness: Harness, folder: Path) -> list[Path]:
    """Small .tokc files made by each tiny model (a few sizes, grey and alpha, mono and
    stereo, a few rates) written to folder; returns their paths."""
    from tokc.compress.base import Sound

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    photo = _photo()
    files: dict[str, bytes] = {}
    image = harness.codecs.get("tokc-image-v1")
    if image is not None:
        for q in (0, 40, 90):
            files[f"image_q{q}"] = image.compress(photo[:64, :96], quality=q).data
        files["image_odd"] = image.compress(photo[:37, :21], quality=50).data
        files["image_grey"] = image.compress(photo[:48, :48, 0], quality=50).data
        rgba = np.dstack([photo[:32, :64], rng.integers(0, 256, (32, 64), np.uint8)])
        files["image_rgba"] = image.compress(rgba, quality=50).data
        from tokc.compress import image as image_module

        side, image_module.TILE_SIDE = image_module.TILE_SIDE, 4  # 64-px tiles: a tiled file
        try:
            files["image_tiled"] = image.compress(photo[:72, :80], quality=40).data
        finally:
            image_module.TILE_SIDE = side
    audio = harness.codecs.get("tokc-audio-v1")
    if audio is not None:
        t = np.arange(4000) / 16000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t))[:, None].astype(np.float32)
        files["audio_mono"] = audio.compress(Sound(tone, 16000), quality=50).data
        noise = (0.05 * rng.standard_normal((3000, 2))).astype(np.float32)
        files["audio_stereo_22k"] = audio.compress(Sound(noise, 22050), quality=20).data
    wavtok = harness.codecs.get("wavtokenizer-v1")
    if wavtok is not None:
        files["wavtokenizer"] = wavtok.compress(Sound(tone, 16000)).data
    odp = harness.codecs.get("one-d-piece-v1")
    if odp is not None:
        for k in (1, odp.num_tokens):
            files[f"one_d_piece_k{k}"] = odp.compress(photo[:64, :64], tokens=k).data
    paths = []
    for name, data in files.items():
        p = folder / f"{name}.tokc"
        p.write_bytes(data)
        paths.append(p)
    return paths


def _photo() -> np.ndarray:
    kodim = TESTS.parents[0].parent / "shared/data/images/kodak/kodim23.png"
    if kodim.exists():
        from PIL import Image

        return np.asarray(Image.open(kodim).convert("RGB"))[100:228, 200:392].copy()
    y, x = np.mgrid[:128, :192]
    return np.stack([x, y, (x * y) % 256], -1).astype(np.uint8)
