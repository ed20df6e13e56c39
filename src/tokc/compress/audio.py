"""tokc-audio-v1 codec: audio <-> bytes.

Encoder:  samples (any rate, mono or stereo) -soxr-> 16 kHz; stereo -> mid, side
          per channel: MDCT (hop 320, 20 ms) over the whole signal -> latents y (the band
          envelope on its grid + the envelope-normalised companded coefficients,
          tokc.dsp.analysis, tokc.models.audio) in segments of SEGMENT frames; per segment: z = round(h_a(y)), then exactly the image codec's
          latent coding (compress.latent: integer hyper-synthesis, channel and even/odd-frame
          contexts, ANS), the entropy coder restarted for each segment
Decoder:  per segment and channel: the tokens, the envelope (exact grid integers) and the
          coefficients, filling of the zeroed ones (noise, or the learned fill and its shape),
          inverse MDCT overlap-added across segments (no seams),
          the post-filter the header asks for (the learned one, tokc.dsp.LearnedPostfilter, or
          the fixed tokc.dsp.PitchPostfilter), side -> L/R, 16 kHz -> the input's rate.

File: the header (sample rate and length of the input, channels, the rate level, and the
decoder settings: `lpf`, the number of the learned post-filter; `pf`, the fixed post-filter's
strength 1000·gamma; `nf`, the noise fill's scale in thousandths of the weights' kappa; `lnf`,
the number of the learned fill that replaces the noise fill; `fsh`, the fill shape; a file
without them, as written before they existed, decodes with no post-filter at the weights'
fill), then one
'seg ' chunk per segment and channel (mid before side): the length of the ANS stream (uint32
LE), the ANS stream, the escape stream; an empty chunk is a segment of digital silence (every
coefficient zero), decoded as zeros. With `fsh`, each non-empty 'seg ' chunk is followed by an
'fsh ' chunk: the fill shape's symbols, ANS-coded (see FILL_SHAPE). A segment decodes knowing
only the header and the chunks before it, so `decompress_stream` yields audio as the file arrives (2 s blocks).

Only the encoder's h_a runs in floating point (numpy): float error there can change which
file an encoder writes, never how a file decodes. The token stream a decoder reads is exact
integers on every machine.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import numpy as np

from tokc import dsp
from tokc import format as fmt
from tokc.compress import entropy, ratecontrol, versions
from tokc.compress.base import CodecError, EncodeResult, Sound
from tokc.compress.latent import Coded, LatentCoder, checkerboard
from tokc.compress.ratecontrol import LEVEL_MIN
from tokc.compress.weights import LatentWeights

CODEC_ID = "tokc-audio-v1"
WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / f"{CODEC_ID}.safetensors"
SAMPLE_RATE = 16000  # what the model codes; other rates are resampled (soxr) both ways
SEGMENT = 100  # frames per segment (2 s): the unit of entropy coding and of streaming
Z_STRIDE = 4  # frames per hyper-latent frame
LEVEL_Q0 = -1000  # the level of -q 0
MAX_CHANNELS = 2  # mono, or stereo coded as mid/side
# RDOQ: distortion weight per squared token unit, in bits (the same at every level: the token
# grid is the level's quantizer). Tuned on 12 training clips, BD-rate (PESQ-WB) against plain
# rounding over levels -1..4: weight 2 +5.7 %, 4 +0.7 %, 8 -1.9 %, 12 -2.4 %, 20 -2.6 %.
RDOQ_WEIGHT = 16.0
TAG = "seg "
# The decoder's post-filters, run on each coded channel at 16 kHz before side -> L/R:
# - `lpf` (header rate parameter; default since 2026-12-07): the learned post-filter of that
#   number, tokc.dsp.LearnedPostfilter with the weights tokc-audio-v1.postfilterN.safetensors
#   (trained by tokc.train.audio_postfilter on the decoder's output before it: 1 at the noise
#   fill `nf` 1600, 2 with the learned fill `lnf` 1).
#   Each number stays shipped, so a file decodes the same with every later version.
# - `pf` (written 2026-12-06 only, from a strength table by level that docs/FORMAT.md keeps):
#   the fixed pitch post-filter tokc.dsp.PitchPostfilter at strength pf / 1000.
# - `nf`: the noise fill's kappa in thousandths of the weights' (absent: 1000).
# - `lnf`: the learned fill of that number instead of the noise fill (tokc.dsp.learned_fill
#   with tokc-audio-v1.fillN.safetensors, trained by tokc.train.audio_fill): each zero token
#   gets the RMS a network predicts from the decoded tokens and envelope. Not with `nf`.
# A file with none of them decodes as files did before post-filters existed.
# The fixed one, measured (36 validation clips, benchmarks/results/speech_val_postfilter.md):
# alone it raises PESQ-WB and lowers ViSQOL (12 kbps 3.29 -> 3.39 and 2.85 -> 2.75) as it
# removes the noise fill between the harmonics; with the fill at x1.6 both rise (12 kbps
# 3.374 / 3.003 against 3.285 / 2.851).
NOISE_FILL_MILLI = 1600  # header `nf` that post-filter 1 was trained with (kappa x 1.6)
# What an encoder asks for by default: learned fill 1 and learned post-filter 2 (trained on its
# output), header `lnf` 1 and `lpf` 2 (2026-12-07, second session). Files of the first session
# that day (`lpf` 1, `nf` 1600) decode as they did.
LEARNED_FILL = 1
LEARNED_POSTFILTER = 2
# - `fsh` 1: the fill shape (tokc.dsp.fill_shape_symbols / apply_fill_shape; with `lnf` only):
#   after each non-empty 'seg ' chunk, an 'fsh ' chunk holds one symbol in {-1, 0, 1} per group
#   of 5 coefficients below 4 kHz that has a zero token in a band not near silence
#   (tokc.dsp.shape_groups), ANS-coded with SHAPE_TABLE, that scales the learned fill in the
#   group. Written by default since 2026-12-07 (third session).
FILL_SHAPE = 1
SHAPE_TAG = "fsh "
# - `fsg` 1: the fill signs (tokc.dsp.sign_mask / apply_fill_signs; with `fsh` only): after each
#   'fsh ' chunk, an 'fsg ' chunk holds one bit per coefficient of sign_mask (1: negative), in
#   (coefficient, frame) order, packed most significant bit first, the last byte's unused bits
#   zero; they give the learned fill's magnitudes the true signs. Written wherever the fill
#   shape is, by default since 2026-12-07 (fourth session).
FILL_SIGNS = 1
SIGN_TAG = "fsg "
# - `lbg`: a finer quantizer on the coefficients below 2 kHz (the lowest hop // 4): this
#   fixed-point number (units of 2**-frac_bits, natural log) is added to their trained log gains
#   at every level, so their step on X is exp(-lbg / 2**frac / 0.8) of the trained one, and
#   the entropy model's scales follow (tokc.compress.weights.LatentWeights.with_gain_boost).
#   Absent: 0. Written by default since 2026-12-07 (fourth session) at LOW_BAND_BOOST,
#   0.8 ln(1 / 0.7) 2**12: a step 0.7 times the trained one (training clips at equal file size,
#   docs/AUDIO_TRAINING.md). LOW_BAND_BOOST_MAX bounds what a file may ask for.
LOW_BAND_BOOST = 1169
LOW_BAND_BOOST_MAX = 8192
# values -2..2 and the escape, frequencies of 2**16: the symbols' shares on training clips at
# -b 10 and 16 for -1, 0, 1. After them comes SHAPE_END (16 bits): an ANS stack coder starts
# from an empty state, in which the symbols coded first (decoded last) cost almost nothing
# while the state is below their frequency, so that a stream ending in a run of -1 or 0 would
# be shorter than its information, which the decoder's check against truncated streams
# (entropy.Decoder) takes for one; the end symbol, with the table's last cumulative frequency,
# lifts the state at once. -2 and the escape are never written.
SHAPE_TABLE = entropy.Tables(np.array([[1, 10945, 51180, 3408, 1, 1]], np.int32), np.array([2]))
SHAPE_END = 2
# bits per symbol in shape_size_estimate: above the table's mean code length (0.93 on training
# clips, the estimate then 0.4 % short), so that the file the search picks nearly always fits
SHAPE_BITS = 1.0
# The encoder writes the fill shape (and signs) from this rate level up; where a -b / --size
# target falls inside the step in file size they make, it codes a higher level without them
# (compress). 1000 (about 8 kbps) from the third session of 2026-12-07, 0 since the fourth: with
# the signs and the low band gain, 24 training clips at equal file size, PESQ-WB / ViSQOL at 8
# kbps 3.524 / 3.386 -> 3.506 / 3.546, 10 kbps 3.762 / 3.611 -> 3.760 / 3.633, 12 kbps 3.927 /
# 3.685 -> 3.936 / 3.760 (at 12 kbps a quarter of the clips had fallen inside the step).
FILL_SHAPE_FROM = 0


def writes_fill_shape(level_milli: int) -> bool:
    """Whether the encoder (post-filter on) sends the fill shape at this level."""
    return level_milli >= FILL_SHAPE_FROM


def shape_size_estimate(groups: np.ndarray) -> int:
    """The estimated bytes of a segment's 'fsh ' payload (`groups`: tokc.dsp.shape_groups'
    mask): its symbol count at SHAPE_BITS each and the end symbol, in 32-bit words, plus one
    word."""
    return 4 * (math.ceil((int(groups.sum()) * SHAPE_BITS + 16) / 32) + 1)


@dataclasses.dataclass(frozen=True)
class DecoderSettings:
    gamma: float = 0.0  # the fixed pitch post-filter's strength (0: off)
    fill: float = 1.0  # the noise fill's scale on the weights' kappa
    learned: int = 0  # the learned post-filter's number (0: none)
    learned_fill: int = 0  # the learned fill's number (0: the noise fill)
    fill_shape: int = 0  # the fill shape's number (0: none)
    fill_signs: int = 0  # the fill signs' number (0: none)
    low_band_boost: int = 0  # header `lbg`


def decoder_settings(header: fmt.Header) -> DecoderSettings:
    """The post-filter and noise fill a file asks for (none and the weights' fill when it says
    nothing); TokcFormatError for values out of range or a learned post-filter this version
    does not have."""
    rate = header.rate_dict()
    pf, nf, lpf, lnf = rate.get("pf", 0), rate.get("nf", 1000), rate.get("lpf", 0), rate.get("lnf", 0)
    fsh, fsg, lbg = rate.get("fsh", 0), rate.get("fsg", 0), rate.get("lbg", 0)
    if not 0 <= lbg <= LOW_BAND_BOOST_MAX:
        raise fmt.TokcFormatError("low band gain out of range")
    if not 0 <= pf <= 1000:
        raise fmt.TokcFormatError("post-filter strength out of range")
    if not 0 <= nf <= 4000:
        raise fmt.TokcFormatError("noise fill scale out of range")
    if lpf and pf:
        raise fmt.TokcFormatError("the file asks for two post-filters")
    if lnf and "nf" in rate:
        raise fmt.TokcFormatError("the file asks for two noise fills")
    for kind, number in (("post-filter", lpf), ("fill", lnf)):
        if number and (number < 0 or not decoder_weights_path(kind, number).exists()):
            raise fmt.TokcFormatError(f"the file asks for learned {kind} {number}, which this "
                                      "version of tokc does not have")
    if fsh and not lnf:
        raise fmt.TokcFormatError("the file asks for a fill shape without the learned fill")
    if fsh not in (0, FILL_SHAPE):
        raise fmt.TokcFormatError(f"the file asks for fill shape {fsh}, which this version of "
                                  "tokc does not have")
    if fsg and not fsh:
        raise fmt.TokcFormatError("the file asks for fill signs without the fill shape")
    if fsg not in (0, FILL_SIGNS):
        raise fmt.TokcFormatError(f"the file asks for fill signs {fsg}, which this version of "
                                  "tokc does not have")
    return DecoderSettings(pf / 1000, nf / 1000, lpf, lnf, fsh, fsg, lbg)


def side_chunk(reader: Iterator[fmt.Chunk], tag: str, wanted: int, segment: int) -> bytes | None:
    """The payload of segment `segment`'s next chunk, which must be a `tag` chunk, where the
    header asks for it (`wanted`); None where it does not."""
    if not wanted:
        return None
    got = next(reader, None)
    if got is None or got.tag != tag:
        raise fmt.CorruptError(f"segment {segment} lacks its {tag!r} chunk")
    return got.payload


def decoder_weights_path(kind: str, number: int) -> Path:
    """The weights of learned post-filter or fill `number` (kind "post-filter" or "fill")."""
    stem = {"post-filter": "postfilter", "fill": "fill"}[kind]
    return WEIGHTS.with_name(f"{CODEC_ID}.{stem}{int(number)}.safetensors")


_decoder_weights: dict[tuple[str, int], dict[str, np.ndarray]] = {}


def decoder_params(kind: str, number: int) -> dict[str, np.ndarray]:
    """A learned post-filter's or fill's weights (loaded once)."""
    if (kind, number) not in _decoder_weights:
        from safetensors.numpy import load_file

        _decoder_weights[kind, number] = load_file(str(decoder_weights_path(kind, number)))
    return _decoder_weights[kind, number]


def as_sound(audio, sample_rate: int | None = None) -> Sound:
    """A path (WAV, FLAC, OGG, MP3: soundfile), a Sound, or an array (n,) / (n, channels)
    with sample_rate= -> Sound (float32). Integer arrays are scaled by their type's range."""
    if isinstance(audio, (str, Path)):
        from tokc.compress.sound import read_sound

        return read_sound(audio)
    if isinstance(audio, Sound):
        return audio
    if sample_rate is None:
        raise CodecError("give the sample_rate of an array of samples")
    if not 1 <= int(sample_rate) <= fmt.MAX_SAMPLE_RATE:
        raise CodecError(f"sample rate {sample_rate} is out of range (1..{fmt.MAX_SAMPLE_RATE})")
    x = np.asarray(audio)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise CodecError(f"expected samples of shape (n,) or (n, channels), got {x.shape}")
    if x.dtype == np.uint8:  # 8-bit WAV: unsigned, centred on 128
        x = (x.astype(np.float64) - 128) / 128
    elif np.issubdtype(x.dtype, np.signedinteger):
        x = x.astype(np.float64) / 2.0 ** (8 * x.itemsize - 1)
    elif not np.issubdtype(x.dtype, np.floating):
        raise CodecError(f"expected integer or float samples, got {x.dtype}")
    return Sound(x.astype(np.float32), int(sample_rate))


class AudioWeights(LatentWeights):
    """The weights file of tokc-audio-v1 (the shipped one by default): LatentWeights plus h_a
    (fp16) for the encoder."""

    codec_id = CODEC_ID

    def __init__(self, path: Path = WEIGHTS, threads: int = 0):
        super().__init__(path, threads)
        cfg = self.config
        self.hop, self.bands, self.power = int(cfg["hop"]), int(cfg["bands"]), float(cfg["power"])
        self.env_step, self.norm = float(cfg["env_step"]), float(cfg["norm"])
        # the noise-fill share: one, or one per band (0 for band 0: no noise under 500 Hz)
        self.kappa = np.asarray(cfg["kappa"], np.float64) if isinstance(cfg["kappa"], list) \
            else float(cfg["kappa"])

    @cached_property
    def h_a_layers(self) -> list[tuple]:
        """h_a (the encoder's; an archived version has none): magnitudes, 1x1 conv, ReLU,
        1x5 conv stride 2, ReLU, 1x5 conv stride 2."""
        versions.check_encodes(self)
        state = {k: v.astype(np.float64) for k, v in self.float_state("h_a").items()}
        return [(state[f"{i}.weight"], state[f"{i}.bias"], s) for i, s in ((1, 1), (3, 2), (5, 2))]

    def h_a(self, y: np.ndarray) -> np.ndarray:
        """(m, T) latents -> (nz, T / 4) hyper-latents (float)."""
        x = np.concatenate([y[: self.bands], np.abs(y[self.bands:])])
        for i, (w, b, stride) in enumerate(self.h_a_layers):
            x = conv1d(x, w, b, stride)
            if i < len(self.h_a_layers) - 1:
                x = np.maximum(x, 0)
        return x


def conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """torch's Conv2d with a (1, k) kernel, stride (1, stride), padding (0, k // 2), on (C, T)."""
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (k // 2, k // 2)))
    t_out = (xp.shape[1] - k) // stride + 1
    cols = np.stack([xp[:, j : j + stride * (t_out - 1) + 1 : stride] for j in range(k)], 1)
    return w.reshape(w.shape[0], -1) @ cols.reshape(-1, t_out) + b[:, None]


def segments(frames: int) -> Iterator[tuple[int, int]]:
    """(first frame, frames) of each segment of a signal of `frames` frames (lazily: a header
    may claim any length, and the file runs out long before a forged one's segments do)."""
    return ((s, min(SEGMENT, frames - s)) for s in range(0, frames, SEGMENT))


def segment_count(frames: int) -> int:
    return -(-frames // SEGMENT)


def coded_samples(num_samples: int, sample_rate: int) -> int:
    """Samples at 16 kHz that code num_samples at sample_rate (the decoder computes the same)."""
    return -(-num_samples * SAMPLE_RATE // sample_rate)


def kbps_guess(kbps: float) -> int:
    """Where the -b search starts: the level (thousandths) that gave `kbps` on a speech clip
    with the shipped weights (6 kbps near level 0.4, each doubling about 1.5 levels more);
    a poor guess costs only probes (ratecontrol.largest_fitting)."""
    return int(round(400 + 1500 * math.log2(kbps / 6)))


class AudioCodec:
    codec_id = CODEC_ID
    modality = "audio"
    low_band_boost = 0  # header `lbg` of the files this codec object writes and reads

    def __init__(self, weights: AudioWeights | None = None, backend: str = "auto"):
        """backend: accepted for the registry's contract; the audio codec runs numpy only."""
        self.weights = weights or AudioWeights()
        self.backend = backend
        self.latent = LatentCoder(self.weights, checkerboard)
        w = self.weights
        self.rdoq = np.concatenate([np.full(w.bands, np.inf), np.full(w.hop, RDOQ_WEIGHT)])
        self.grid = np.arange(w.bands + w.hop) < w.bands  # the envelope: exact grid tokens
        self._versions = {}  # digest -> the codec of an archived version (versions.for_digest)
        # low band gain -> this codec's view with it (with_low_band_boost), shared by the views, so
        # that each is made once and keeps what it caches (h_a, the integer networks' sessions)
        self._boosted = {0: self}

    def with_low_band_boost(self, boost: int) -> AudioCodec:
        """This codec with the low band's gains raised by `boost` (header `lbg`): a view that
        shares the weights."""
        if boost not in self._boosted:
            view = copy.copy(self._boosted[0])
            w = view.weights
            gains = np.zeros(w.bands + w.hop, np.int64)
            gains[w.bands : w.bands + w.hop // 4] = boost
            view.weights = w.with_gain_boost(gains)
            view.latent = LatentCoder(view.weights, checkerboard)
            view.low_band_boost = boost
            self._boosted[boost] = view
        return self._boosted[boost]

    def for_digest(self, digest: bytes) -> AudioCodec:
        """The codec of the weights a file names: these, or an earlier version archived in
        weights/versions/ beside them (tokc.compress.versions); WeightsMismatchError if none."""
        return versions.for_digest(self, digest)

    # -- encoder --
    def latents(self, x: np.ndarray) -> np.ndarray:
        """16 kHz mono samples -> y (m, T) over the whole signal, T a multiple of Z_STRIDE."""
        hop = self.weights.hop
        frames = dsp.frames_for(len(x), hop, Z_STRIDE)
        w = self.weights
        coefs = dsp.mdct(dsp.pad_signal(x.astype(np.float64), hop, frames), hop)
        k, u = dsp.analysis(coefs, w.bands, w.env_step, w.norm, w.power)
        return np.concatenate([k * w.env_step, u])

    def analyse(self, y: np.ndarray) -> list[tuple]:
        """Per segment: (y, z, mean, log_scale_q) on a (C, 1, T) grid; level-independent."""
        out = []
        for s, n in segments(y.shape[1]):
            ys = y[:, s : s + n]
            z = np.round(self.weights.h_a(ys)).astype(np.int64)[:, None]
            mean, log_scale_q = self.latent.entropy_params(z)
            out.append((ys[:, None], z, mean, log_scale_q))
        return out

    def weight_at(self, level_milli: int) -> np.ndarray | None:
        return np.where(np.isinf(self.rdoq), 1e12, self.rdoq) if RDOQ_WEIGHT > 0 else None

    def segment_chunks(self, analysed: list[list[tuple]], level_milli: int,
                       shape: bool | str = False, signs: bool = False) -> list[fmt.Chunk]:
        """analysed: per channel, analyse()'s segments -> the 'seg ' chunks in file order,
        each non-empty one followed by its 'fsh ' chunk if `shape` (the fill shape; "estimate":
        zero bytes of its estimated size, for the rate search) and then, if `signs` too, its
        'fsg ' chunk (the fill signs)."""
        chunks = []
        weight = self.weight_at(level_milli)
        for segs in zip(*analysed):
            for y, z, mean, log_scale_q in segs:
                if not y[self.weights.bands:].any():  # digital silence: an empty chunk
                    chunks.append(fmt.Chunk(TAG, b""))
                    continue
                c = self.latent.code(y, mean, log_scale_q, level_milli, weight, self.grid)
                chunks.append(fmt.Chunk(TAG, self.latent.payload(z, c)))
                if shape == "estimate":
                    size = shape_size_estimate(self.shape_groups(c))
                    chunks.append(fmt.Chunk(SHAPE_TAG, bytes(size)))
                elif shape:
                    chunks.append(fmt.Chunk(SHAPE_TAG, self.shape_payload(y[:, 0], c, level_milli)))
                if shape and signs:
                    chunks.append(fmt.Chunk(SIGN_TAG, self.sign_payload(y[:, 0], c)))
        return chunks

    def sign_mask(self, c: Coded) -> np.ndarray:
        """Tokens of one segment -> the coefficients that get a fill sign (hop, frames)."""
        return dsp.sign_mask(c.q[self.weights.bands:, 0] == 0, self.envelope(c))

    def sign_payload(self, y: np.ndarray, c: Coded) -> bytes:
        """The fill signs of a coded segment (y: its latents (m, frames)): a bit per coefficient
        of sign_mask, 1 where the true coefficient is negative."""
        return np.packbits(y[self.weights.bands:][self.sign_mask(c)] < 0).tobytes()

    def read_signs(self, payload: bytes, mask: np.ndarray) -> np.ndarray:
        """An 'fsg ' chunk -> the signs (True: negative) of the coefficients under `mask`."""
        n = int(mask.sum())
        if len(payload) != (n + 7) // 8:
            raise fmt.CorruptError(f"an {SIGN_TAG!r} chunk of {len(payload)} bytes where "
                                   f"{(n + 7) // 8} belong")
        bits = np.unpackbits(np.frombuffer(payload, np.uint8))
        if bits[n:].any():
            raise fmt.CorruptError(f"an {SIGN_TAG!r} chunk with bits past its signs")
        return bits[:n].astype(bool)

    def shape_payload(self, y: np.ndarray, c: Coded, level_milli: int) -> bytes:
        """The fill shape of a coded segment (y: its latents (m, frames)): the symbols
        (tokc.dsp.fill_shape_symbols) of the true coefficients against the decoder's learned
        fill, ANS-coded in (group, frame) order."""
        w = self.weights
        env_hat, q, u_hat, cap = self.fill_inputs(c, level_milli)
        scale = dsp.band_scale(env_hat, w.norm, w.hop)
        filled = dsp.decode_frames_learned(env_hat, q, u_hat, cap, level_milli / 1000,
                                           decoder_params("fill", LEARNED_FILL), w.power, w.norm,
                                           np.random.default_rng(0))  # magnitudes: any signs
        groups = dsp.shape_groups(q == 0, env_hat)
        symbols = dsp.fill_shape_symbols(dsp.expand(y[w.bands:], w.power) * scale, filled, q == 0, groups)
        values = np.append(symbols[groups], SHAPE_END)
        enc = entropy.Encoder()
        enc.add(SHAPE_TABLE, values, np.zeros(len(values), np.int64))
        return enc.finish()[0]

    def envelope(self, c: Coded) -> np.ndarray:
        """Tokens of one segment -> its decoded envelope (bands, frames; log2 band RMS)."""
        w = self.weights
        return self.latent.grid_values(c, slice(0, w.bands))[:, 0] * w.env_step

    def shape_groups(self, c: Coded) -> np.ndarray:
        """Tokens of one segment -> the groups that get a fill shape symbol (groups, frames)."""
        return dsp.shape_groups(c.q[self.weights.bands:, 0] == 0, self.envelope(c))

    def read_shape(self, payload: bytes, groups: np.ndarray) -> np.ndarray:
        """An 'fsh ' chunk -> the fill shape symbols (groups, frames) of a segment whose
        symbol-carrying groups are `groups` (shape_groups)."""
        dec = entropy.Decoder(payload, b"")
        symbols = np.zeros(groups.shape, np.int64)
        values = dec.decode(SHAPE_TABLE, np.zeros(int(groups.sum()) + 1, np.int64))
        dec.finish()
        if values[-1] != SHAPE_END or np.abs(values[:-1]).max(initial=0) > 1:
            raise fmt.CorruptError(f"an {SHAPE_TAG!r} chunk with a symbol out of range")
        symbols[groups] = values[:-1]
        return symbols

    def header(self, sound: Sound, level_milli: int, postfilter: bool = True,
               side: bool = True) -> fmt.Header:
        """The file's header; `side`: the fill shape and signs where the level has them."""
        rate = (("level_milli", level_milli),)
        if self.low_band_boost:
            rate += (("lbg", self.low_band_boost),)
        if postfilter:
            rate += (("lpf", LEARNED_POSTFILTER), ("lnf", LEARNED_FILL))
            if side and writes_fill_shape(level_milli):
                rate += (("fsh", FILL_SHAPE), ("fsg", FILL_SIGNS))
        return fmt.Header(codec=CODEC_ID, weights_digest=self.weights.digest, modality="audio",
                          channels=sound.channels, sample_rate=sound.sample_rate,
                          num_samples=sound.samples.shape[0], rate=rate)

    def to_coded_channels(self, sound: Sound) -> list[np.ndarray]:
        """The 16 kHz channels the model codes: mono, or mid and side."""
        x = sound.samples.astype(np.float64)
        if sound.sample_rate != SAMPLE_RATE and len(x):
            import soxr

            x = soxr.resample(x, sound.sample_rate, SAMPLE_RATE, quality="HQ")
        n = coded_samples(sound.samples.shape[0], sound.sample_rate)
        x = np.pad(x[:n], ((0, max(0, n - len(x))), (0, 0)))
        if x.shape[1] == 2:
            return [(x[:, 0] + x[:, 1]) / 2, (x[:, 0] - x[:, 1]) / 2]
        return [x[:, 0]]

    def compress(self, audio, quality: float | None = None, kbps: float | None = None,
                 size: int | None = None, sample_rate: int | None = None,
                 postfilter: bool = True) -> EncodeResult:
        """audio: a path, Sound, or array with sample_rate=. Rate: quality 0..100 (default
        75; 100 is the highest rate, not lossless), kbps (the highest quality whose file is at
        most that average bitrate) or size (bytes). postfilter: ask the decoder for the learned
        post-filter and the learned fill it was trained with (LEARNED_POSTFILTER,
        LEARNED_FILL); on by default (off: the noise fill alone)."""
        if self.low_band_boost != LOW_BAND_BOOST:
            return self.with_low_band_boost(LOW_BAND_BOOST).compress(
                audio, quality, kbps, size, sample_rate, postfilter)
        versions.check_encodes(self.weights)
        sound = as_sound(audio, sample_rate)
        if not 1 <= sound.channels <= MAX_CHANNELS:
            raise CodecError(f"{CODEC_ID} codes mono or stereo; this has {sound.channels} "
                             "channels (downmix it first)")
        if not np.isfinite(sound.samples).all():
            raise CodecError("the audio has NaN or infinite samples")
        if sum(v is not None for v in (quality, kbps, size)) > 1:
            raise CodecError("give at most one of quality, kbps and size")
        if kbps is not None:
            if not kbps > 0:
                raise CodecError(f"kbps must be positive, got {kbps}")
            size = max(1, int(kbps * 1000 / 8 * max(sound.seconds, 1e-9)))
        analysed = [self.analyse(self.latents(x)) for x in self.to_coded_channels(sound)]

        cache: dict[tuple[int, bool], bytes] = {}

        def packed(level_milli: int, exact: bool = True, side: bool = True) -> bytes:
            """The file at a level (`side`: with the fill shape and signs where the level has
            them); not `exact`: its fill shape chunks stand in at their estimated size (what
            the level search probes: shape_payload runs the fill)."""
            shaped = side and postfilter and writes_fill_shape(level_milli)
            key = (level_milli, exact or not shaped, shaped)
            if key not in cache:
                shape = (True if exact else "estimate") if shaped else False
                cache[key] = fmt.pack(self.header(sound, level_milli, postfilter, side),
                                      self.segment_chunks(analysed, level_milli, shape=shape,
                                                          signs=shaped))
            return cache[key]

        def choose(exact: bool, guess: int | None, side: bool = True) -> int:
            return ratecontrol.choose_level(
                self.weights.levels, lambda lv: len(packed(lv, exact, side)), None,
                75 if quality is None else quality, size, None, q0=LEVEL_Q0, size_guess=guess)

        try:
            level_milli = choose(False, None if kbps is None else kbps_guess(kbps))
            if size is not None and len(packed(level_milli)) > size:  # the estimate fell short
                level_milli = choose(True, level_milli)
        except CodecError:
            if kbps is None:
                raise
            lowest = len(packed(LEVEL_MIN)) * 8 / max(sound.seconds, 1e-9) / 1000
            raise CodecError(f"{kbps:g} kbps is below this codec's lowest rate for this audio "
                             f"({lowest:.2f} kbps)") from None
        side = True
        if size is not None and postfilter and not writes_fill_shape(level_milli):
            # the fill shape and signs (about 2 kbps) start at FILL_SHAPE_FROM: a step in the
            # file size. A size inside the step is met at a higher level without them.
            plain = choose(True, level_milli, side=False)
            if plain > level_milli:
                level_milli, side = plain, False
        data = packed(level_milli, side=side)
        quality = ratecontrol.level_to_quality(level_milli, self.weights.levels, LEVEL_Q0)
        return EncodeResult(data, CODEC_ID, "audio", sample_rate=sound.sample_rate,
                            num_samples=sound.samples.shape[0],
                            rate={"level": level_milli / 1000, "quality": min(100.0, max(0.0, quality))})

    def summary(self, res: EncodeResult) -> tuple[dict, str]:
        return {"quality": round(res.quality, 2)}, f"q {res.quality:.1f}"

    # -- decoder --
    def check_header(self, header: fmt.Header) -> int:
        """The header's rate level, after checking the header is one this decoder reads."""
        if header.codec != CODEC_ID or header.modality != "audio":
            raise fmt.TokcFormatError(f"this file was made by codec {header.codec!r} "
                                      f"({header.modality}); this decoder is {CODEC_ID}")
        fmt.check_weights(header, self.weights.digest)
        level_milli = header.rate_dict().get("level_milli", LEVEL_MIN - 1)
        if not LEVEL_MIN <= level_milli <= (self.weights.levels - 1) * 1000:
            raise fmt.TokcFormatError(f"rate level {level_milli} is out of range")
        if not 1 <= header.channels <= MAX_CHANNELS:
            raise fmt.TokcFormatError(f"an audio file of {header.channels} channels")
        if not header.sample_rate:
            raise fmt.TokcFormatError("an audio file without a sample rate")
        decoder_settings(header)
        return level_milli

    def read_segment(self, payload: bytes, frames: int, level_milli: int) -> Coded:
        return self.latent.read_payload(payload, (1, frames // Z_STRIDE), level_milli, f"a {TAG!r} chunk")[1]

    def fill_inputs(self, c: Coded, level_milli: int) -> tuple[np.ndarray, ...]:
        """Tokens of one segment -> what the decoder fills from: the decoded envelope (bands,
        frames; log2 band RMS), the coefficients' tokens and dequantized values (hop, frames)
        and a zero token's largest magnitude (hop, 1), the last two in u's domain."""
        w = self.weights
        env_hat = self.envelope(c)
        u_hat = self.latent.latents(c, level_milli)[w.bands:, 0]
        cap = 0.5 * np.exp(w.log_igain_at(level_milli)[w.bands:])[:, None]
        return env_hat, c.q[w.bands:, 0], u_hat, cap

    def synthesise(self, c: Coded, level_milli: int, seed: list[int], fill: float = 1.0,
                   learned_fill: int = 0, shape: bytes | None = None,
                   signs: bytes | None = None) -> np.ndarray:
        """Tokens of one segment -> its MDCT coefficients (hop, frames), noise-filled at `fill`
        times the weights' kappa, or by learned fill number `learned_fill`, shaped by the
        segment's 'fsh ' chunk `shape` if given, and signed by its 'fsg ' chunk `signs`."""
        w = self.weights
        env_hat, q, u_hat, cap = self.fill_inputs(c, level_milli)
        gen = np.random.default_rng(seed)
        if learned_fill:
            shaping = None
            if shape is not None:
                groups = dsp.shape_groups(q == 0, env_hat)
                shaping = (self.read_shape(shape, groups), groups)
            coefs = dsp.decode_frames_learned(env_hat, q, u_hat, cap, level_milli / 1000,
                                              decoder_params("fill", learned_fill), w.power, w.norm, gen,
                                              shaping)
            if signs is not None:
                mask = dsp.sign_mask(q == 0, env_hat)
                coefs = dsp.apply_fill_signs(coefs, mask, self.read_signs(signs, mask))
            return coefs
        return dsp.decode_frames(env_hat, u_hat, q == 0, cap, w.kappa * fill, w.power, w.norm, gen)

    def decompress_stream(self, source: bytes | BinaryIO | fmt.Reader) -> Iterator[np.ndarray]:
        """Decode as the file arrives: yields blocks (k, channels) float32 at the header's
        sample rate, about SEGMENT frames (2 s) each, num_samples in all. `stream_header`
        gives the header first, if wanted."""
        reader = source if isinstance(source, fmt.Reader) else fmt.Reader(
            io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source)
        header = reader.header
        codec = self.for_digest(header.weights_digest) if header.codec == CODEC_ID else self
        if codec is not self:  # a file of earlier weights
            yield from codec.decompress_stream(reader)
            return
        level_milli = self.check_header(header)
        settings = decoder_settings(header)
        if settings.low_band_boost != self.low_band_boost:
            yield from self.with_low_band_boost(settings.low_band_boost).decompress_stream(reader)
            return
        hop = self.weights.hop
        n16 = coded_samples(header.num_samples, header.sample_rate)
        frames = dsp.frames_for(n16, hop, Z_STRIDE)
        resampler = None
        if header.sample_rate != SAMPLE_RATE:
            import soxr

            resampler = soxr.ResampleStream(SAMPLE_RATE, header.sample_rate, header.channels,
                                            dtype="float64", quality="HQ")
        fill = settings.fill
        if settings.learned:
            params = decoder_params("post-filter", settings.learned)
            postfilters = [dsp.LearnedPostfilter(params, level_milli / 1000) for _ in range(header.channels)]
        elif settings.gamma > 0:
            postfilters = [dsp.PitchPostfilter(settings.gamma) for _ in range(header.channels)]
        else:
            postfilters = None
        tail = np.zeros((hop, header.channels))
        done16, emitted = 0, 0  # 16 kHz samples past the padding decoded, output samples given
        count = segment_count(frames)
        for k, (s, n) in enumerate(segments(frames)):
            coded = []
            for ch in range(header.channels):
                chunk = next(reader, None)
                if chunk is None:
                    raise fmt.TruncatedError(f"the file ends before segment {k} of {count}")
                if chunk.tag != TAG:
                    raise fmt.CorruptError(f"unexpected chunk {chunk.tag!r} where segment {k} belongs")
                if chunk.payload:
                    shape = side_chunk(reader, SHAPE_TAG, settings.fill_shape, k)
                    signs = side_chunk(reader, SIGN_TAG, settings.fill_signs, k)
                    coefs = self.synthesise(self.read_segment(chunk.payload, n, level_milli), level_milli,
                                            [k, ch], fill, settings.learned_fill, shape, signs)
                else:  # digital silence
                    coefs = np.zeros((hop, n))
                coded.append(dsp.imdct(coefs, hop))
            wave = np.stack(coded, 1)  # ((n + 1) * hop, channels), starting at frame s
            wave[:hop] += tail
            tail = wave[-hop:].copy()
            block = wave[:-hop]
            if s == 0:
                block = block[hop:]  # the leading padding
            block = block[: max(0, n16 - done16)]
            done16 += len(block)
            last = k == count - 1
            if postfilters:  # they delay the output (~640 / ~1280 samples); the flush gives it back
                block = np.stack([np.concatenate([pf.push(block[:, c]), pf.flush() if last else []])
                                  for c, pf in enumerate(postfilters)], 1)
            if header.channels == 2:
                block = np.stack([block[:, 0] + block[:, 1], block[:, 0] - block[:, 1]], 1)
            if resampler is not None:
                block = resampler.resample_chunk(block, last=last)
            block = block[: header.num_samples - emitted]
            emitted += len(block)
            if last and emitted < header.num_samples:  # the resampler's last few samples
                block = np.concatenate([block, np.zeros((header.num_samples - emitted, header.channels))])
                emitted = header.num_samples
            yield np.clip(block, -1, 1).astype(np.float32)
        if next(reader, None) is not None:
            raise fmt.CorruptError("chunks after the last segment")

    def decompress(self, data: bytes) -> Sound:
        return decode_whole(self, data)


def decode_whole(codec, data: bytes) -> Sound:
    """A streaming audio codec's whole decode: its decompress_stream's blocks as one Sound."""
    header = fmt.read_header(data)
    blocks = list(codec.decompress_stream(data))
    samples = np.concatenate(blocks) if blocks else np.zeros((0, header.channels), np.float32)
    return Sound(samples, header.sample_rate)


_default: dict[str, AudioCodec] = {}


def open_codec(*, backend: str = "auto", weights: str | Path | None = None) -> AudioCodec:
    """The registry's factory: the shipped weights (loaded once) or a weights file."""
    if weights is not None:
        return AudioCodec(AudioWeights(Path(weights)), backend)
    if "default" not in _default:
        if not WEIGHTS.exists():
            raise CodecError(f"{CODEC_ID}'s weights are not in this install ({WEIGHTS})")
        _default["default"] = AudioCodec(backend=backend)
    return _default["default"]
