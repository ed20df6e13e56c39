"""Small building blocks shared by the models."""

from __future__ import annotations

import torch


def pixel_shuffle_2d(x: torch.Tensor, rh: int, rw: int) -> torch.Tensor:
    """Depth-to-space by a block of rh x rw: (B, C*rh*rw, H, W) -> (B, C, H*rh, W*rw), input
    channel c*rh*rw + i*rw + j at (y, x) going to output channel c at (y*rh + i, x*rw + j).
    torch.nn.functional.pixel_shuffle(x, r) where rh == rw == r; for a 1-D signal (B, C*r, 1, T)
    and (1, r), output c at time t*r + k comes from input channel c*r + k. The integer networks
    of the codecs (tokc.compress.intnet.depth_to_space) use the same order."""
    b, crr, h, w = x.shape
    c = crr // (rh * rw)
    return x.reshape(b, c, rh, rw, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h * rh, w * rw)
