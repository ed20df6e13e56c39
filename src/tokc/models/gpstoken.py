"""GPSToken (Zhang et al. 2025, arXiv:2509.01109): an image as M parametric 2D Gaussians.

Written from the paper and a reading of the official repository (xtudbxk/GPSToken, Apache-2.0;
models/gpstoken.py, models/vqvae.py, models/attnblock.py, gscuda/gs.cu,
datasets/adaptivegps.py, configs/gpstoken_{s64,m128,l256}.yaml); no code is copied. State-dict
key names follow the official module so its ``.safetensors`` checkpoints load as they are.

Pipeline (one 256×256 image, ``M`` tokens, ``C`` feature channels):

1. **Initial layout** (:func:`adaptive_partition`, no weights): the grey image is split
   greedily into ``M`` axis-aligned boxes of balanced "complexity" = H(edge histogram)^w·area;
   each box gives an initial Gaussian σx = Δx/W·2/3, σy = Δy/H·2/3, ρ = 0, centre = box centre
   (all in [−1, 1] align-corners coordinates) and its RoI.
2. **Encoder** (:class:`GPSToken.encode`): a conv + 2 ResNet blocks on the image, RoIAlign
   (``rois``×``rois`` per box, aligned, adaptive sampling) → 1×1 conv; one learned embedding
   plus an MLP of the initial (σx, σy, ρ, x, y) per token; ``gpsenc_n`` blocks of
   [token += Linear(rois², 1)(RoI feature); pre-LN 8-head self-attention; pre-LN MLP ×4];
   heads: Linear(C, 5) gives deltas in logit space — σ = sigmoid(logit(σ₀) + δ) and
   (ρ, x, y) = 2·sigmoid(logit((1 + v₀)/2) + δ) − 1 (= tanh(atanh(v₀) + δ/2)) — and
   Linear(C, gps_c) gives the features. Token layout: ``[σx, σy, ρ, x, y, f_1..f_C]``.
3. **Renderer** (:meth:`GPSToken.render`): :func:`tokc.kernels.splat` — for pixel centres on
   linspace(−1, 1) grids of ``gps_rs`` = (h, w), out = Σ_m exp(−(a² − 2ρab + b²)/(2(1 − ρ²)))·f_m,
   a = (x − μx)/σx, b = (y − μy)/σy, only where |x − μx| ≤ dmax·σx and |y − μy| ≤ dmax·σy
   (the official CUDA kernel's formula and cut-off; no normalisation constant, no alpha).
   dmax = ``gps_dmax`` = 3 in every released config (the official README's text says 5).
4. **Decoder**: the taming-transformers VQGAN decoder on the rendered (C, h, w) map; the current
   official release uses ``DecoderNP``, whose GroupNorms divide by (std + eps) instead of
   sqrt(var + eps) — ``patch_norm=True`` here (False gives the older plain ``Decoder``).

Implemented: all of the above at ``_np = 1`` (one 256-pixel tile), checkpoint loading with the
official key names, ONNX export of the encoder and of render + decode (:func:`onnx_graphs`,
``tokc export --arch gpstoken``; the layout runs before the encoder graph, in numpy:
:mod:`tokc.models.gpstoken_layout`).
Not implemented / unknown: the high-resolution path (``_np > 1``: tiles folded into the batch,
GPS-token merging and the resized GroupNorm statistics), the second-stage generator (SiT), and
bit-exact parity — there is no official fixture, and the partition emulates OpenCV's
``resize`` (bilinear) and ``Sobel`` (3×3, replicated border) in numpy without having been
compared against cv2. GPSToken tokens are continuous (there is no quantizer), so ``encode``
returns float parameters, not integer indices.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tokc.kernels import splat

from .gpstoken_layout import adaptive_partition, grey_of_array

__all__ = [
    "GPSTokenConfig",
    "GPSToken",
    "GaussianTokens",
    "adaptive_partition",
    "roi_align",
    "load",
    "onnx_graphs",
    "PARAMS",
]

PARAMS = 5  # σx, σy, ρ, x, y ahead of the features in every token


@dataclass(frozen=True)
class GPSTokenConfig:
    # gpsconfig of the official yaml
    num_tokens: int = 128  # gps_num (the encoder takes any count; this is the default)
    rois: int = 8
    enc_layers: int = 30  # gpsenc_n
    enc_width: int = 512  # gpsenc_c
    enc_heads: int = 8  # hard-coded in the official AttnBlock
    feature_dim: int = 16  # gps_c (= decoder z_channels)
    render_size: tuple[int, int] = (64, 64)  # gps_rs, (h, w)
    cutoff: float = 3.0  # gps_dmax
    adaptive_weight: float = 2.5  # gps_adaptive_w
    adaptive_min_size: int = 8
    pre_channels: int = 128  # hard-coded in the official preprocess_img
    pre_temb_channels: int = 512  # unused temb_proj kept by the official ResnetBlock default
    # decoderconfig (taming VQGAN decoder)
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = ()
    resolution: int = 256
    out_ch: int = 3
    patch_norm: bool = True  # DecoderNP (std + eps) vs Decoder (GroupNorm)
    num_groups: int = 32

    @staticmethod
    def from_official(config: dict) -> GPSTokenConfig:
        """From the official yaml/json layout ({model: {gpsconfig, decoderconfig}} or its model)."""
        model = config.get("model", config)
        gps, dec = model.get("gpsconfig"), model.get("decoderconfig")
        if not isinstance(gps, dict) or not isinstance(dec, dict):
            raise ValueError("config has no gpsconfig / decoderconfig: not a GPSToken config")
        if int(dec.get("z_channels", gps.get("gps_c", 16))) != int(gps.get("gps_c", 16)):
            raise ValueError("decoderconfig.z_channels must equal gpsconfig.gps_c")
        rs = gps.get("gps_rs", (64, 64))
        rs = (int(rs), int(rs)) if isinstance(rs, (int, float)) else (int(rs[0]), int(rs[1]))
        kw = dict(
            num_tokens=int(gps.get("gps_num", 128)),
            rois=int(gps.get("rois", 8)),
            enc_layers=int(gps.get("gpsenc_n", 30)),
            enc_width=int(gps.get("gpsenc_c", 512)),
            feature_dim=int(gps.get("gps_c", 16)),
            render_size=rs,
            cutoff=float(gps.get("gps_dmax", 3.0)),
            adaptive_weight=float(gps.get("gps_adaptive_w", 2.5)),
            ch=int(dec.get("ch", 128)),
            ch_mult=tuple(int(v) for v in dec.get("ch_mult", (1, 2, 4))),
            num_res_blocks=int(dec.get("num_res_blocks", 2)),
            attn_resolutions=tuple(int(v) for v in dec.get("attn_resolutions", ()) or ()),
            resolution=int(dec.get("resolution", 256)),
            out_ch=int(dec.get("out_ch", 3)),
        )
        for key in ("pre_channels", "pre_temb_channels", "num_groups", "enc_heads",
                    "adaptive_min_size"):
            if key in gps:  # tokc extensions for small test models
                kw[key] = int(gps[key])
        if "patch_norm" in dec:
            kw["patch_norm"] = bool(dec["patch_norm"])
        return GPSTokenConfig(**kw)

    def to_official(self) -> dict:
        """The official yaml layout ({model: {decoderconfig, gpsconfig}}) plus tokc's keys for
        what the official code hard-codes; ``from_official(c.to_official()) == c``."""
        return {"model": {
            "decoderconfig": {
                "double_z": False, "z_channels": self.feature_dim, "resolution": self.resolution,
                "in_channels": 3, "out_ch": self.out_ch, "ch": self.ch,
                "ch_mult": list(self.ch_mult), "num_res_blocks": self.num_res_blocks,
                "attn_resolutions": list(self.attn_resolutions), "dropout": 0.0,
                "patch_norm": self.patch_norm,
            },
            "gpsconfig": {
                "rois": self.rois, "gpsenc_n": self.enc_layers, "gpsenc_c": self.enc_width,
                "gps_c": self.feature_dim, "gps_num": self.num_tokens, "gps_dmax": self.cutoff,
                "gps_adaptive_w": self.adaptive_weight, "gps_rs": list(self.render_size),
                "pre_channels": self.pre_channels, "pre_temb_channels": self.pre_temb_channels,
                "num_groups": self.num_groups, "enc_heads": self.enc_heads,
                "adaptive_min_size": self.adaptive_min_size,
            },
        }}


@dataclass(frozen=True)
class GaussianTokens:
    """Tokens split into the renderer's arguments (batch first)."""

    means: torch.Tensor  # (B, M, 2) as (x, y)
    sigmas: torch.Tensor  # (B, M, 2) as (σx, σy)
    rhos: torch.Tensor  # (B, M)
    features: torch.Tensor  # (B, M, C)

    @staticmethod
    def split(tokens: torch.Tensor) -> GaussianTokens:
        return GaussianTokens(tokens[..., 3:5], tokens[..., 0:2], tokens[..., 2], tokens[..., PARAMS:])


def grey_of(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) RGB in [−1, 1] -> (H, W) float32 luma (BT.601 weights, as the official)."""
    return grey_of_array(x.detach().float().cpu().numpy())


# ---------------------------------------------------------------------- RoIAlign
def _axis_weights(start: torch.Tensor, length: torch.Tensor, pooled: int, size: int,
                  g_max: int | None = None) -> torch.Tensor:
    """(R, pooled, size) averaged bilinear weights along one axis (torchvision RoIAlign rules,
    aligned=True, sampling_ratio=-1: ceil(length/pooled) samples per bin). ``g_max``: a bound
    on the samples per bin known without looking at the data (for tracing); the samples past
    each RoI's own count weigh nothing, so any bound gives the same weights."""
    r = start.shape[0]
    bin_len = length / pooled
    grid = torch.ceil(length / pooled).clamp_min(0)  # samples per bin, per roi
    if g_max is None:
        g_max = max(int(grid.max().item()) if r else 0, 1)
    i = torch.arange(g_max, dtype=start.dtype, device=start.device)
    p = torch.arange(pooled, dtype=start.dtype, device=start.device)
    g = grid.clamp_min(1)[:, None, None]
    y = start[:, None, None] + p[None, :, None] * bin_len[:, None, None] \
        + (i[None, None, :] + 0.5) * bin_len[:, None, None] / g  # (R, pooled, g_max)
    used = (i[None, None, :] < grid[:, None, None])
    valid = used & (y >= -1.0) & (y <= size)
    y = y.clamp_min(0.0)
    low = torch.floor(y)
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    y = torch.where(at_end, low, y)
    high = torch.where(at_end, low, low + 1)
    frac = y - low
    cols = torch.arange(size, dtype=start.dtype, device=start.device)
    wts = (cols == low[..., None]) * (1 - frac)[..., None] + (cols == high[..., None]) * frac[..., None]
    wts = wts * valid[..., None]
    return wts.sum(2) / grid.clamp_min(1)[:, None, None]


def roi_align(features: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor,
              output_size: int) -> torch.Tensor:
    """torchvision.ops.roi_align(features, rois, output_size, spatial_scale=1, sampling_ratio=-1,
    aligned=True) in plain torch: features (B, C, H, W), boxes (R, 4) pixel x0, y0, x1, y1,
    batch_index (R,) -> (R, C, output_size, output_size).

    Bilinear sampling is separable, so each RoI is wy (P, H) @ F (C, H, W) @ wxᵀ (W, P),
    evaluated on the rows and columns its weights touch (the RoIs tile the image, so the
    total work is about C·P·H·W rather than R times that)."""
    _, _, h, w = features.shape
    boxes = boxes.float() - 0.5
    wx = _axis_weights(boxes[:, 0], boxes[:, 2] - boxes[:, 0], output_size, w)  # (R, P, W)
    wy = _axis_weights(boxes[:, 1], boxes[:, 3] - boxes[:, 1], output_size, h)  # (R, P, H)
    out = features.new_zeros((boxes.shape[0], features.shape[1], output_size, output_size),
                             dtype=torch.float32)
    rows, cols = (wy != 0).any(1), (wx != 0).any(1)  # (R, H), (R, W)
    for r in range(boxes.shape[0]):
        ys, xs = rows[r].nonzero(), cols[r].nonzero()
        if not len(ys) or not len(xs):
            continue  # an empty or outside RoI samples zeros
        y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
        f = features[int(batch_index[r]), :, y0:y1, x0:x1].float()
        out[r] = torch.einsum("ph,chw,qw->cpq", wy[r, :, y0:y1], f, wx[r, :, x0:x1])
    return out.to(features.dtype)


def roi_align_dense(features: torch.Tensor, boxes: torch.Tensor, output_size: int) -> torch.Tensor:
    """:func:`roi_align` for every image's RoIs at once, without data-dependent slicing (what
    the exported encoder traces): features (B, C, H, W), boxes (B, M, 4) pixel x0, y0, x1, y1
    inside the image -> (B·M, C, output_size, output_size). Each RoI weighs every row and
    column (zeros outside it), so it costs about M times :func:`roi_align`'s work."""
    b, c, h, w = features.shape
    m = boxes.shape[1]
    boxes = boxes.float().reshape(b * m, 4) - 0.5
    # a box inside the image is at most W - 1 wide: ceil((W - 1) / P) <= ceil(W / P) samples
    wx = _axis_weights(boxes[:, 0], boxes[:, 2] - boxes[:, 0], output_size, w, -(-w // output_size))
    wy = _axis_weights(boxes[:, 1], boxes[:, 3] - boxes[:, 1], output_size, h, -(-h // output_size))
    rows = torch.einsum("bmph,bchw->bmcpw", wy.reshape(b, m, output_size, h), features.float())
    out = torch.einsum("bmcpw,bmqw->bmcpq", rows, wx.reshape(b, m, output_size, w))
    return out.reshape(b * m, c, output_size, output_size).to(features.dtype)


# ---------------------------------------------------------------------- building blocks
def _swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class PatchGroupNorm(nn.GroupNorm):
    """DecoderNP's norm at one tile: (x − mean)/(std + eps) per group (biased std), then affine."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = x.reshape(b, self.num_groups, c // self.num_groups, h, w)
        std, mean = torch.std_mean(g, dim=(2, 3, 4), keepdim=True, correction=0)
        g = (g - mean) / (std + self.eps)
        return g.reshape(b, c, h, w) * self.weight[None, :, None, None] + self.bias[None, :, None, None]


def _norm(channels: int, groups: int, patch: bool) -> nn.GroupNorm:
    cls = PatchGroupNorm if patch else nn.GroupNorm
    return cls(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int | None = None, groups: int = 32, patch: bool = False,
                 temb_channels: int = 0):
        super().__init__()
        cout = cin if cout is None else cout
        self.norm1 = _norm(cin, groups, patch)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        if temb_channels > 0:  # present in the official weights, never used at inference
            self.temb_proj = nn.Linear(temb_channels, cout)
        self.norm2 = _norm(cout, groups, patch)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(_swish(self.norm2(h)))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class SpatialAttention(nn.Module):
    """Single-head attention over all pixels with 1×1 q/k/v/proj convs (taming AttnBlock)."""

    def __init__(self, channels: int, groups: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6, affine=True)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q = self.q(n).reshape(b, c, h * w).transpose(1, 2)
        k = self.k(n).reshape(b, c, h * w)
        v = self.v(n).reshape(b, c, h * w)
        attn = torch.softmax(torch.bmm(q, k) * (c ** -0.5), dim=2)
        out = torch.bmm(v, attn.transpose(1, 2)).reshape(b, c, h, w)
        return x + self.proj_out(out)


class _Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    """taming-transformers VQGAN decoder (conv_in, mid, up.{level}.block/attn/upsample, out)."""

    def __init__(self, cfg: GPSTokenConfig):
        super().__init__()
        g, p = cfg.num_groups, cfg.patch_norm
        levels = len(cfg.ch_mult)
        block_in = cfg.ch * cfg.ch_mult[-1]
        res = cfg.resolution // 2 ** (levels - 1)
        self.conv_in = nn.Conv2d(cfg.feature_dim, block_in, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, g, p)
        self.mid.attn_1 = SpatialAttention(block_in, g)
        self.mid.block_2 = ResnetBlock(block_in, block_in, g, p)
        ups = []
        for level in reversed(range(levels)):
            up = nn.Module()
            up.block = nn.ModuleList()
            up.attn = nn.ModuleList()
            block_out = cfg.ch * cfg.ch_mult[level]
            for _ in range(cfg.num_res_blocks + 1):
                up.block.append(ResnetBlock(block_in, block_out, g, p))
                block_in = block_out
                if res in cfg.attn_resolutions:
                    up.attn.append(SpatialAttention(block_in, g))
            if level != 0:
                up.upsample = _Upsample(block_in)
                res *= 2
            ups.insert(0, up)
        self.up = nn.ModuleList(ups)
        self.norm_out = _norm(block_in, g, p)
        self.conv_out = nn.Conv2d(block_in, cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for level in reversed(range(len(self.up))):
            up = self.up[level]
            for i, block in enumerate(up.block):
                h = block(h)
                if len(up.attn):
                    h = up.attn[i](h)
            if hasattr(up, "upsample"):
                h = up.upsample(h)
        return self.conv_out(_swish(self.norm_out(h)))


class TokenBlock(nn.Module):
    """Encoder block: add Linear(rois², 1) of the token's RoI features, then pre-LN MHA and MLP."""

    def __init__(self, width: int, heads: int, roi_cells: int, mlp_ratio: int = 4):
        super().__init__()
        self.roimlp = nn.Linear(roi_cells, 1)
        self.ln1 = nn.LayerNorm(width)
        self.attn1 = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(),
                                 nn.Linear(mlp_ratio * width, width), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, roi: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        x = x + self.roimlp(roi).reshape(b, n, c)
        y = self.ln1(x)
        x = x + self.attn1(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


def _logit(v: torch.Tensor) -> torch.Tensor:
    return -torch.log(1.0 / v - 1.0)


# ---------------------------------------------------------------------- the model
class GPSToken(nn.Module):
    def __init__(self, config: GPSTokenConfig | None = None):
        super().__init__()
        cfg = config or GPSTokenConfig()
        self.config = cfg
        pc, width = cfg.pre_channels, cfg.enc_width
        self.decoder = Decoder(cfg)
        self.preprocess_img = nn.Sequential(
            nn.Conv2d(3, pc, 3, padding=1),
            ResnetBlock(pc, pc, cfg.num_groups, False, cfg.pre_temb_channels),
            ResnetBlock(pc, pc, cfg.num_groups, False, cfg.pre_temb_channels),
        )
        self.roialign_layer = nn.Conv2d(pc, width, 1)
        self.gps_embed = nn.Embedding(1, width)
        self.attnblocks = nn.ModuleList(
            TokenBlock(width, cfg.enc_heads, cfg.rois**2) for _ in range(cfg.enc_layers))
        self.gps_embed_layer = nn.Sequential(nn.Linear(PARAMS, width), nn.GELU(), nn.Linear(width, width))
        self.to_gps = nn.ModuleList([nn.Linear(width, PARAMS), nn.Linear(width, cfg.feature_dim)])
        nn.init.zeros_(self.to_gps[0].weight)  # as the official: start at the initial layout
        nn.init.zeros_(self.to_gps[0].bias)

    @property
    def token_dim(self) -> int:
        return PARAMS + self.config.feature_dim

    # -- layout
    def initial_layout(self, x: torch.Tensor, num_tokens: int | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(init (B, M, 5), regions (B, M, 4)) from :func:`adaptive_partition` per image."""
        cfg = self.config
        m = num_tokens or cfg.num_tokens
        inits, regions = zip(*(adaptive_partition(grey_of(img), m, cfg.adaptive_weight,
                                                  cfg.adaptive_min_size) for img in x))
        return (torch.from_numpy(np.stack(inits)).to(x.device),
                torch.from_numpy(np.stack(regions)).to(x.device))

    # -- encoder
    def encode(self, x: torch.Tensor, init: torch.Tensor | None = None,
               regions: torch.Tensor | None = None, num_tokens: int | None = None,
               dense_roi: bool = False) -> torch.Tensor:
        """Images (B, 3, H, W) in [−1, 1] -> tokens (B, M, 5 + C) = [σx, σy, ρ, x, y, features].

        ``init`` (B, M, 5) and ``regions`` (B, M, 4) default to :func:`adaptive_partition`.
        ``dense_roi``: :func:`roi_align_dense` (traceable) instead of :func:`roi_align`."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(x.shape)}")
        if init is None or regions is None:
            init, regions = self.initial_layout(x, num_tokens)
        b, _, h, w = x.shape
        m = init.shape[1]
        if not torch.compiler.is_compiling() and (init.shape != (b, m, PARAMS) or regions.shape != (b, m, 4)):
            raise ValueError(f"init (B, M, 5) and regions (B, M, 4) expected, got "
                             f"{tuple(init.shape)} and {tuple(regions.shape)}")
        feats = self.preprocess_img(x)
        scale = torch.tensor([w - 1, h - 1, w - 1, h - 1], dtype=torch.float32, device=x.device)
        boxes = (regions.float() + 1.0) / 2.0 * scale  # pixel coordinates
        if dense_roi:
            roi = roi_align_dense(feats, boxes, self.config.rois)
        else:
            batch_index = torch.arange(b, device=x.device).repeat_interleave(m)
            roi = roi_align(feats, boxes.reshape(b * m, 4), batch_index, self.config.rois)
        roi = self.roialign_layer(roi).flatten(2)  # (B·M, width, rois²)
        init = init.to(feats.dtype)
        tok = self.gps_embed.weight[None] + self.gps_embed_layer(init)
        for block in self.attnblocks:
            tok = block(tok, roi)
        delta = self.to_gps[0](tok)
        sig = torch.sigmoid(_logit(init[..., :2]) + delta[..., :2])
        rest = 2.0 * torch.sigmoid(_logit((1.0 + init[..., 2:5]) / 2.0) + delta[..., 2:5]) - 1.0
        return torch.cat([sig, rest, self.to_gps[1](tok)], dim=-1)

    # -- renderer and decoder
    def render(self, tokens: torch.Tensor, size: tuple[int, int] | None = None,
               impl: str | None = None) -> torch.Tensor:
        """Tokens (B, M, 5 + C) -> feature maps (B, C, h, w) through :func:`tokc.kernels.splat`."""
        if tokens.ndim != 3 or tokens.shape[-1] != self.token_dim:
            raise ValueError(f"tokens (B, M, {self.token_dim}) expected, got {tuple(tokens.shape)}")
        h, w = size or self.config.render_size
        g = GaussianTokens.split(tokens)
        maps = [splat(g.means[i], g.sigmas[i], g.rhos[i], g.features[i], h, w,
                      cutoff=self.config.cutoff, impl=impl) for i in range(tokens.shape[0])]
        return torch.stack(maps).permute(0, 3, 1, 2)

    def decode(self, tokens: torch.Tensor, impl: str | None = None) -> torch.Tensor:
        """Tokens (B, M, 5 + C) -> images (B, 3, 4·h, 4·w) (for the published ch_mult), ≈[−1, 1]."""
        return self.decoder(self.render(tokens, impl=impl))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


# ---------------------------------------------------------------------- loading
def _count(keys, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in keys if (m := rx.match(k))})


def config_from_state(state: dict, base: GPSTokenConfig | None = None) -> GPSTokenConfig:
    """Structural sizes read from the weights; what weights cannot tell (token count, render
    size, cut-off, partition weight, head count, groups) comes from ``base`` (defaults: the
    M128 yaml)."""
    base = base or GPSTokenConfig()
    try:
        levels = _count(state, r"decoder\.up\.(\d+)\.block\.0\.conv1\.weight")
        widths = [state[f"decoder.up.{i}.block.0.conv1.weight"].shape[0] for i in range(levels)]
        if tuple(base.ch * m for m in base.ch_mult) == tuple(widths):
            ch, ch_mult = base.ch, base.ch_mult
        else:  # only ch·ch_mult matters to the architecture
            ch = math.gcd(*widths)
            ch_mult = tuple(w // ch for w in widths)
        temb = "preprocess_img.1.temb_proj.weight"
        kw = dict(
            enc_width=state["gps_embed.weight"].shape[1],
            enc_layers=_count(state, r"attnblocks\.(\d+)\."),
            rois=math.isqrt(state["attnblocks.0.roimlp.weight"].shape[1]),
            feature_dim=state["to_gps.1.weight"].shape[0],
            pre_channels=state["preprocess_img.0.weight"].shape[0],
            pre_temb_channels=state[temb].shape[1] if temb in state else 0,
            ch=ch,
            ch_mult=ch_mult,
            num_res_blocks=_count(state, r"decoder\.up\.0\.block\.(\d+)\.") - 1,
            out_ch=state["decoder.conv_out.weight"].shape[0],
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"not a GPSToken state dict ({exc})") from None
    return replace(base, **kw)


def load(folder_or_file: str | Path, arch: str | None = None, **overrides) -> GPSToken:
    """A GPSToken from an official ``.safetensors`` (+ config.json with gpsconfig/decoderconfig,
    optional). Keys the model does not have (e.g. training-only modules) are ignored, as the
    official inference script does; missing keys and shape mismatches are reported together."""
    from .checkpoints import load_state_dict_into, read_config, read_state_dict, resolve

    if arch not in (None, "gpstoken"):
        raise ValueError(f"gpstoken.load: arch {arch!r} is not 'gpstoken'")
    config_path, weights_path = resolve(folder_or_file)
    state = read_state_dict(weights_path)
    base = GPSTokenConfig()
    if config_path is not None:
        raw = read_config(config_path)
        if "gpsconfig" in raw.get("model", raw):
            base = GPSTokenConfig.from_official(raw)
    if overrides:
        base = replace(base, **overrides)
    cfg = config_from_state(state, base)
    model = GPSToken(cfg)
    own = set(model.state_dict())
    load_state_dict_into(model, {k: v for k, v in state.items() if k in own}, source=str(weights_path))
    return model.eval()


# ---------------------------------------------------------------------- ONNX
def render_batched(model: GPSToken, tokens: torch.Tensor) -> torch.Tensor:
    """:meth:`GPSToken.render` for the whole batch in one expression of the splat reference
    (what the exported decoder traces; the token count stays a free axis)."""
    from tokc.kernels.splat import reference

    h, w = model.config.render_size
    g = GaussianTokens.split(tokens)
    wts = reference.weights(g.means, g.sigmas, g.rhos, h, w, model.config.cutoff)  # (B, M, h, w)
    return torch.einsum("bmhw,bmc->bchw", wts, g.features.float()).to(tokens.dtype)


class EncoderGraph(nn.Module):
    """image (B, 3, H, W), init (B, M, 5), regions (B, M, 4) -> tokens (B, M, 5 + C); the
    layout (:func:`adaptive_partition`, numpy) is computed before the graph."""

    def __init__(self, model: GPSToken):
        super().__init__()
        self.model = model

    def forward(self, image, init, regions):
        return self.model.encode(image, init, regions, dense_roi=True)


class DecoderGraph(nn.Module):
    """tokens (B, M, 5 + C) -> image: the splat reference, then the VQGAN decoder."""

    def __init__(self, model: GPSToken):
        super().__init__()
        self.model = model

    def forward(self, tokens):
        return self.model.decoder(render_batched(self.model, tokens))


def image_size(model: GPSToken) -> tuple[int, int]:
    """The pixel size the model codes (one tile): the render grid times the decoder's upsampling."""
    up = 2 ** (len(model.config.ch_mult) - 1)
    h, w = model.config.render_size
    return h * up, w * up


def _example_tokens(model: GPSToken, batch: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Tokens with valid Gaussian parameters (σ in (0.05, 0.4), |ρ| < 0.5, centres in [−1, 1])."""
    tok = rng.standard_normal((batch, m, model.token_dim)).astype(np.float32)
    tok[..., 0:2] = rng.uniform(0.05, 0.4, (batch, m, 2))
    tok[..., 2] = rng.uniform(-0.5, 0.5, (batch, m))
    tok[..., 3:5] = rng.uniform(-1.0, 1.0, (batch, m, 2))
    return tok


def _example_layout(model: GPSToken, images: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    cfg = model.config
    inits, regions = zip(*(adaptive_partition(grey_of_array(img), m, cfg.adaptive_weight, cfg.adaptive_min_size)
                           for img in images))
    return np.stack(inits), np.stack(regions)


def onnx_graphs(model: GPSToken, token_axis: str = "dynamic") -> list:
    """encoder: image (batch, 3, H, W) + layout (batch, tokens, 5) and (batch, tokens, 4) ->
    tokens (batch, tokens, 5 + C); decoder: tokens -> image. Batch and token count are dynamic;
    the image size is the model's (one 256-pixel tile for the released models)."""
    from torch.export import Dim

    from .graphs import CHECK_BATCH, TRACED_BATCH, Graph, batch_dim

    cfg = model.config
    h, w = image_size(model)
    d = model.token_dim
    batch = batch_dim()
    m = Dim("tokens", min=2, max=4096)
    rng = np.random.default_rng(1)
    traced_m, checked_m = max(cfg.num_tokens, 4), max(cfg.num_tokens, 4) - 1
    img_t = rng.uniform(-1, 1, (TRACED_BATCH, 3, h, w)).astype(np.float32)
    img_c = rng.uniform(-1, 1, (CHECK_BATCH, 3, h, w)).astype(np.float32)
    init_t, reg_t = _example_layout(model, img_t, traced_m)
    init_c, reg_c = _example_layout(model, img_c, checked_m)
    enc = Graph(
        "encoder", EncoderGraph(model).eval(), ("image", "init", "regions"), ("tokens",),
        (("batch", 3, h, w), ("batch", "tokens", PARAMS), ("batch", "tokens", 4)),
        (("batch", "tokens", d),),
        tuple(torch.from_numpy(x) for x in (img_t, init_t, reg_t)),
        ({0: batch}, {0: batch, 1: m}, {0: batch, 1: m}),
        (img_c, init_c, reg_c),
    )
    dec = Graph(
        "decoder", DecoderGraph(model).eval(), ("tokens",), ("image",),
        (("batch", "tokens", d),), (("batch", cfg.out_ch, h, w),),
        (torch.from_numpy(_example_tokens(model, TRACED_BATCH, traced_m, rng)),),
        ({0: batch, 1: m},),
        (_example_tokens(model, CHECK_BATCH, checked_m, rng),),
    )
    return [enc, dec]


def onnx_constraints(model: GPSToken) -> dict:
    """What the runtime needs besides the graphs: the image size, the layout's settings (the
    partition runs in numpy before the encoder graph: tokc.models.gpstoken_layout) and the
    token layout."""
    cfg = model.config
    return {"image_size": list(image_size(model)), "image_range": [-1.0, 1.0],
            "num_tokens_default": cfg.num_tokens, "min_tokens": 2, "token_dim": model.token_dim,
            "token_layout": ["sigma_x", "sigma_y", "rho", "x", "y", f"features[{cfg.feature_dim}]"],
            "layout": {"adaptive_weight": cfg.adaptive_weight, "min_size": cfg.adaptive_min_size}}
