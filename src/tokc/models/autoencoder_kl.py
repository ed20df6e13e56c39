"""The Stable-Diffusion ``AutoencoderKL`` (Rombach et al. 2022), as laid out by diffusers, in
plain torch: pixels → latents (:class:`AutoencoderKL`) and latents → pixels
(:class:`AutoencoderKLDecoder`, the decoder half alone).

FlexTok's VAE (``StableDiffusionVAE`` wrapping diffusers' ``AutoencoderKL``; EPFL-VILAB/
flextok_vae_c16) has the SD layout with 16 latent channels: ``block_out_channels`` (128, 256,
512, 512), 2 ResNet blocks per level (3 on the way up), GroupNorm(32, eps 1e-6), SiLU, a
single-head self-attention block in the middle, nearest ×2 upsampling + 3×3 conv. Written from
the published architecture and diffusers' parameter naming (``post_quant_conv``,
``decoder.conv_in``, ``decoder.mid_block.resnets.{0,1}``, ``decoder.mid_block.attentions.0.
{group_norm,to_q,to_k,to_v,to_out.0}``, ``decoder.up_blocks.i.resnets.j.{norm1,conv1,norm2,
conv2,conv_shortcut}``, ``decoder.up_blocks.i.upsamplers.0.conv``, ``decoder.conv_norm_out``,
``decoder.conv_out``); no code is copied. Checkpoints saved by old diffusers versions name the
attention ``query``/``key``/``value``/``proj_attn``: :func:`rename_legacy_attention` maps them.

``decode(z)`` = decoder(post_quant_conv(z / scaling_factor)) and ``encode(x)`` =
scaling_factor · (mean, or mean + std·ε) of quant_conv(encoder(x)), the encoder being conv_in,
per level ``layers_per_block`` ResNet blocks and (but the last) a stride-2 3×3 conv after zero
padding right/bottom by one, the mid block, GroupNorm, SiLU, conv_out to 2·latent channels
(mean | log-variance, clamped to [−30, 20]) — as FlexTok's wrapper calls them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VAEDecoderSpec", "AutoencoderKLDecoder", "AutoencoderKL", "rename_legacy_attention", "vae_spec_from_config"]


@dataclass(frozen=True)
class VAEDecoderSpec:
    """diffusers ``AutoencoderKL`` config fields that shape the decoder (FlexTok's
    ``VAE_BASE_CFG`` values by default; ``latent_channels`` 16 as flextok_vae_c16)."""

    latent_channels: int = 16
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    scaling_factor: float | None = None  # None: not known (pass one to decode)
    eps: float = 1e-6

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


def vae_spec_from_config(config: dict) -> VAEDecoderSpec:
    """From a diffusers ``config.json`` of an AutoencoderKL, or FlexTok's ``vae`` section
    (``latent_channels``, ``scaling_factor``; the rest is FlexTok's base config)."""
    kw: dict = {}
    for key in ("latent_channels", "out_channels", "layers_per_block", "norm_num_groups"):
        if isinstance(config.get(key), int):
            kw[key] = int(config[key])
    if isinstance(config.get("block_out_channels"), (list, tuple)):
        kw["block_out_channels"] = tuple(int(c) for c in config["block_out_channels"])
    if isinstance(config.get("scaling_factor"), (int, float)):
        kw["scaling_factor"] = float(config["scaling_factor"])
    if config.get("up_block_types") is not None and any(
            t != "UpDecoderBlock2D" for t in config["up_block_types"]):
        raise ValueError(f"unsupported up_block_types {config['up_block_types']}")
    return VAEDecoderSpec(**kw)


def rename_legacy_attention(state: dict) -> dict:
    """Old diffusers attention names (query, key, value, proj_attn) → to_q, to_k, to_v, to_out.0."""
    names = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}
    out = {}
    for k, v in state.items():
        if ".attentions." in k:
            for old, new in names.items():
                k = k.replace(old, new)
        out[k] = v
    return out


class _ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class _Attention(nn.Module):
    """Single-head self-attention over the H·W positions, residual (diffusers ``Attention`` with
    heads = 1, as in the VAE's mid block)."""

    def __init__(self, c: int, groups: int, eps: float):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, c, eps=eps)
        self.to_q, self.to_k, self.to_v = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
        self.to_out = nn.ModuleList([nn.Linear(c, c), nn.Dropout(0.0)])

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)
        q, k, v = self.to_q(y), self.to_k(y), self.to_v(y)
        o = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        o = self.to_out[0](o)
        return x + o.transpose(1, 2).reshape(b, c, h, w)


class _MidBlock(nn.Module):
    def __init__(self, c: int, groups: int, eps: float):
        super().__init__()
        self.resnets = nn.ModuleList([_ResnetBlock(c, c, groups, eps), _ResnetBlock(c, c, groups, eps)])
        self.attentions = nn.ModuleList([_Attention(c, groups, eps)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class _Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, n: int, upsample: bool, groups: int, eps: float):
        super().__init__()
        self.resnets = nn.ModuleList(_ResnetBlock(cin if i == 0 else cout, cout, groups, eps) for i in range(n))
        if upsample:
            self.upsamplers = nn.ModuleList([_Upsample(cout)])
        self.upsample = upsample

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        return self.upsamplers[0](x) if self.upsample else x


class _Decoder(nn.Module):
    def __init__(self, s: VAEDecoderSpec):
        super().__init__()
        ch: Sequence[int] = list(reversed(s.block_out_channels))
        g, eps = s.norm_num_groups, s.eps
        self.conv_in = nn.Conv2d(s.latent_channels, ch[0], 3, padding=1)
        self.mid_block = _MidBlock(ch[0], g, eps)
        prev = ch[0]
        blocks = []
        for i, c in enumerate(ch):
            blocks.append(_UpBlock(prev, c, s.layers_per_block + 1, i < len(ch) - 1, g, eps))
            prev = c
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=eps)
        self.conv_out = nn.Conv2d(ch[-1], s.out_channels, 3, padding=1)

    def forward(self, z):
        x = self.mid_block(self.conv_in(z))
        for blk in self.up_blocks:
            x = blk(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKLDecoder(nn.Module):
    """``post_quant_conv`` + ``decoder`` of an AutoencoderKL (diffusers key names)."""

    def __init__(self, spec: VAEDecoderSpec = VAEDecoderSpec()):
        super().__init__()
        self.spec = spec
        self.post_quant_conv = nn.Conv2d(spec.latent_channels, spec.latent_channels, 1)
        self.decoder = _Decoder(spec)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, scaling_factor: float | None = None) -> torch.Tensor:
        """Images (B, out_channels, ·f, ·f), roughly in [−1, 1], from scaled latents."""
        sf = scaling_factor if scaling_factor is not None else self.spec.scaling_factor
        if sf is None:
            raise ValueError("the VAE's scaling_factor is unknown: pass scaling_factor= (it is in the "
                             "VAE's config.json, e.g. EPFL-VILAB/flextok_vae_c16)")
        return self.decoder(self.post_quant_conv(latents / sf))


class _Downsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class _DownBlock(nn.Module):
    def __init__(self, cin: int, cout: int, n: int, downsample: bool, groups: int, eps: float):
        super().__init__()
        self.resnets = nn.ModuleList(_ResnetBlock(cin if i == 0 else cout, cout, groups, eps) for i in range(n))
        if downsample:
            self.downsamplers = nn.ModuleList([_Downsample(cout)])
        self.downsample = downsample

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        return self.downsamplers[0](x) if self.downsample else x


class _Encoder(nn.Module):
    def __init__(self, s: VAEDecoderSpec, in_channels: int = 3):
        super().__init__()
        ch = list(s.block_out_channels)
        g, eps = s.norm_num_groups, s.eps
        self.conv_in = nn.Conv2d(in_channels, ch[0], 3, padding=1)
        prev, blocks = ch[0], []
        for i, c in enumerate(ch):
            blocks.append(_DownBlock(prev, c, s.layers_per_block, i < len(ch) - 1, g, eps))
            prev = c
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = _MidBlock(ch[-1], g, eps)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=eps)
        self.conv_out = nn.Conv2d(ch[-1], 2 * s.latent_channels, 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for blk in self.down_blocks:
            x = blk(x)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(x))))


class AutoencoderKL(AutoencoderKLDecoder):
    """Encoder and decoder (``encoder.*``, ``quant_conv.*``, ``post_quant_conv.*``, ``decoder.*``)."""

    def __init__(self, spec: VAEDecoderSpec = VAEDecoderSpec(), in_channels: int = 3):
        super().__init__(spec)
        self.encoder = _Encoder(spec, in_channels)
        self.quant_conv = nn.Conv2d(2 * spec.latent_channels, 2 * spec.latent_channels, 1)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None,
               scaling_factor: float | None = None) -> torch.Tensor:
        """Scaled latents (B, latent, H/f, W/f) of images in [−1, 1]: the posterior mean, or a
        sample (mean + std·ε, ε from ``generator``) with ``sample=True``."""
        sf = scaling_factor if scaling_factor is not None else self.spec.scaling_factor
        if sf is None:
            raise ValueError("the VAE's scaling_factor is unknown: pass scaling_factor=")
        mean, logvar = self.quant_conv(self.encoder(images)).chunk(2, dim=1)
        if sample:
            std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            mean = mean + std * eps
        return mean * sf
