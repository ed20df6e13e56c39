"""Exact integer execution of the hyper-synthesis and the context networks (Ballé et al.,
"Integer networks for data compression", 2019), in numpy, with no torch. This is the spec; the
codec runs the same networks in ONNX Runtime where float32 is provably exact (intnet_ort:
the same integers, 1.4-1.6x faster decodes).

Weights, biases and activations are integers, and every sum of products is computed exactly,
so the entropy parameters the decoder derives are bit-identical to the encoder's on any
machine, whatever the BLAS, its summation order or its thread count:

- float64 path: |activation| <= 2**ACT_BITS, |weight| <= 2**WEIGHT_BITS, at most
  kh*kw*C_in <= 2**MAX_K_BITS terms, so every partial sum stays below 2**53;
- float32 path, twice the speed: a layer whose input is clipped to +-in_clip, with
  in_clip * sum|weights| of one tap of one output <= 2**24 (8-bit activations and weights),
  sums the products in float32, exactly, as many taps at a time as keep that bound, and adds
  the tap groups in float64.

Rescaling to the output is a division by a power of two (one per output channel) followed by
floor, also exact. Kernels are any odd kh x kw ('same' padding): 3x3 for images, 1xk for 1-D
signals laid out as (C, 1, T).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

ACT_BITS = 20
WEIGHT_BITS = 14
MAX_K_BITS = 12
F32_EXACT = 2**24  # float32 holds every integer up to here
assert ACT_BITS + WEIGHT_BITS + MAX_K_BITS + 1 < 53


def parse_shuffle(value) -> tuple[int, int]:
    """A layer's depth-to-space factor (rh, rw) from its spec: false (or absent) -> (1, 1), none;
    true -> (2, 2), what files written before general factors mean by it; [rh, rw] -> (rh, rw)."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return (2, 2) if value else (1, 1)
    rh, rw = (int(v) for v in value) if len(value) == 2 else (0, 0)
    if rh < 1 or rw < 1:
        raise ValueError(f"depth-to-space factor {value!r} is not positive")
    return rh, rw


@dataclass(frozen=True)
class IntConv:
    """kh x kw 'same' convolution in integers (kh, kw odd; zero padding kh//2, kw//2):
    out_c = floor((W*clip(x) + b)_c / 2**shift_c + 1/2), x clipped to +-in_clip first, then
    optionally depth-to-space by (rh, rw).

    shuffle: False (none), True (2 x 2) or (rh, rw), e.g. (1, 2) or (1, 4) to upsample a 1-D
    signal (C, 1, T) in time. Depth-to-space is torch.nn.PixelShuffle generalised to a block of
    rh x rw: input channel c*rh*rw + i*rw + j at (y, x) goes to output channel c at
    (y*rh + i, x*rw + j); for (1, r), output c at time t*r + k comes from input channel c*r + k.
    (tokc.models.layers.pixel_shuffle_2d is the same in torch.)

    In a weights file's layer spec (spec(), from_spec()) the factor is stored as "shuffle":
    false for none, true for 2 x 2 (as in every file before general factors), else [rh, rw]."""

    weight: np.ndarray  # (cout, cin, kh, kw) integers, |w| <= 2**WEIGHT_BITS
    bias: np.ndarray  # (cout,) integers at the accumulator's scale
    shift: int | np.ndarray  # right shift from the accumulator's scale to the output's (per channel)
    relu: bool
    shuffle: bool | tuple[int, int]  # depth-to-space after the convolution: see factor
    in_clip: int = field(default=2**ACT_BITS)

    def __post_init__(self):
        cout, cin, kh, kw = self.weight.shape
        if kh % 2 == 0 or kw % 2 == 0 or kh * kw * cin > 2**MAX_K_BITS:
            raise ValueError("IntConv takes odd kh x kw kernels with kh*kw*cin <= 2**MAX_K_BITS")
        if np.abs(self.weight).max() > 2**WEIGHT_BITS or self.shifts.min() < -ACT_BITS:
            raise ValueError("IntConv weights out of range")
        if not 1 <= self.in_clip <= 2**ACT_BITS:
            raise ValueError("IntConv input clip out of range")
        if cout % (self.factor[0] * self.factor[1]):
            raise ValueError(f"IntConv: {cout} outputs do not divide into depth-to-space blocks {self.factor}")

    @classmethod
    def from_spec(cls, weight: np.ndarray, bias: np.ndarray, spec: dict) -> IntConv:
        """A layer from a weights file: its tensors and its spec (shift: one or per channel;
        relu; shuffle: see the class; in_clip: absent in files before it)."""
        return cls(np.asarray(weight).astype(np.int64), np.asarray(bias).astype(np.int64),
                   np.asarray(spec["shift"], dtype=np.int64), bool(spec["relu"]),
                   parse_shuffle(spec.get("shuffle")), int(spec.get("in_clip", 2**ACT_BITS)))

    def spec(self) -> dict:
        """What a weights file's meta says of the layer (from_spec reads it back)."""
        legacy = {(1, 1): False, (2, 2): True}  # as every file before general factors says
        shuffle = legacy.get(self.factor, list(self.factor))
        return {"shift": np.asarray(self.shift).tolist(), "relu": bool(self.relu), "shuffle": shuffle,
                "in_clip": int(self.in_clip)}

    @cached_property
    def factor(self) -> tuple[int, int]:
        """The depth-to-space factor (rh, rw); (1, 1): none."""
        return parse_shuffle(self.shuffle)

    @cached_property
    def kernel(self) -> tuple[int, int]:
        return self.weight.shape[2], self.weight.shape[3]

    @cached_property
    def f32_taps(self) -> int:
        """How many taps at a time float32 sums exactly (0: none, use float64). Exact when no
        partial sum can pass 2**24: in_clip times each output's sum of |weights| over the
        group's taps bounds them all. Taps in raster order; all kh*kw: the whole sum."""
        n = self.kernel[0] * self.kernel[1]
        l1 = np.abs(self.weight).sum(1).reshape(len(self.weight), n).T  # (tap, cout)
        for group in range(n, 0, -1):
            worst = max(l1[k : k + group].sum(0).max() for k in range(0, n, group))
            if self.in_clip * int(worst) <= F32_EXACT:
                return group
        return 0

    @cached_property
    def l1(self) -> np.ndarray:
        """Each output's sum of |weights| over all its taps: with inputs bounded by m, every
        partial sum of that output is within m * l1."""
        return np.abs(self.weight).reshape(len(self.weight), -1).sum(1)

    @cached_property
    def l1_max(self) -> int:
        return int(self.l1.max())

    # operands of _conv, made once per layer rather than on every run
    @cached_property
    def taps(self) -> np.ndarray:
        dtype = np.float32 if self.f32_taps else np.float64
        return tap_matrices(self.weight.astype(dtype))

    @cached_property
    def bias64(self) -> np.ndarray:
        return self.bias.astype(np.float64)

    @cached_property
    def shifts(self) -> np.ndarray:
        """The shift of every output channel."""
        return np.broadcast_to(np.asarray(self.shift, np.int64), (self.weight.shape[0],))

    @cached_property
    def scales(self) -> np.ndarray:
        """2**-shift per output channel: multiplying by a power of two is exact."""
        return np.ldexp(1.0, -self.shifts)[:, None, None]


def tap_matrices(weight: np.ndarray) -> np.ndarray:
    """(cout, cin, kh, kw) -> (kh, kw, cout, cin): one matrix per tap (dy, dx)."""
    return np.ascontiguousarray(weight.transpose(2, 3, 0, 1))


def _conv(taps: np.ndarray, bias: np.ndarray, x: np.ndarray, block: int = 1 << 16,
          group: int = 0) -> np.ndarray:
    """kh x kw 'same' convolution as kh*kw matrix products, one per tap, summed. The input is
    zero-padded by (kh//2, kw//2) and flattened row-major (width W = w + kw - 1): tap (dy, dx)
    of output (r, c) is flat element r*W + c + dy*W + dx, so each tap's operand for a band of
    rows is a plain slice (no im2col copy; measured 0.6-0.9x the time of im2col on these 3x3
    layers), and the kw - 1 pad columns of each row come out as junk columns that are dropped.
    A band of rows at a time (at most `block` positions). taps: (kh, kw, cout, cin) float64 or
    float32 (tap_matrices); products are summed in the taps' dtype `group` taps at a time
    (raster order; 0: all), and the groups in float64. Returns float64."""
    kh, kw, cout = taps.shape[:3]
    n = kh * kw
    group = group or n
    flat_taps = taps.reshape(n, cout, -1)
    c, h, w = x.shape
    width = w + kw - 1
    # one spare row: the last tap's window ends kw - 1 past the padded rows
    p = np.zeros((c, h + kh, width), dtype=taps.dtype)
    p[:, kh // 2 : kh // 2 + h, kw // 2 : kw // 2 + w] = x
    flat = p.reshape(c, -1)
    out = np.empty((cout, h, w), dtype=np.float64)
    rows = max(1, block // width)
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        size = (r1 - r0) * width
        bands = [flat[:, start : start + size]  # tap k's operand: the band shifted by (dy, dx)
                 for start in ((r0 + k // kw) * width + k % kw for k in range(n))]
        acc = None
        for k0 in range(0, n, group):
            part = flat_taps[k0] @ bands[k0]
            for k in range(k0 + 1, min(n, k0 + group)):
                part += flat_taps[k] @ bands[k]
            if acc is None:
                acc = part.astype(np.float64, copy=False)
            else:
                acc += part
        out[:, r0:r1] = acc.reshape(cout, r1 - r0, width)[:, :, :w] + bias[:, None, None]
    return out


def depth_to_space(x: np.ndarray, r: int | tuple[int, int] = 2) -> np.ndarray:
    """(C*rh*rw, H, W) -> (C, H*rh, W*rw); r: rh == rw, or (rh, rw). Input channel
    c*rh*rw + i*rw + j goes to (c, y*rh + i, x*rw + j): torch.nn.PixelShuffle's order where
    rh == rw."""
    rh, rw = (r, r) if isinstance(r, int) else r
    crr, h, w = x.shape
    c = crr // (rh * rw)
    return x.reshape(c, rh, rw, h, w).transpose(0, 3, 1, 4, 2).reshape(c, h * rh, w * rw)


def run(layers: list[IntConv], x: np.ndarray) -> np.ndarray:
    """x: (C, H, W) integers (any int or float dtype holding integers; (C, 1, T) for 1-D).
    Returns float64 holding integers, at the scale of the last layer's output."""
    x = np.asarray(x, dtype=np.float64)
    lim = float(2**ACT_BITS)
    for layer in layers:
        if layer.in_clip < lim:
            x = np.clip(x, -layer.in_clip, layer.in_clip)
        y = _conv(layer.taps, layer.bias64, x, group=layer.f32_taps)
        y *= layer.scales  # exact: power-of-two division
        y += 0.5
        np.floor(y, out=y)
        np.clip(y, 0 if layer.relu else -lim, lim, out=y)
        x = depth_to_space(y, layer.factor) if layer.factor != (1, 1) else y
    return x


def quantize_layers(convs, act_max: list[float], out_frac_bits: int, *, weight_bits: int = WEIGHT_BITS,
                    act_bits: int | None = None, in_clip: int = 2**ACT_BITS) -> tuple[list, list]:
    """Float layers -> IntConv layers (packing only).

    convs: list of (weight (cout, cin, kh, kw) float array, bias (cout,), relu, shuffle), shuffle
    as IntConv's.
    act_max: the largest |activation| seen at each layer's output (calibration).
    The input is an integer tensor (fraction bits 0) clipped to +-in_clip; the last layer's
    output gets `out_frac_bits` fraction bits. Weights get `weight_bits` bits of magnitude,
    scaled per output channel. Hidden activations: with act_bits, the calibrated maximum maps
    to 2**act_bits - 1 and the next layer clips there (saturation); without, they keep 16x
    headroom below the clip level of the float64 path. Returns (layers, fraction bits of every
    output)."""
    layers, fracs = [], []
    f_in = 0
    for i, (w, b, relu, shuffle) in enumerate(convs):
        last = i == len(convs) - 1
        if last:
            f_out = out_frac_bits
        elif act_bits:
            f_out = int(np.floor(np.log2((2**act_bits - 1) / max(act_max[i], 1e-6))))
        else:
            f_out = int(np.floor(np.log2(2 ** (ACT_BITS - 4) / max(act_max[i], 1e-6))))
        wmax = np.maximum(np.abs(w).reshape(len(w), -1).max(1), 1e-12)
        f_w = np.floor(np.log2(2**weight_bits / wmax)).astype(np.int64)  # per output channel,
        f_w = np.minimum(f_w, f_w.min() + 8)  # at most 8 bits finer than the coarsest (dead channels)
        if not last:  # no finer output than the weights and input can give
            f_out = min(f_out, int(f_w.min()) + f_in - 1)
        shift = f_w + f_in - f_out  # may be negative on the last layer: an exact left shift
        scale = 2.0 ** f_w.astype(np.float64)
        w_int = np.round(w * scale[:, None, None, None]).astype(np.int64)
        b_int = np.round(b * scale * 2.0**f_in).astype(np.int64)
        layers.append(IntConv(w_int, b_int, shift, relu, shuffle, in_clip))
        fracs.append(f_out)
        f_in = f_out
        if act_bits:
            in_clip = 2**act_bits - 1
    return layers, fracs
