"""TiTok-family 1D image tokenizers: One-D-Piece / legacy TiTok and single-stage TiTok VQ.

An independent implementation of the published architectures (turingmotors/One-D-Piece,
bytedance/1d-tokenizer) whose parameter names match the official ``state_dict`` so the released
weight files load as they are. Every size is read from the checkpoint's config and weights.

Two variants share one class, :class:`TiTok`:

- **legacy** (One-D-Piece, TiTok-L-32/B-64/S-128): latents leave the encoder through a raw
  reshape (no permute), the VQ is L2-normalised, the ViT decoder predicts logits over the
  1024-entry MaskGIT-VQGAN codebook, a softmax-weighted (soft) lookup of that codebook feeds the
  MaskGIT-VQGAN pixel decoder. ``decode`` accepts the first k tokens for any 1 <= k <= N.
- **non-legacy VQ** (TiTok bl64/bl128/sl256 vq8k): permuted latent layout, Euclidean VQ, the
  decoder predicts RGB patches directly (1x1 conv + depth-to-space + 3x3 conv). Exactly N tokens.

Tokens have the official shape (B, 1, N) and dtype int64; images are NCHW float in [0, 1]
(no mean/std normalisation); decoded images are the raw (unclamped) decoder output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tokc.quantizers.vq import VectorQuantizer

from .graphs import CHECK_BATCH, TRACED_BATCH, Graph, batch_dim
from .vit import ResidualAttentionBlock, ViTSize, vit_size

__all__ = [
    "ARCHS",
    "PixelDecoderConfig",
    "TiTokConfig",
    "TiTok",
    "load",
    "onnx_graphs",
    "onnx_constraints",
]

ARCHS = ("one-d-piece", "titok-vq")

# MaskGIT-VQGAN pixel decoder as hard-coded in the official TiTok / One-D-Piece constructors.
_OFFICIAL_PIXEL_DECODER = {
    "channel_mult": [1, 1, 2, 2, 4],
    "num_resolutions": 5,
    "dropout": 0.0,
    "hidden_channels": 128,
    "num_channels": 3,
    "num_res_blocks": 2,
    "resolution": 256,
    "z_channels": 256,
}
_OFFICIAL_PIXEL_CODEBOOK = 1024


@dataclass(frozen=True)
class PixelDecoderConfig:
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    hidden_channels: int = 128
    z_channels: int = 256
    num_res_blocks: int = 2
    num_channels: int = 3
    codebook_size: int = _OFFICIAL_PIXEL_CODEBOOK

    @property
    def num_resolutions(self) -> int:
        return len(self.channel_mult)


@dataclass(frozen=True)
class TiTokConfig:
    image_size: tuple[int, int] = (256, 256)
    enc_patch_size: int = 16
    dec_patch_size: int = 16
    encoder: ViTSize = field(default_factory=lambda: vit_size("large"))
    decoder: ViTSize = field(default_factory=lambda: vit_size("large"))
    num_latent_tokens: int = 32
    token_size: int = 12
    codebook_size: int = 4096
    use_l2_norm: bool = True
    legacy: bool = True
    pixel_decoder: PixelDecoderConfig | None = field(default_factory=PixelDecoderConfig)

    @property
    def arch(self) -> str:
        return "one-d-piece" if self.legacy else "titok-vq"

    @staticmethod
    def from_dict(config: dict, state_dict: dict | None = None) -> TiTokConfig:
        """Build from an official config (full OmegaConf dict, its ``model``, or ``vq_model``)."""
        model = config.get("model", config) if isinstance(config, dict) else {}
        vq = model.get("vq_model", model)
        if not isinstance(vq, dict) or "vit_enc_model_size" not in vq:
            raise ValueError(
                "config has no model.vq_model.vit_enc_model_size: not a TiTok / One-D-Piece config"
            )
        mode = str(vq.get("quantize_mode", "vq")).lower()
        if mode != "vq":
            raise ValueError(f"TiTok quantize_mode {mode!r} is not supported (only 'vq')")
        one_d_piece = str(model.get("type", "")).lower().replace("-", "_") == "one_d_piece"
        legacy = True if one_d_piece else bool(vq.get("is_legacy", True))
        finetune = bool(vq.get("finetune_decoder", True))
        if legacy and not finetune:
            raise ValueError(
                "legacy TiTok with finetune_decoder=False predicts proxy codes for a separate "
                "MaskGIT-VQGAN; only the released (finetune_decoder=True) checkpoints are supported"
            )
        if not legacy and finetune:
            raise ValueError("non-legacy TiTok with finetune_decoder=True is not a released layout")
        sd = state_dict or {}
        enc_patch = int(vq.get("vit_enc_patch_size", 16))
        dec_patch = int(vq.get("vit_dec_patch_size", 16))
        crop = (config.get("dataset", {}).get("preprocessing", {}) or {}).get("crop_size")
        if crop is None and "encoder.positional_embedding" in sd:
            grid = math.isqrt(int(sd["encoder.positional_embedding"].shape[0]) - 1)
            crop = grid * enc_patch
        crop = 256 if crop is None else crop
        size = (
            (int(crop), int(crop)) if isinstance(crop, int | float) else tuple(int(c) for c in crop)
        )
        pix = None
        if legacy:
            raw = dict(_OFFICIAL_PIXEL_DECODER)
            raw.update(vq.get("fixture_pixel_decoder") or {})
            mult = tuple(int(m) for m in raw["channel_mult"])
            if int(raw.get("num_resolutions", len(mult))) != len(mult):
                raise ValueError("pixel decoder: num_resolutions != len(channel_mult)")
            n_codes = _OFFICIAL_PIXEL_CODEBOOK
            if "pixel_quantize.embedding.weight" in sd:
                n_codes = int(sd["pixel_quantize.embedding.weight"].shape[0])
            pix = PixelDecoderConfig(
                channel_mult=mult,
                hidden_channels=int(raw["hidden_channels"]),
                z_channels=int(raw["z_channels"]),
                num_res_blocks=int(raw["num_res_blocks"]),
                num_channels=int(raw["num_channels"]),
                codebook_size=n_codes,
            )
        return TiTokConfig(
            image_size=size,
            enc_patch_size=enc_patch,
            dec_patch_size=dec_patch,
            encoder=vit_size(vq["vit_enc_model_size"]),
            decoder=vit_size(vq["vit_dec_model_size"]),
            num_latent_tokens=int(vq["num_latent_tokens"]),
            token_size=int(vq["token_size"]),
            codebook_size=int(vq["codebook_size"]),
            use_l2_norm=bool(vq.get("use_l2_norm", legacy)),
            legacy=legacy,
            pixel_decoder=pix,
        )


def _grid(image_size: tuple[int, int], patch: int) -> tuple[int, int]:
    h, w = image_size
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {patch}")
    return h // patch, w // patch


class TiTokEncoder(nn.Module):
    def __init__(self, cfg: TiTokConfig):
        super().__init__()
        w = cfg.encoder.width
        self.legacy = cfg.legacy
        self.width = w
        self.token_size = cfg.token_size
        self.grid = _grid(cfg.image_size, cfg.enc_patch_size)
        n_patch = self.grid[0] * self.grid[1]
        self.patch_embed = nn.Conv2d(3, w, cfg.enc_patch_size, stride=cfg.enc_patch_size)
        self.class_embedding = nn.Parameter(torch.zeros(1, w))
        self.positional_embedding = nn.Parameter(torch.zeros(n_patch + 1, w))
        self.latent_token_positional_embedding = nn.Parameter(torch.zeros(cfg.num_latent_tokens, w))
        self.ln_pre = nn.LayerNorm(w, eps=1e-5)
        self.transformer = nn.ModuleList(
            ResidualAttentionBlock(w, cfg.encoder.heads) for _ in range(cfg.encoder.layers)
        )
        self.ln_post = nn.LayerNorm(w, eps=1e-5)
        self.conv_out = nn.Conv2d(w, cfg.token_size, 1)

    def forward(self, x: torch.Tensor, latent_tokens: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        w = self.width
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, HW, W), row-major
        cls = self.class_embedding.to(x.dtype).unsqueeze(0).expand(b, -1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        lat = (
            (latent_tokens + self.latent_token_positional_embedding).unsqueeze(0).expand(b, -1, -1)
        )
        n = lat.shape[1]
        x = self.ln_pre(torch.cat([x, lat], dim=1))
        for block in self.transformer:
            x = block(x)
        lat = self.ln_post(x[:, x.shape[1] - n :])  # (B, N, W)
        if self.legacy:  # quirk: raw reinterpretation (B, N, W) -> (B, W, N, 1), no permute
            lat = lat.reshape(b, w, n, 1)
        else:
            lat = lat.reshape(b, n, w, 1).permute(0, 2, 1, 3)
        return self.conv_out(lat).reshape(b, self.token_size, 1, n)


class TiTokDecoder(nn.Module):
    def __init__(self, cfg: TiTokConfig):
        super().__init__()
        w = cfg.decoder.width
        self.legacy = cfg.legacy
        self.width = w
        self.patch = cfg.dec_patch_size
        self.grid = _grid(cfg.image_size, cfg.dec_patch_size)
        n_patch = self.grid[0] * self.grid[1]
        self.decoder_embed = nn.Linear(cfg.token_size, w)
        self.class_embedding = nn.Parameter(torch.zeros(1, w))
        self.positional_embedding = nn.Parameter(torch.zeros(n_patch + 1, w))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, w))
        self.latent_token_positional_embedding = nn.Parameter(torch.zeros(cfg.num_latent_tokens, w))
        self.ln_pre = nn.LayerNorm(w, eps=1e-5)
        self.transformer = nn.ModuleList(
            ResidualAttentionBlock(w, cfg.decoder.heads) for _ in range(cfg.decoder.layers)
        )
        self.ln_post = nn.LayerNorm(w, eps=1e-5)
        if cfg.legacy:
            assert cfg.pixel_decoder is not None
            self.ffn = nn.Sequential(
                nn.Conv2d(w, 2 * w, 1),
                nn.Tanh(),
                nn.Conv2d(2 * w, cfg.pixel_decoder.codebook_size, 1),
            )
            self.conv_out = None
        else:
            self.ffn = nn.Sequential(nn.Conv2d(w, self.patch * self.patch * 3, 1))
            self.conv_out = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: (B, k, token_size) -> legacy: logits (B, 1024, gh, gw); else RGB (B, 3, H, W)."""
        b, k, _ = codes.shape
        gh, gw = self.grid
        x = self.decoder_embed(codes) + self.latent_token_positional_embedding[:k]
        cls = self.class_embedding.unsqueeze(0).expand(b, -1, -1)
        masks = self.mask_token.expand(b, gh * gw, -1)
        prefix = torch.cat([cls, masks], dim=1) + self.positional_embedding
        x = self.ln_pre(torch.cat([prefix, x], dim=1))
        for block in self.transformer:
            x = block(x)
        x = self.ln_post(x[:, 1 : 1 + gh * gw])
        x = x.transpose(1, 2).reshape(b, self.width, gh, gw)
        x = self.ffn(x)
        if self.conv_out is None:
            return x
        p = self.patch  # depth-to-space: channel (p1 * p + p2) * 3 + c, colour fastest
        x = x.reshape(b, p, p, 3, gh, gw).permute(0, 3, 4, 1, 5, 2).reshape(b, 3, gh * p, gw * p)
        return self.conv_out(x)


class _Conv2dSame(nn.Conv2d):
    """TensorFlow-style SAME convolution (stride 1, odd kernel: symmetric padding k // 2)."""

    def __init__(self, cin: int, cout: int, k: int, bias: bool = True):
        if k % 2 == 0:
            raise ValueError("only odd kernels are used by the MaskGIT-VQGAN decoder")
        super().__init__(cin, cout, k, padding=k // 2, bias=bias)


class _ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, cin, eps=1e-6)
        self.conv1 = _Conv2dSame(cin, cout, 3, bias=False)
        self.norm2 = nn.GroupNorm(32, cout, eps=1e-6)
        self.conv2 = _Conv2dSame(cout, cout, 3, bias=False)
        self.nin_shortcut = _Conv2dSame(cout, cout, 1, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.nin_shortcut is not None:  # official quirk: shortcut of the block OUTPUT
            return h + self.nin_shortcut(h)
        return h + x


class _UpBlock(nn.Module):
    def __init__(self, cfg: PixelDecoderConfig, idx: int):
        super().__init__()
        mult = cfg.channel_mult
        cin = cfg.hidden_channels * (mult[-1] if idx == len(mult) - 1 else mult[idx + 1])
        cout = cfg.hidden_channels * mult[idx]
        blocks = []
        for _ in range(cfg.num_res_blocks):
            blocks.append(_ResnetBlock(cin, cout))
            cin = cout
        self.block = nn.ModuleList(blocks)
        self.upsample_conv = _Conv2dSame(cout, cout, 3) if idx != 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.block:
            x = blk(x)
        if self.upsample_conv is not None:
            x = self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class PixelDecoder(nn.Module):
    """MaskGIT-VQGAN decoder: conv_in, mid res blocks, up blocks from the top down, norm, conv."""

    def __init__(self, cfg: PixelDecoderConfig):
        super().__init__()
        top = cfg.hidden_channels * cfg.channel_mult[-1]
        self.conv_in = _Conv2dSame(cfg.z_channels, top, 3)
        self.mid = nn.ModuleList(_ResnetBlock(top, top) for _ in range(cfg.num_res_blocks))
        self.up = nn.ModuleList(_UpBlock(cfg, i) for i in range(cfg.num_resolutions))
        out = cfg.hidden_channels * cfg.channel_mult[0]
        self.norm_out = nn.GroupNorm(32, out, eps=1e-6)
        self.conv_out = _Conv2dSame(out, cfg.num_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for blk in self.mid:
            x = blk(x)
        for blk in reversed(self.up):
            x = blk(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class _PixelQuantizer(nn.Module):
    def __init__(self, n: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n, dim)


class TiTok(nn.Module):
    """One-D-Piece / legacy TiTok (``cfg.legacy``) or single-stage TiTok VQ."""

    def __init__(self, cfg: TiTokConfig):
        super().__init__()
        self.config = cfg
        self.latent_tokens = nn.Parameter(torch.zeros(cfg.num_latent_tokens, cfg.encoder.width))
        self.encoder = TiTokEncoder(cfg)
        self.quantize = VectorQuantizer(cfg.codebook_size, cfg.token_size, cfg.use_l2_norm)
        self.decoder = TiTokDecoder(cfg)
        if cfg.legacy:
            pc = cfg.pixel_decoder
            assert pc is not None
            self.pixel_quantize = _PixelQuantizer(pc.codebook_size, pc.z_channels)
            self.pixel_decoder = PixelDecoder(pc)

    @property
    def arch(self) -> str:
        return self.config.arch

    @property
    def num_tokens(self) -> int:
        return self.config.num_latent_tokens

    # -- encoder side -------------------------------------------------------------------------
    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation latent z (B, token_size, 1, N) (not normalised)."""
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != self.config.image_size:
            h, w = self.config.image_size
            raise ValueError(
                f"expected images (B, 3, {h}, {w}) in [0, 1], got {tuple(x.shape)}; "
                "resize or crop to the tokenizer's size first"
            )
        return self.encoder(x, self.latent_tokens)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) in [0, 1] -> token indices (B, 1, N) int64."""
        return self.quantize.codes_to_indices(self.encode_latent(x))

    def codes_to_indices(self, z: torch.Tensor) -> torch.Tensor:
        return self.quantize.codes_to_indices(z)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, 1, k) -> quantised latent (B, token_size, 1, k)."""
        return self.quantize.indices_to_codes(indices)

    # -- decoder side -------------------------------------------------------------------------
    def decoder_output(self, zq: torch.Tensor) -> torch.Tensor:
        """Latent (B, C, 1, k) -> ViT decoder output (legacy: pixel-codebook logits)."""
        b, c, h, k = zq.shape
        return self.decoder(zq.reshape(b, c * h, k).transpose(1, 2))

    def pixel_quantized_states(self, logits: torch.Tensor) -> torch.Tensor:
        """Soft lookup: softmax over the codebook axis, weighted sum of pixel codebook rows."""
        probs = logits.softmax(dim=1)
        return torch.einsum("nchw,cd->ndhw", probs, self.pixel_quantize.embedding.weight)

    def decode_latent(self, zq: torch.Tensor) -> torch.Tensor:
        """Quantised latent (B, C, 1, k) -> image (B, 3, H, W), raw decoder output (unclamped)."""
        k = zq.shape[-1]
        if not 1 <= k <= self.num_tokens:
            raise ValueError(f"{k} tokens given; this model takes 1..{self.num_tokens}")
        if not self.config.legacy and k != self.num_tokens:
            raise ValueError(f"TiTok VQ decodes exactly {self.num_tokens} tokens, got {k}")
        out = self.decoder_output(zq)
        if not self.config.legacy:
            return out
        return self.pixel_decoder(self.pixel_quantized_states(out))

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Token indices (B, 1, k) (or (B, k)) -> image; legacy models take any prefix 1 <= k <= N."""
        if indices.dim() == 2:
            indices = indices.unsqueeze(1)
        if indices.dim() != 3 or indices.shape[1] != 1:
            raise ValueError(f"tokens must have shape (B, 1, k), got {tuple(indices.shape)}")
        k = indices.shape[-1]
        if not 1 <= k <= self.num_tokens:
            raise ValueError(f"{k} tokens given; this model takes 1..{self.num_tokens}")
        if indices.dtype.is_floating_point or (
            indices.numel()
            and not 0 <= int(indices.min()) <= int(indices.max()) < self.config.codebook_size
        ):
            raise ValueError(f"token indices must be integers in [0, {self.config.codebook_size})")
        return self.decode_latent(self.indices_to_codes(indices))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


# -- loading ----------------------------------------------------------------------------------
def load(folder_or_file: str | Path, arch: str | None = None) -> TiTok:
    """Build a TiTok / One-D-Piece model from model.safetensors (or .bin/.ckpt) + config.json."""
    from .checkpoints import load_state_dict_into, read_config, read_state_dict, resolve

    if arch is not None and arch not in ARCHS:
        raise ValueError(f"titok.load: unknown arch {arch!r}; expected one of {ARCHS}")
    config_path, weights_path = resolve(folder_or_file)
    if config_path is None:
        raise ValueError(
            f"{folder_or_file}: no config.json next to the weights; TiTok head counts and the "
            "latent layout cannot be inferred from weights alone"
        )
    config = read_config(config_path)
    state = read_state_dict(weights_path)
    cfg = TiTokConfig.from_dict(config, state)
    if arch is not None and arch != cfg.arch:
        raise ValueError(f"{folder_or_file}: config describes {cfg.arch!r}, not {arch!r}")
    model = TiTok(cfg)
    load_state_dict_into(model, state, source=str(weights_path))
    return model.eval()


# -- ONNX export ------------------------------------------------------------------------------
class _EncodeGraph(nn.Module):
    def __init__(self, model: TiTok):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode(image)


class _DecodeGraph(nn.Module):
    def __init__(self, model: TiTok):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        m = self.model
        return m.decode_latent(m.indices_to_codes(tokens))


class MaskedDecodeGraph(nn.Module):
    """One-D-Piece decode of a prefix with a fixed N-slot token axis and an attention mask."""

    def __init__(self, model: TiTok):
        super().__init__()
        if not model.config.legacy:
            raise ValueError("the masked token axis is for One-D-Piece / legacy TiTok only")
        self.model = model

    def forward(self, tokens: torch.Tensor, num_tokens: torch.Tensor) -> torch.Tensor:
        m = self.model
        dec = m.decoder
        zq = m.indices_to_codes(tokens)  # (B, C, 1, N)
        b, c, hh, n = zq.shape
        gh, gw = dec.grid
        x = dec.decoder_embed(zq.reshape(b, c * hh, n).transpose(1, 2))
        x = x + dec.latent_token_positional_embedding[:n]
        cls = dec.class_embedding.unsqueeze(0).expand(b, -1, -1)
        masks = dec.mask_token.expand(b, gh * gw, -1)
        prefix = torch.cat([cls, masks], dim=1) + dec.positional_embedding
        x = dec.ln_pre(torch.cat([prefix, x], dim=1))
        slots = torch.arange(n, device=tokens.device).unsqueeze(0)
        dropped = slots >= num_tokens.reshape(-1, 1)  # (B, N)
        keep_prefix = torch.zeros(b, 1 + gh * gw, device=x.device, dtype=torch.bool)
        dropped = torch.cat([keep_prefix, dropped], dim=1)
        bias = torch.zeros(dropped.shape, dtype=x.dtype, device=x.device)
        bias = bias.masked_fill(dropped, float("-inf")).reshape(b, 1, 1, -1)
        for block in dec.transformer:
            x = x + block.attn(block.ln_1(x), bias)
            x = x + block.mlp(block.ln_2(x))
        x = dec.ln_post(x[:, 1 : 1 + gh * gw])
        x = dec.ffn(x.transpose(1, 2).reshape(b, dec.width, gh, gw))
        return m.pixel_decoder(m.pixel_quantized_states(x))


def onnx_graphs(model: TiTok, token_axis: str = "dynamic") -> list[Graph]:
    """image (batch, 3, H, W) -> tokens (batch, 1, N) and back. The decoder of a legacy model
    (One-D-Piece) takes a prefix: ``dynamic`` tokens (batch, 1, 1..N), or ``masked`` N slots
    plus ``num_tokens`` (batch,); TiTok VQ decodes exactly N tokens."""
    from torch.export import Dim

    cfg = model.config
    h, w = cfg.image_size
    n = cfg.num_latent_tokens
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(1)
    batch = batch_dim()
    enc = Graph(
        "encoder", _EncodeGraph(model).eval(), ("image",), ("tokens",),
        (("batch", 3, h, w),), (("batch", 1, n),),
        (torch.rand(TRACED_BATCH, 3, h, w, generator=gen),), ({0: batch},),
        (rng.random((CHECK_BATCH, 3, h, w), dtype=np.float32),),
    )
    traced_tokens = torch.randint(0, cfg.codebook_size, (TRACED_BATCH, 1, n), generator=gen)
    if not cfg.legacy:
        dec = Graph(
            "decoder", _DecodeGraph(model).eval(), ("tokens",), ("image",),
            (("batch", 1, n),), (("batch", 3, h, w),),
            (traced_tokens,), ({0: batch},),
            (rng.integers(0, cfg.codebook_size, (CHECK_BATCH, 1, n), dtype=np.int64),),
        )
        return [enc, dec]
    k = max(1, n // 2 - 1) if n > 1 else 1  # validated prefix, != the traced n
    check_tokens = rng.integers(0, cfg.codebook_size, (CHECK_BATCH, 1, n), dtype=np.int64)
    if token_axis == "masked":
        dec = Graph(
            "decoder", MaskedDecodeGraph(model).eval(), ("tokens", "num_tokens"), ("image",),
            (("batch", 1, n), ("batch",)), (("batch", 3, h, w),),
            (traced_tokens, torch.tensor([n, max(1, n // 3)], dtype=torch.int64)),
            ({0: batch}, {0: batch}),
            (check_tokens, np.full((CHECK_BATCH,), k, dtype=np.int64)),
        )
    else:
        dims: dict[int, object] = {0: batch}
        if n > 1:
            dims[2] = Dim("tokens", min=1, max=n)
        dec = Graph(
            "decoder", _DecodeGraph(model).eval(), ("tokens",), ("image",),
            (("batch", 1, "tokens"),), (("batch", 3, h, w),),
            (traced_tokens,), (dims,),
            (np.ascontiguousarray(check_tokens[:, :, :k]),),
        )
    return [enc, dec]


def onnx_constraints(model: TiTok) -> dict:
    cfg = model.config
    return {"image_size": list(cfg.image_size), "num_tokens": cfg.num_latent_tokens,
            "codebook_size": cfg.codebook_size, "image_range": [0.0, 1.0],
            "decoder_tokens": f"1..{cfg.num_latent_tokens}" if cfg.legacy else cfg.num_latent_tokens}
