"""Running a fully convolutional function over a large input in pieces with bounded memory,
each piece with a margin of context, keeping its centre: equal to one pass over the whole input
up to float rounding.

- `tiled`: 2-D tiles of the latent grid of (C, H, W) (images);
- `segmented`: 1-D overlapping segments along time of (C, 1, T) or (C, T) (audio);
- `EdgePadded`: what `tiled` reads of an edge-padded image, made crop by crop (no padded copy).

r_in / r_out: input / output units per latent (e.g. an analysis 16 -> 1, a synthesis 1 -> 16).
"""

from __future__ import annotations

import numpy as np

TILE = 48  # latents per tile side
MARGIN = 4  # latents of context around each tile


class EdgePadded:
    """(C, H', W') view of an (H, W, C) array edge-padded to H' x W' (H' >= H, W' >= W), made
    crop by crop: x[:, rows, cols] is np.pad(a, mode="edge").transpose(2, 0, 1)[:, rows, cols]
    without the whole padded copy."""

    def __init__(self, a: np.ndarray, height: int, width: int):
        self.a = a
        self.shape = (a.shape[2], height, width)

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        channels, rows, cols = key
        r = np.minimum(np.arange(self.shape[1])[rows], self.a.shape[0] - 1)
        c = np.minimum(np.arange(self.shape[2])[cols], self.a.shape[1] - 1)
        return self.a[r][:, c].transpose(2, 0, 1)[channels]


def tiled(fn, x: np.ndarray, r_in: int, r_out: int, tile: int = TILE, margin: int = MARGIN):
    """Apply a fully convolutional fn over x (C, H, W) in tiles of the latent grid, each with
    `margin` latents of context, keeping the tile's centre: equal to one pass over the whole
    input up to float rounding, with bounded memory."""
    _, hh, ww = x.shape
    h, w = hh // r_in, ww // r_in
    out = None
    for i0 in range(0, h, tile):
        for j0 in range(0, w, tile):
            i1, j1 = min(i0 + tile, h), min(j0 + tile, w)
            a0, a1 = max(i0 - margin, 0), min(i1 + margin, h)
            b0, b1 = max(j0 - margin, 0), min(j1 + margin, w)
            res = fn(x[:, a0 * r_in : a1 * r_in, b0 * r_in : b1 * r_in])
            if out is None:
                out = np.empty((res.shape[0], h * r_out, w * r_out), np.float32)
            out[:, i0 * r_out : i1 * r_out, j0 * r_out : j1 * r_out] = res[
                :, (i0 - a0) * r_out : (i1 - a0) * r_out, (j0 - b0) * r_out : (j1 - b0) * r_out
            ]
    return out


def segmented(fn, x: np.ndarray, r_in: int, r_out: int, seg: int, margin: int):
    """The 1-D twin of `tiled`: fn over x (C, 1, T) or (C, T) in segments of `seg` latents
    along the last axis, each with `margin` latents of context on both sides (where there is
    signal), keeping the segment's centre."""
    t = x.shape[-1] // r_in
    out = None
    for i0 in range(0, t, seg):
        i1 = min(i0 + seg, t)
        a0, a1 = max(i0 - margin, 0), min(i1 + margin, t)
        res = fn(x[..., a0 * r_in : a1 * r_in])
        if out is None:
            out = np.empty((*res.shape[:-1], t * r_out), np.float32)
        out[..., i0 * r_out : i1 * r_out] = res[..., (i0 - a0) * r_out : (i1 - a0) * r_out]
    return out
