"""Export-time rewrites of transposed convolutions into ordinary convolutions.

A ConvTranspose2d of stride s whose output is exactly s times its input (k + output_padding
- 2*padding == s) has s*s output phases: output (s*P + a, s*Q + b) gathers the input taps
(P + d) with kernel index a + padding - s*d. Two exact rewrites:

- sub-pixel: ONE convolution to s*s*C_out channels over the union of every phase's taps,
  then depth-to-space (PixelShuffle, ONNX DepthToSpace CRD). For a 5x5 stride-2 layer the
  union is 3x3, so it multiplies 36 taps where the layer has 25 (the others are zeros).
- phase: s*s convolutions, each with exactly its phase's taps (3x3, 3x2, 2x3, 2x2), then
  the outputs interleaved. No wasted taps; s*s smaller convolutions.

`deployable` picks per layer what measured fastest on ONNX Runtime's CPU convolutions (MLAS,
1.32, AVX-512, 1 thread, g_s layer shapes of a 768x512 image): phase for wide outputs (0.72-0.81
of sub-pixel's time at C_out = 64), for a narrow output (C_out = 3) the plain ConvTranspose
from a wide input (C_in = 64: 0.65 of sub-pixel, phase 2.2x slower) and sub-pixel from a narrow
one (C_in = 32, the narrowed g_s: whole g_s 0.955x with the ConvTranspose, phase 1.10x; 2
threads, three interleaved runs), sub-pixel where kernel == stride (the block shortcut: a 1x1
conv and a reshape). All are exact up to float summation order: export validates the
rewritten graph against the original module.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


def rewritable(layer: nn.Module) -> bool:
    if type(layer) is not nn.ConvTranspose2d:
        return False
    (k, k2), (s, s2) = layer.kernel_size, layer.stride
    (p, p2), (op, op2) = layer.padding, layer.output_padding
    return (
        (k, s, p, op) == (k2, s2, p2, op2) and layer.groups == 1 and layer.dilation == (1, 1)
        and k + op - 2 * p == s and layer.padding_mode == "zeros"
    )


def _phases(layer: nn.ConvTranspose2d):
    """Check `layer` and describe its output phases: (k, s, p, spans, bias), where spans[a] =
    (lo, hi) are the input offsets d that phase a gathers (kernel index a + p - s*d in [0, k))."""
    if not rewritable(layer):
        raise ValueError(f"cannot rewrite {layer}")
    k, s, p = layer.kernel_size[0], layer.stride[0], layer.padding[0]
    spans = [(math.ceil((a + p - k + 1) / s), (a + p) // s) for a in range(s)]
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros(layer.out_channels)
    return k, s, p, spans, bias


class SubpixelConvTranspose2d(nn.Module):
    """The same map as `layer` (a rewritable ConvTranspose2d): pad, conv, depth-to-space."""

    def __init__(self, layer: nn.ConvTranspose2d):
        super().__init__()
        k, s, p, spans, bias = _phases(layer)
        cin, cout = layer.in_channels, layer.out_channels
        # the union of the phases' input offsets
        d_min, d_max = min(lo for lo, _ in spans), max(hi for _, hi in spans)
        taps = d_max - d_min + 1
        w = layer.weight.detach()  # (cin, cout, k, k)
        kernel = torch.zeros(cout, s, s, cin, taps, taps, dtype=w.dtype)
        for a in range(s):
            for dy in range(d_min, d_max + 1):
                ky = a + p - s * dy
                if not 0 <= ky < k:
                    continue
                for b in range(s):
                    for dx in range(d_min, d_max + 1):
                        kx = b + p - s * dx
                        if 0 <= kx < k:
                            kernel[:, a, b, :, dy - d_min, dx - d_min] = w[:, :, ky, kx].T
        self.scale = s
        symmetric = -d_min == d_max
        # a symmetric halo is the conv's own zero padding; otherwise an explicit pad first
        self.pad = None if symmetric else (-d_min, d_max, -d_min, d_max)
        self.conv = nn.Conv2d(cin, cout * s * s, taps, padding=d_max if symmetric else 0)
        with torch.no_grad():
            self.conv.weight.copy_(kernel.reshape(cout * s * s, cin, taps, taps))
            self.conv.bias.copy_(bias.repeat_interleave(s * s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return F.pixel_shuffle(self.conv(x), self.scale)


class PhaseConvTranspose2d(nn.Module):
    """The same map as `layer` (a rewritable ConvTranspose2d): one convolution per output
    phase (a, b) with exactly that phase's taps, the outputs interleaved by stacking."""

    def __init__(self, layer: nn.ConvTranspose2d):
        super().__init__()
        # phase a: y[s*P + a] = sum over d in [lo_a, hi_a] of x[P + d] * w[a + p - s*d]
        _, s, p, spans, bias = _phases(layer)
        cin, cout = layer.in_channels, layer.out_channels
        w = layer.weight.detach()  # (cin, cout, k, k)
        self.scale = s
        self.convs, self.pads = nn.ModuleList(), []
        for a, (lo_a, hi_a) in enumerate(spans):
            ky = [a + p - s * d for d in range(lo_a, hi_a + 1)]
            for b, (lo_b, hi_b) in enumerate(spans):
                kx = [b + p - s * d for d in range(lo_b, hi_b + 1)]
                pad = (-lo_b, hi_b, -lo_a, hi_a)  # F.pad order: left, right, top, bottom
                symmetric = pad[0] == pad[1] and pad[2] == pad[3] and min(pad) >= 0
                conv = nn.Conv2d(cin, cout, (len(ky), len(kx)),
                                 padding=(pad[2], pad[0]) if symmetric else 0)
                with torch.no_grad():
                    conv.weight.copy_(w[:, :, ky][:, :, :, kx].permute(1, 0, 2, 3))
                    conv.bias.copy_(bias)
                self.convs.append(conv)
                self.pads.append(None if symmetric else pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [c(x if pad is None else F.pad(x, pad)) for c, pad in zip(self.convs, self.pads)]
        n, c, h, w = ys[0].shape
        s = self.scale
        rows = [torch.stack(ys[a * s : (a + 1) * s], -1) for a in range(s)]  # (n, c, h, w, s)
        return torch.stack(rows, -3).reshape(n, c, h * s, w * s)  # (n, c, h, s, w, s)


PHASE_MIN_OUT = 16  # narrower outputs: ConvTranspose (measured faster at C_out = 3, C_in = 64)...
SUBPIXEL_MAX_IN = 32  # ...or sub-pixel from at most this many inputs (faster at C_in = 32)


def rewrite(layer: nn.Module) -> nn.Module:
    """The fastest exact form of one layer on ONNX Runtime's CPU (see the module docstring)."""
    if not rewritable(layer):
        return layer
    if layer.kernel_size[0] == layer.stride[0]:
        return SubpixelConvTranspose2d(layer)
    if layer.out_channels >= PHASE_MIN_OUT:
        return PhaseConvTranspose2d(layer)
    if layer.in_channels <= SUBPIXEL_MAX_IN:
        return SubpixelConvTranspose2d(layer)
    return layer


def deployable(module: nn.Module) -> nn.Module:
    """A copy of `module` with every rewritable ConvTranspose2d rewritten (the original is
    left untouched)."""
    if rewritable(module):
        return rewrite(module)
    module = copy.deepcopy(module)
    _replace(module)
    return module


def _replace(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if rewritable(child):
            setattr(module, name, rewrite(child))
        else:
            _replace(child)
