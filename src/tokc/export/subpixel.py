"""Export-time rewrite of transposed convolutions as sub-pixel convolutions.

A ConvTranspose2d of stride s whose output is exactly s times its input (k + output_padding
- 2*padding == s) equals an ordinary convolution to s*s*C_out channels followed by
depth-to-space (PixelShuffle, ONNX DepthToSpace CRD): output phase (a, b) of input position
(P, Q) gathers the input taps (P + d) with kernel index a + padding - s*d. ONNX Runtime's
CPU convolutions (MLAS, NCHWc) are far faster than its ConvTranspose, so the synthesis
transform is exported this way. The rewrite is exact up to float summation order: export
validates the rewritten graph against the original module.
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


class SubpixelConvTranspose2d(nn.Module):
    """The same map as `layer` (a rewritable ConvTranspose2d): pad, conv, depth-to-space."""

    def __init__(self, layer: nn.ConvTranspose2d):
        super().__init__()
        if not rewritable(layer):
            raise ValueError(f"cannot rewrite {layer}")
        k, s, p = layer.kernel_size[0], layer.stride[0], layer.padding[0]
        cin, cout = layer.in_channels, layer.out_channels
        # input offsets d used by some phase a in 0..s-1: kernel index a + p - s*d in [0, k)
        d_min = min(math.ceil((a + p - k + 1) / s) for a in range(s))
        d_max = max((a + p) // s for a in range(s))
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
            bias = layer.bias.detach() if layer.bias is not None else torch.zeros(cout)
            self.conv.bias.copy_(bias.repeat_interleave(s * s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return F.pixel_shuffle(self.conv(x), self.scale)


def deployable(module: nn.Module) -> nn.Module:
    """A copy of `module` with every rewritable ConvTranspose2d replaced (the original is
    left untouched)."""
    if rewritable(module):
        return SubpixelConvTranspose2d(module)
    module = copy.deepcopy(module)
    _replace(module)
    return module


def _replace(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if rewritable(child):
            setattr(module, name, SubpixelConvTranspose2d(child))
        else:
            _replace(child)
