"""Entropy coding from integer frequency tables (constriction's ANS coder).

Every table is a row of integer frequencies summing to 2**PRECISION, computed once when the
weights are packed and shipped inside the weights file. Encoder and decoder hand constriction
exactly the same float64 numbers (freq / 2**PRECISION, exact in binary), so the coded stream
never depends on the floating-point behaviour of the machine that decodes it.

Symbols beyond a table's range are coded as the row's last entry (the escape), and their
values go, in order, to a separate varint side stream.
"""

from __future__ import annotations

import math
from functools import cached_property

import constriction
import numpy as np

from tokc.format import TokcFormatError

PRECISION = 16
MAX_ESCAPE = 1 << 24  # no latent gets near this; a larger escaped value means a corrupt file
# How far the tokens' information (the sum of -log2 p over the decoded symbols) may exceed the
# stream's length before the stream counts as exhausted. ANS codes to within a few bits of the
# information: on Kodak crops at q 0..100 the information was 22 to 52 bits BELOW the length.
SLACK_BITS = 512
SLACK_FRACTION = 1 / 64


class EntropyError(TokcFormatError):
    """A coded stream that does not decode (corrupt, or made with other tables)."""


class ExhaustedError(EntropyError):
    """The stream ends before the tokens that the header claims (a truncated or altered
    payload, or forged dimensions)."""


def quantize_pmf(pmf: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Float probabilities (..., n) -> int32 frequencies, each >= 1, each row summing to
    2**precision. Only used when packing weights, never while coding."""
    pmf = np.asarray(pmf, dtype=np.float64)
    total = 1 << precision
    n = pmf.shape[-1]
    if n > total // 2:
        raise ValueError("alphabet too large for the precision")
    p = np.maximum(pmf, 0) / np.maximum(pmf.sum(-1, keepdims=True), 1e-300)
    rows = (np.floor(p * (total - n)).astype(np.int64) + 1).reshape(-1, n)
    for row, prow in zip(rows, p.reshape(-1, n)):
        # floor() left 0 <= deficit <= n: hand it to the most probable symbols
        deficit = total - row.sum()
        row[np.argsort(-prow, kind="stable")[:deficit]] += 1
    return rows.reshape(pmf.shape).astype(np.int32)


def gaussian_tables(scales, tail: float = 5.5, max_offset: int = 1024):
    """Integer tables for zero-mean quantized Gaussians of the given scales (packing only).
    Returns (freq (S, width) zero-padded, offsets (S,))."""
    offsets = np.array([min(max_offset, math.ceil(tail * s) + 1) for s in scales], np.int64)
    freq = np.zeros((len(scales), 2 * int(offsets.max()) + 2), np.int32)
    for k, (s, o) in enumerate(zip(scales, offsets)):
        edges = np.arange(-o - 0.5, o + 1.0)
        cdf = np.array([0.5 * math.erfc(-e / s / math.sqrt(2)) for e in edges])
        tail_mass = math.erfc((o + 0.5) / s / math.sqrt(2))
        freq[k, : 2 * o + 2] = quantize_pmf(np.append(np.diff(cdf), max(tail_mass, 1e-9)))
    return freq, offsets


class Tables:
    """A set of coding tables: row k codes the values -offsets[k]..offsets[k], and its entry
    2*offsets[k]+1 is the escape. Rows may be zero-padded on the right."""

    def __init__(self, freq: np.ndarray, offsets: np.ndarray):
        self.freq = np.asarray(freq, dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        scale = float(1 << PRECISION)
        self.models = [
            constriction.stream.model.Categorical(
                self.freq[k, : 2 * int(o) + 2].astype(np.float64) / scale, perfect=False
            )
            for k, o in enumerate(self.offsets)
        ]

    @cached_property
    def _bits(self) -> np.ndarray:
        return -np.log2(np.maximum(self.freq, 1) / float(1 << PRECISION))

    def cost_bits(self, values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The ideal code length in bits of each value coded with its row (an escaped value:
        the escape symbol plus 16 bits for its varint). For the encoder's choices only."""
        o = self.offsets[rows]
        inside = np.abs(values) <= o
        bits = self._bits[rows, np.where(inside, values + o, 2 * o + 1)]
        return np.where(inside, bits, bits + 16)


def _groups(table: np.ndarray):
    """Positions sorted by table (stable: raster order within a table), and for each table
    used, its (index, start, end) in that order. Symbols are coded table by table."""
    # a stable sort of 8- or 16-bit keys is a radix sort in numpy (one pass per byte): 6x
    # faster than of int64 here, and 8 bits (at most 256 tables) twice as fast again
    top, low = table.max(initial=0), table.min(initial=0)
    key = table if low < 0 or top >= 1 << 16 else table.astype(np.uint8 if top < 256 else np.uint16)
    order = np.argsort(key, kind="stable")
    counts = np.bincount(table)
    ends = np.cumsum(counts)
    return order, [(k, int(ends[k] - counts[k]), int(ends[k])) for k in np.flatnonzero(counts)]


def _zigzag_varints(values) -> bytes:
    out = bytearray()
    for v in values:
        u = (v << 1) ^ (v >> 63)
        while u >= 0x80:
            out.append((u & 0x7F) | 0x80)
            u >>= 7
        out.append(u)
    return bytes(out)


class Encoder:
    """Collects parts in DECODING order; finish() returns (ans stream, escape stream)."""

    def __init__(self):
        self._parts = []

    def add(self, tables: Tables, values: np.ndarray, table: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.int64).ravel()
        table = np.asarray(table, dtype=np.int64).ravel()
        off = tables.offsets[table]
        sym = values + off
        esc = (sym < 0) | (sym > 2 * off)
        sym[esc] = 2 * off[esc] + 1
        if esc.any() and np.abs(values[esc]).max() > MAX_ESCAPE:
            raise ValueError(f"a value beyond +-{MAX_ESCAPE} cannot be coded")
        self._parts.append((tables, sym.astype(np.int32), table, values[esc].tolist()))

    def finish(self) -> tuple[bytes, bytes]:
        coder = constriction.stream.stack.AnsCoder()
        # ANS is a stack: push everything in reverse of the decoding order
        for tables, sym, table, _ in reversed(self._parts):
            order, groups = _groups(table)
            for k, lo, hi in reversed(groups):
                coder.encode_reverse(sym[order[lo:hi]], tables.models[k])
        escapes = [v for part in self._parts for v in part[3]]
        return coder.get_compressed().astype("<u4").tobytes(), _zigzag_varints(escapes)


class Decoder:
    """Decodes what an Encoder coded, part by part, in the same order.

    An ANS decoder whose stream is used up does not fail: it goes on returning the first
    symbol of each table for free. So the decoder counts the information of what it has
    decoded (-log2 p of each symbol, in bits) and raises ExhaustedError as soon as that
    exceeds the stream's length (plus a small slack): a payload that runs out before the
    claimed tokens is a format error, found at the end of the call (one part of a slice)
    that ran out."""

    def __init__(self, stream: bytes, escapes: bytes):
        if len(stream) % 4:
            raise EntropyError("entropy-coded stream is not a whole number of 32-bit words")
        words = np.frombuffer(stream, dtype="<u4").astype(np.uint32)
        try:
            self._coder = constriction.stream.stack.AnsCoder(words)
        except Exception as e:  # constriction refuses some invalid streams
            raise EntropyError(f"entropy-coded stream is invalid: {e}") from None
        self._esc = escapes
        self._pos = 0
        self._bits = 8 * len(stream)
        self._budget = self._bits * (1 + SLACK_FRACTION) + SLACK_BITS
        self._spent = 0.0  # bits of information decoded so far

    def _escape(self) -> int:
        u, shift = 0, 0
        while True:
            if self._pos >= len(self._esc) or shift > 63:
                raise EntropyError("escape stream truncated")
            b = self._esc[self._pos]
            self._pos += 1
            u |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                v = (u >> 1) ^ -(u & 1)
                if abs(v) > MAX_ESCAPE:
                    raise EntropyError(f"escaped value {v} is out of range (corrupt file?)")
                return v

    def decode(self, tables: Tables, table: np.ndarray) -> np.ndarray:
        table = np.asarray(table, dtype=np.int64)
        flat = table.ravel()
        order, groups = _groups(flat)
        got = []
        for k, lo, hi in groups:
            try:
                got.append(self._coder.decode(tables.models[k], hi - lo))
            except Exception as e:
                raise EntropyError(f"entropy-coded stream is invalid: {e}") from None
        sym = np.empty(flat.shape, dtype=np.int64)
        if got:
            sym[order] = np.concatenate(got)
        self._spent += float(tables._bits[flat, sym].sum())
        if self._spent > self._budget:
            raise ExhaustedError(
                f"the payload ends before the tokens that the header claims: "
                f"{self._spent:.0f} bits of tokens decoded from a stream of {self._bits} "
                f"bits (a truncated or altered file, or changed dimensions)")
        off = tables.offsets[flat]
        values = sym - off
        for i in np.flatnonzero(sym == 2 * off + 1):
            values[i] = self._escape()
        return values.reshape(table.shape)

    def finish(self) -> None:
        if not self._coder.is_empty() or self._pos != len(self._esc):
            raise EntropyError("entropy-coded stream has data left over (corrupt file?)")
