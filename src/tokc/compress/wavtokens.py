"""`wavtokenizer-v1`: audio as WavTokenizer tokens in a .tokc file.

WavTokenizer (one codebook, e.g. 4096 entries at 40 or 75 tokens per second) turns audio at
its sample rate (24 kHz for the released models) into one token per hop. The rate is the
model's: there is no rate option. Layers as everywhere in tokc:

- model (tokc.models.wavtokenizer): samples <-> token indices (PyTorch);
- codec (this module): audio <-> bytes;
- format (tokc.format): header ``codec=wavtokenizer-v1``, the checkpoint's weights digest, the
  input's sample rate, length and channel count, rate parameter ``segment`` (tokens per
  segment), then one ``wtok`` chunk per segment: its tokens entropy coded (below).

**Input.** Any rate and channel count the audio codec reads: the channels are averaged to mono
(WavTokenizer is a mono model) and resampled (soxr) to the model's rate; the decoder resamples
back and writes the mono signal to every channel, so a decoded file has the input's rate,
length and channel count.

**Segments.** The encoder and the decoder both run on segments of SEGMENT_S seconds with
CONTEXT_S of audio (tokens) on each side, so memory stays bounded for any length and a decoder
writes audio as the chunks arrive. The decoder's backbone attends across its whole input, so a
segment decodes a little differently than the same tokens inside one long pass; the context
keeps the seams inaudible (measured in tests/unit/test_wavtokens_codec.py).

**Entropy coding.** Each chunk starts with a method byte and the encoder keeps the smaller:
0, the tokens packed at ceil(log2(codebook)) bits each (tokc.compress.tokens.pack_bits); 1,
block-adaptive coding: counts start at one per codebook entry, the tokens are coded in blocks
of BLOCK with the frequencies of the counts so far (integer arithmetic, tokc's ANS coder),
then the block's tokens are counted (+STEP each). The counts restart with each segment, so
each chunk decodes on its own. A 4096-entry codebook cannot be learnt from one segment's 750
tokens: on near-uniform tokens the adaptive code costs ~0.3 bit more than raw (so raw wins);
on skewed ones it saves (Zipf-like tokens, 750 per segment: 7.9 bits against 12).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from tokc import format as fmt
from tokc.compress import entropy
from tokc.compress.base import CodecError, EncodeResult, Sound
from tokc.compress.tokens import bit_width, open_checkpoint_codec, pack_bits, unpack_bits

CODEC_ID = "wavtokenizer-v1"
ARCH = "wavtokenizer"
TAG = "wtok"
SEGMENT_S = 10.0  # seconds of audio per segment (one 'wtok' chunk)
CONTEXT_S = 1.0  # seconds of context on each side of a segment, encoder and decoder
BLOCK = 32  # tokens coded with the same frequencies
STEP = 4  # count added per coded token
RAW, ADAPTIVE = 0, 1  # a chunk's method byte


def open_codec(*, checkpoint: str | Path | None = None, backend: str = "auto") -> WavTokenizerCodec:
    """The registry's factory: the codec of a WavTokenizer checkpoint (it runs on PyTorch)."""
    return open_checkpoint_codec(WavTokenizerCodec, CODEC_ID, "WavTokenizer", checkpoint, backend)


# -- block-adaptive entropy coding of a token list -------------------------------------------------
def frequencies(counts: np.ndarray) -> np.ndarray:
    """Integer counts (n,) -> integer frequencies, each >= 1, summing to 2**PRECISION (exact
    integer arithmetic: the encoder and every decoder compute the same table)."""
    total = 1 << entropy.PRECISION
    counts = counts.astype(np.int64)
    f = 1 + counts * (total - len(counts)) // counts.sum()
    f[int(np.argmax(counts))] += total - f.sum()
    return f


def _tables(counts: np.ndarray) -> entropy.Tables:
    # Tables code values -o..o (entry 2o+1 is the escape): token t is coded as t - o, o = K // 2
    k = len(counts)
    o = k // 2
    row = np.ones(2 * o + 2, dtype=np.int64)
    row[:k] = counts
    return entropy.Tables(frequencies(row)[None], np.array([o]))


def encode_tokens(tokens: np.ndarray, codebook: int) -> bytes:
    """Token indices in [0, codebook) -> a chunk payload: the method byte, then the tokens
    (raw bits, or the adaptive code), whichever is smaller."""
    adaptive = bytes([ADAPTIVE]) + encode_adaptive(tokens, codebook)
    raw = bytes([RAW]) + pack_bits(tokens, bit_width(codebook))
    return raw if len(raw) <= len(adaptive) else adaptive


def decode_tokens(payload: bytes, count: int, codebook: int) -> np.ndarray:
    if not payload or payload[0] not in (RAW, ADAPTIVE):
        raise fmt.CorruptError(f"a {TAG!r} chunk with an unknown coding method")
    if payload[0] == ADAPTIVE:
        return decode_adaptive(payload[1:], count, codebook)
    tokens = unpack_bits(payload[1:], count, bit_width(codebook))
    if count and tokens.max() >= codebook:
        raise fmt.CorruptError(f"a token outside the codebook (0..{codebook - 1})")
    return tokens


def encode_adaptive(tokens: np.ndarray, codebook: int) -> bytes:
    """Token indices in [0, codebook) -> uint32 length of the ANS stream, the stream, escapes."""
    enc = entropy.Encoder()
    counts = np.ones(codebook, dtype=np.int64)
    o = codebook // 2
    for s in range(0, len(tokens), BLOCK):
        block = tokens[s : s + BLOCK]
        enc.add(_tables(counts), block - o, np.zeros(len(block), dtype=np.int64))
        np.add.at(counts, block, STEP)
    stream, escapes = enc.finish()
    return len(stream).to_bytes(4, "little") + stream + escapes


def decode_adaptive(payload: bytes, count: int, codebook: int) -> np.ndarray:
    if len(payload) < 4 or 4 + int.from_bytes(payload[:4], "little") > len(payload):
        raise fmt.CorruptError(f"a {TAG!r} chunk shorter than its stream length")
    n = int.from_bytes(payload[:4], "little")
    dec = entropy.Decoder(payload[4 : 4 + n], payload[4 + n :])
    counts = np.ones(codebook, dtype=np.int64)
    o = codebook // 2
    out = np.empty(count, dtype=np.int64)
    for s in range(0, count, BLOCK):
        m = min(BLOCK, count - s)
        block = dec.decode(_tables(counts), np.zeros(m, dtype=np.int64)) + o
        if block.min() < 0 or block.max() >= codebook:
            raise fmt.CorruptError(f"a token outside the codebook (0..{codebook - 1})")
        out[s : s + m] = block
        np.add.at(counts, block, STEP)
    dec.finish()
    return out


class WavTokenizerCodec:
    """A WavTokenizer checkpoint (folder or weights file) as an audio codec."""

    codec_id = CODEC_ID
    modality = "audio"

    def __init__(self, checkpoint: str | Path):
        from tokc.models import load_pretrained
        from tokc.models.checkpoints import resolve

        _, weights = resolve(checkpoint)
        self.model = load_pretrained(checkpoint, arch=ARCH).eval()
        cfg = self.model.config
        if cfg.hop != cfg.hop_length:
            raise ValueError(f"encoder hop {cfg.hop} differs from the decoder's {cfg.hop_length}")
        self.rate, self.hop, self.codebook = int(cfg.sample_rate), int(cfg.hop), int(cfg.codebook_size)
        self.digest = fmt.digest_weights(str(weights))
        self.segment = max(1, round(SEGMENT_S * self.rate / self.hop))  # tokens
        self.context = max(1, round(CONTEXT_S * self.rate / self.hop))

    # -- the model on segments --
    def frames(self, samples: int) -> int:
        """Tokens for `samples` samples at the model's rate."""
        return -(-samples // self.hop)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Mono samples at the model's rate -> frames(len(x)) token indices, by segments."""
        import torch

        total = self.frames(len(x))
        x = np.pad(x.astype(np.float32), (0, total * self.hop - len(x)))
        out = np.empty(total, dtype=np.int64)
        for a in range(0, total, self.segment):
            b = min(total, a + self.segment)
            lo, hi = max(0, a - self.context), min(total, b + self.context)
            piece = torch.from_numpy(x[lo * self.hop : hi * self.hop])[None]
            codes = self.model.encode(piece)[0, 0].numpy()
            out[a:b] = codes[a - lo : b - lo]
        return out

    def decode_segment(self, tokens: np.ndarray, a: int, b: int) -> np.ndarray:
        """Audio of tokens [a, b) (hop samples each), decoded with the context around them
        (`tokens` holds every token known so far, at least up to b + context)."""
        import torch

        lo, hi = max(0, a - self.context), min(len(tokens), b + self.context)
        codes = torch.from_numpy(np.ascontiguousarray(tokens[lo:hi]))[None, None]
        audio = self.model.decode(codes)[0].numpy()
        return audio[(a - lo) * self.hop : (b - lo) * self.hop].astype(np.float64)

    # -- codec --
    def compress(self, audio, sample_rate: int | None = None) -> EncodeResult:
        from tokc.compress.audio import as_sound

        sound = as_sound(audio, sample_rate)
        if not np.isfinite(sound.samples).all():
            raise CodecError("the audio has NaN or infinite samples")
        x = sound.samples.astype(np.float64).mean(1)
        n = -(-sound.samples.shape[0] * self.rate // sound.sample_rate)
        if sound.sample_rate != self.rate and len(x):
            import soxr

            x = soxr.resample(x, sound.sample_rate, self.rate, quality="HQ")
        x = np.pad(x[:n], (0, max(0, n - len(x))))
        tokens = self.encode(x)
        chunks = [fmt.Chunk(TAG, encode_tokens(tokens[a : a + self.segment], self.codebook))
                  for a in range(0, len(tokens), self.segment)]
        header = fmt.Header(codec=CODEC_ID, weights_digest=self.digest, modality="audio",
                            channels=sound.channels, sample_rate=sound.sample_rate,
                            num_samples=sound.samples.shape[0], rate=(("segment", self.segment),))
        return EncodeResult(fmt.pack(header, chunks), CODEC_ID, "audio",
                            sample_rate=sound.sample_rate, num_samples=sound.samples.shape[0],
                            rate={"num_tokens": len(tokens)}, tokens=tokens)

    def summary(self, res: EncodeResult) -> tuple[dict, str]:
        return {"tokens": res.num_tokens}, f"{res.num_tokens} tokens"

    def check_header(self, header: fmt.Header) -> None:
        if header.codec != CODEC_ID or header.modality != "audio":
            raise fmt.TokcFormatError(f"a {header.codec} {header.modality} file; this decoder is {CODEC_ID}")
        fmt.check_weights(header, self.digest)
        if header.rate_dict().get("segment") != self.segment:
            raise fmt.CorruptError(f"header's segment is not this model's {self.segment} tokens")
        if not header.sample_rate or not header.channels:
            raise fmt.TokcFormatError("an audio file without a sample rate or channels")

    def decompress_stream(self, source: bytes | BinaryIO | fmt.Reader) -> Iterator[np.ndarray]:
        """Decode as the file arrives: blocks (k, channels) float32 at the header's rate, one
        per segment (a segment is written once the next one's tokens, its context, are read)."""
        reader = source if isinstance(source, fmt.Reader) else fmt.Reader(
            io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source)
        header = reader.header
        self.check_header(header)
        n = -(-header.num_samples * self.rate // header.sample_rate)
        total = self.frames(n)
        starts = list(range(0, total, self.segment))
        resampler = None
        if header.sample_rate != self.rate:
            import soxr

            resampler = soxr.ResampleStream(self.rate, header.sample_rate, 1, dtype="float64",
                                            quality="HQ")
        tokens = np.empty(0, dtype=np.int64)
        read, emitted, done = 0, 0, 0
        for k, a in enumerate(starts):
            b = min(total, a + self.segment)
            while read < len(starts) and len(tokens) < min(total, b + self.context):
                chunk = next(reader, None)
                if chunk is None:
                    raise fmt.TruncatedError(f"the file ends before segment {read} of {len(starts)}")
                if chunk.tag != TAG:
                    raise fmt.CorruptError(f"unexpected chunk {chunk.tag!r} where segment {read} belongs")
                count = min(self.segment, total - starts[read])
                tokens = np.concatenate([tokens, decode_tokens(chunk.payload, count, self.codebook)])
                read += 1
            block = self.decode_segment(tokens, a, b)[: max(0, n - done)]
            done += len(block)
            last = k == len(starts) - 1
            if resampler is not None:
                block = resampler.resample_chunk(block[:, None], last=last)[:, 0]
            block = block[: header.num_samples - emitted]
            emitted += len(block)
            if last and emitted < header.num_samples:
                block = np.pad(block, (0, header.num_samples - emitted))
                emitted = header.num_samples
            yield np.repeat(np.clip(block, -1, 1)[:, None], header.channels, 1).astype(np.float32)
        if next(reader, None) is not None:
            raise fmt.CorruptError("chunks after the last segment")

    def decompress(self, data: bytes) -> Sound:
        from tokc.compress.audio import decode_whole

        return decode_whole(self, data)
