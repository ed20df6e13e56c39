"""Latent coding over a latent of any rank (C, *grid): an image's (C, h, w), an audio
signal's (C, 1, T) (1-D latents are coded as a one-row grid, so the same networks, context
order and tables serve both).

    coder = LatentCoder(weights)                   # weights: tokc.compress.weights.LatentWeights
    mean, log_scale_q = coder.entropy_params(z)     # exact integers from the hyper-latent z
    c = coder.code(y, mean, log_scale_q, level)     # tokens q, scale indices, offsets (+ RDOQ)
    chunks = coder.chunks(z, c)                     # the 'ans ' (and 'esc ') chunks
    z, c = coder.read(by_tag, z_shape, level)       # the decoder: the same tokens
    y_hat = coder.latents(c, level)

Coding order: slice by slice (channel context: the slices before), each slice in the parts
that `order(grid shape)` gives (boolean masks; spatial context: the first part's tokens).
`checkerboard` is the default: on a 2-D grid the anchors where row + column is even, then the
rest; on a (1, T) grid the even frames, then the odd ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tokc import format as fmt
from tokc.compress import entropy


@dataclass(frozen=True)
class Coded:
    """The latents at one rate level, as coded."""

    q: np.ndarray  # (M, *grid) int64 tokens
    index: np.ndarray  # (M, *grid) int64 scale index: the coding table of each token
    offset: np.ndarray  # (M, *grid) float64: y*gain is coded as q + offset


def checkerboard(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Anchors (sum of the grid indices even), then the rest: a checkerboard on (h, w),
    even/odd frames on (1, T) or (T,)."""
    anchor = np.indices(shape).sum(0) % 2 == 0
    return [anchor, ~anchor]


def per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """(C,) -> (C, 1, ...) broadcasting over a grid of ndim - 1 axes."""
    return np.asarray(v).reshape((-1,) + (1,) * (ndim - 1))


class LatentCoder:
    decoder_type = entropy.Decoder  # the ANS decoder read() uses (a benchmark may time it)

    def __init__(self, weights, order: Callable[[tuple[int, ...]], list[np.ndarray]] = checkerboard):
        self.weights = weights
        self.order = order

    def entropy_params(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact integer entropy parameters: the mean (ungained) and the fixed-point log scale."""
        out = self.weights.hs(z)
        m = out.shape[0] // 2
        return out[:m] / 2.0**self.weights.frac, out[m:].astype(np.int64)

    def scale_index(self, log_scale_q: np.ndarray, level_milli: int,
                    channels: slice = slice(None)) -> np.ndarray:
        meta = self.weights.meta
        lg = per_channel(self.weights.log_gain_at(level_milli)[channels], log_scale_q.ndim)
        step = int(meta["scale_step_q"])
        k = (log_scale_q + lg - int(meta["scale_base_q"]) + step // 2) // step
        return np.clip(k, 0, len(self.weights.y_tables.offsets) - 1)

    def parts(self, shape: tuple[int, ...]) -> list[np.ndarray]:
        """The coding order inside a slice: all of it, or with a spatial context `order`'s parts."""
        if not self.weights.spatial:
            return [np.ones(shape, dtype=bool)]
        return self.order(shape)

    def walk(self, mean: np.ndarray, log_scale_q: np.ndarray, level_milli: int, tokens) -> Coded:
        """Walk the latents in coding order: slice by slice (one slice without a context
        model), each in its parts. For each part: the offset (gained mean plus the contexts'
        shifts: float, used only to quantize and to reconstruct), the scale indices (exact
        integers: they choose the coding tables), then tokens(channels, part, offset, index)
        -> the part's integer tokens, (channels, count) (the encoder rounds, the decoder reads
        the stream). Encoder and decoder share this walk."""
        w = self.weights
        frac = 2.0**w.frac
        offset = mean * per_channel(np.exp(w.log_gain_at(level_milli) / frac), mean.ndim)
        cs = w.slice_channels
        parts = self.parts(mean.shape[1:])
        at = [np.flatnonzero(p) for p in parts]  # each part's positions in the flat grid
        q = np.zeros(mean.shape, dtype=np.int64)
        index = np.zeros(mean.shape, dtype=np.int64)
        # (channels, positions) views: integer indices gather and scatter faster than masks
        flat_q, flat_index, flat_offset = (a.reshape(len(a), -1) for a in (q, index, offset))
        for s in range(len(w.ctx) + 1):
            ch = slice(s * cs, (s + 1) * cs)
            log_scale = log_scale_q[ch].reshape(cs, -1)
            if s:  # channel context: the tokens of the slices before
                shift = w.ctx[s - 1](q[: s * cs]).reshape(2 * cs, -1)
                flat_offset[ch] += shift[:cs] / frac
                log_scale = log_scale + shift[cs:].astype(np.int64)
            for i, (part, pos) in enumerate(zip(parts, at)):
                part_log_scale = log_scale[:, pos]
                if i:  # spatial context: this slice's tokens of the first part
                    shift = w.spatial[s](q[ch] * parts[0]).reshape(2 * cs, -1)
                    flat_offset[ch, pos] += shift[:cs, pos] / frac
                    part_log_scale = part_log_scale + shift[cs:, pos].astype(np.int64)
                flat_index[ch, pos] = k = self.scale_index(part_log_scale, level_milli, ch)
                flat_q[ch, pos] = tokens(ch, part, flat_offset[ch, pos], k)
        return Coded(q, index, offset)

    def code(self, y: np.ndarray, mean: np.ndarray, log_scale_q: np.ndarray, level_milli: int,
             weight: np.ndarray | None = None, grid: np.ndarray | None = None) -> Coded:
        """The tokens of latents y at a level: rounded, then, given weight (M,) (distortion per
        squared token unit of each channel, in units of the rate in bits), each nonzero token
        moved one step toward its prediction where that lowers rate + distortion
        (rate-distortion optimised quantization; encoder only: any decoder reads the tokens
        the same way). grid (M,) bool: channels whose y * gain are integers already (values on
        the level's grid); their tokens are those integers less the rounded offset, so that
        the decoder gets them back exactly (grid_values), and RDOQ leaves them alone."""
        w = self.weights
        yg = y * per_channel(np.exp(w.log_gain_at(level_milli) / 2.0**w.frac), y.ndim)
        if weight is not None:
            weight = weight[:, None]

        def tokens(ch, part, offset, index):
            r = yg[ch][:, part] - offset
            q = np.round(r).astype(np.int64)
            on_grid = None if grid is None else grid[ch]
            if on_grid is not None and on_grid.any():
                q[on_grid] = (np.round(yg[ch][:, part][on_grid]) - np.round(offset[on_grid])).astype(np.int64)
            if weight is None:
                return q
            q1 = q - np.sign(q)
            d_rate = w.y_tables.cost_bits(q1, index) - w.y_tables.cost_bits(q, index)
            d_dist = (r - q1) ** 2 - (r - q) ** 2
            move = (q != 0) & (d_rate + weight[ch] * d_dist < 0)
            if on_grid is not None:
                move[on_grid] = False
            return np.where(move, q1, q)

        return self.walk(mean, log_scale_q, level_milli, tokens)

    def chunks(self, z: np.ndarray, c: Coded) -> list[fmt.Chunk]:
        """The hyper-latent and the tokens, entropy coded in the decoder's order: 'ans ', and
        'esc ' when a token fell outside its table."""
        enc = entropy.Encoder()
        enc.add(self.weights.z_tables, z, np.broadcast_to(per_channel(np.arange(z.shape[0]), z.ndim), z.shape))
        cs = self.weights.slice_channels
        parts = self.parts(c.q.shape[1:])
        for s in range(0, c.q.shape[0], cs):  # in the decoder's order (see walk)
            for part in parts:
                enc.add(self.weights.y_tables, c.q[s : s + cs][:, part], c.index[s : s + cs][:, part])
        stream, escapes = enc.finish()
        chunks = [fmt.Chunk("ans ", stream)]
        if escapes:
            chunks.append(fmt.Chunk("esc ", escapes))
        return chunks

    def read(self, by_tag: dict, z_grid: tuple[int, ...], level_milli: int) -> tuple[np.ndarray, Coded]:
        """The decoder: z (channels, *z_grid) and the tokens, exactly as the encoder coded them."""
        if "ans " not in by_tag:
            raise fmt.TokcFormatError("missing the 'ans ' chunk")
        cz = self.weights.z_tables.freq.shape[0]
        dec = self.decoder_type(by_tag["ans "], by_tag.get("esc ", b""))
        zshape = (cz, *z_grid)
        z = dec.decode(self.weights.z_tables, np.broadcast_to(per_channel(np.arange(cz), len(zshape)), zshape))
        mean, log_scale_q = self.entropy_params(z)
        c = self.walk(mean, log_scale_q, level_milli,
                      lambda ch, part, offset, index: dec.decode(self.weights.y_tables, index))
        dec.finish()
        return z, c

    def payload(self, z: np.ndarray, c: Coded) -> bytes:
        """chunks() as one self-contained payload (an audio segment, an image tile): the length
        n of the ANS stream (uint32, little-endian), the stream, then the escapes."""
        parts = {ch.tag: ch.payload for ch in self.chunks(z, c)}
        ans = parts["ans "]
        return len(ans).to_bytes(4, "little") + ans + parts.get("esc ", b"")

    def read_payload(self, payload: bytes, z_grid: tuple[int, ...], level_milli: int,
                     what: str) -> tuple[np.ndarray, Coded]:
        """read() of a payload(); what: the chunk, for the error (e.g. "a 'seg ' chunk")."""
        n = int.from_bytes(payload[:4], "little")
        if len(payload) < 4 or 4 + n > len(payload):
            raise fmt.CorruptError(f"{what} shorter than its stream length")
        return self.read({"ans ": payload[4 : 4 + n], "esc ": payload[4 + n :]}, z_grid, level_milli)

    @staticmethod
    def grid_values(c: Coded, channels: slice) -> np.ndarray:
        """The integers that code(grid=...) coded on those channels: q + round(offset)."""
        return c.q[channels] + np.round(c.offset[channels]).astype(np.int64)

    def latents(self, c: Coded, level_milli: int) -> np.ndarray:
        """y_hat, the input of the synthesis."""
        ig = per_channel(np.exp(self.weights.log_igain_at(level_milli)), c.q.ndim)
        return ((c.q + c.offset) * ig).astype(np.float32)
