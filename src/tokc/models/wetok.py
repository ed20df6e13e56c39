"""WeTok (zhuangshaobin/WeTok): conv encoder/decoder with group-wise lookup-free quantisation.

An independent implementation that loads the official state dict as it is. What it reproduces
(see shared/fixtures/wetok/NOTES.md):

- quantiser = sign with +0.0 and -0.0 mapped to -1, channels grouped contiguously
  (group c = channels [bits*c, bits*c + bits)), indices packed LSB first (channel bits*c is
  bit 0), the straight-through expression ``x + (q - x)`` kept in eval;
- ResBlocks without conv biases, a 1x1 ``nin_shortcut`` on the block input when widths change;
- decoder ``AdaptiveGroupNorm``: GroupNorm (affine False) scaled by ``gamma(sqrt(var + eps))``
  with the UNBIASED variance of the style over H*W, shifted by ``beta(mean)``;
- ``Upsampler``: conv 3x3 to 4C then depth-to-space in DCR order (not ``pixel_shuffle``);
- Lightning checkpoints with ``use_ema``: ``model_ema.<param name without dots>`` buffers are
  mapped onto the parameters (official reconstructions run inside ``ema_scope``).

``encode(x)`` returns int64 indices shaped (B, H, W, groups); ``.reshape(-1)`` is exactly the
flat vector the official ``VQModel.encode`` returns (order b, h, w, group).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tokc.quantizers.lfq import GroupLFQ

from .graphs import CHECK_BATCH, TRACED_BATCH, Graph, batch_dim

ARCH = "wetok"
_GROUPS = 32
_EPS = 1e-6


@dataclass(frozen=True)
class WeTokConfig:
    in_channels: int = 3
    out_ch: int = 3
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 18
    num_codebooks: int = 1  # groups of the lookup-free quantiser
    codebook_bits: int = 18  # bits per group (log2 n_embed)


def _swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_GROUPS, cin, eps=_EPS)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(_GROUPS, cout, eps=_EPS)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(_swish(self.norm2(h)))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return h + x


def depth_to_space_dcr(x: torch.Tensor, block: int = 2) -> torch.Tensor:
    """out[c, block*h + i, block*w + j] = x[(block*i + j)*C + c, h, w] (DCR order)."""
    b, c4, h, w = x.shape
    c = c4 // (block * block)
    x = x.reshape(b, block, block, c, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(b, c, h * block, w * block)


class Upsampler(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim * 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depth_to_space_dcr(self.conv1(x), 2)


class AdaptiveGroupNorm(nn.Module):
    def __init__(self, z_channels: int, channels: int):
        super().__init__()
        self.gn = nn.GroupNorm(_GROUPS, channels, eps=_EPS, affine=False)
        self.gamma = nn.Linear(z_channels, channels)
        self.beta = nn.Linear(z_channels, channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        s = style.flatten(2)
        n = s.shape[-1]
        mean = s.mean(dim=-1)
        # unbiased (N - 1) variance, written out so that ONNX sees plain reductions
        var = ((s - mean.unsqueeze(-1)) ** 2).sum(dim=-1) / (n - 1)
        scale = self.gamma(torch.sqrt(var + _EPS)).reshape(b, c, 1, 1)
        bias = self.beta(mean).reshape(b, c, 1, 1)
        return scale * self.gn(x) + bias


class _Level(nn.Module):
    def __init__(self, blocks: list[nn.Module], resample: nn.Module | None, name: str):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if resample is not None:
            setattr(self, name, resample)


class Encoder(nn.Module):
    def __init__(self, cfg: WeTokConfig, n_mid: int):
        super().__init__()
        ch, mult = cfg.ch, cfg.ch_mult
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1, bias=False)
        self.down = nn.ModuleList()
        cin = ch
        for level, m in enumerate(mult):
            cout = ch * m
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cin, cout))
                cin = cout
            down = (
                nn.Conv2d(cout, cout, 3, stride=2, padding=1) if level < len(mult) - 1 else None
            )
            self.down.append(_Level(blocks, down, "downsample"))
        self.mid_block = nn.ModuleList([ResBlock(cin, cin) for _ in range(n_mid)])
        self.norm_out = nn.GroupNorm(_GROUPS, cin, eps=_EPS)
        self.conv_out = nn.Conv2d(cin, cfg.z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for level in self.down:
            for blk in level.block:
                x = blk(x)
            if hasattr(level, "downsample"):
                x = level.downsample(x)
        for blk in self.mid_block:
            x = blk(x)
        return self.conv_out(_swish(self.norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, cfg: WeTokConfig, n_mid: int):
        super().__init__()
        ch, mult = cfg.ch, cfg.ch_mult
        cin = ch * mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, cin, 3, padding=1)
        self.mid_block = nn.ModuleList([ResBlock(cin, cin) for _ in range(n_mid)])
        ups: list[nn.Module] = [None] * len(mult)  # type: ignore[list-item]
        adaptive: list[nn.Module] = [None] * len(mult)  # type: ignore[list-item]
        for level in reversed(range(len(mult))):
            cout = ch * mult[level]
            adaptive[level] = AdaptiveGroupNorm(cfg.z_channels, cin)
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cin, cout))
                cin = cout
            ups[level] = _Level(blocks, Upsampler(cin) if level > 0 else None, "upsample")
        self.up = nn.ModuleList(ups)
        self.adaptive = nn.ModuleList(adaptive)
        self.norm_out = nn.GroupNorm(_GROUPS, cin, eps=_EPS)
        self.conv_out = nn.Conv2d(cin, cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        style = z
        x = self.conv_in(z)
        for blk in self.mid_block:
            x = blk(x)
        for level in reversed(range(len(self.up))):
            x = self.adaptive[level](x, style)
            for blk in self.up[level].block:
                x = blk(x)
            if level > 0:
                x = self.up[level].upsample(x)
        return self.conv_out(_swish(self.norm_out(x)))


class WeTok(nn.Module):
    arch = ARCH

    def __init__(self, cfg: WeTokConfig, n_mid_enc: int | None = None, n_mid_dec: int | None = None):
        super().__init__()
        self.config = cfg
        n_enc = cfg.num_res_blocks if n_mid_enc is None else n_mid_enc
        n_dec = cfg.num_res_blocks if n_mid_dec is None else n_mid_dec
        self.encoder = Encoder(cfg, n_enc)
        self.decoder = Decoder(cfg, n_dec)
        self.quantize = GroupLFQ(cfg.num_codebooks, cfg.codebook_bits)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config.ch_mult) - 1)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) in [-1, 1] -> int64 indices (B, H/f, W/f, groups)."""
        return self.quantize.codes_to_indices(self.encoder(x))

    @torch.no_grad()
    def encode_latents(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder output, quantised +-1 tensor) as returned before/by the official encode."""
        h = self.encoder(x)
        return h, self.quantize.quantize(h)

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """int64 indices (B, h, w, groups) -> raw decoder output (B, 3, H, W) (not clamped)."""
        return self.decoder(self.quantize.indices_to_codes(indices))

    @torch.no_grad()
    def decode_latents(self, quant: torch.Tensor) -> torch.Tensor:
        return self.decoder(quant)

    @staticmethod
    def factorize(indices: torch.Tensor) -> torch.Tensor:
        """(B, H, W, G) indices -> (G, B, H*W), the GFQ token-factorised layout (per factor)."""
        b, h, w, g = indices.shape
        return indices.reshape(b, h * w, g).permute(2, 0, 1)

    @staticmethod
    def unfactorize(factors: torch.Tensor, h: int, w: int) -> torch.Tensor:
        g, b, _ = factors.shape
        return factors.permute(1, 2, 0).reshape(b, h, w, g)


# --------------------------------------------------------------------------------- loading


def _find_init_args(cfg: dict) -> dict:
    """The dict holding ``ddconfig`` (VQModel init args), wherever the config nests it."""
    if "ddconfig" in cfg:
        return cfg
    for key in ("lfq_inference_config", "model", "init_args", "params"):
        if isinstance(cfg.get(key), dict):
            try:
                return _find_init_args(cfg[key])
            except ValueError:
                pass
    for v in cfg.values():
        if isinstance(v, dict):
            try:
                return _find_init_args(v)
            except ValueError:
                pass
    raise ValueError("WeTok config: no 'ddconfig' found")


def _count(keys: set[str], prefix: str) -> int:
    idx = {int(k[len(prefix):].split(".")[0]) for k in keys if k.startswith(prefix)}
    return max(idx) + 1 if idx else 0


def _resolve(path: str | Path) -> tuple[Path, Path | None]:
    p = Path(path)
    if p.is_dir():
        w = p / "model.safetensors"
        c = p / "config.json"
        return w, (c if c.exists() else None)
    c = p.with_name("config.json")
    return p, (c if c.exists() else None)


def _apply_ema(sd: dict[str, torch.Tensor], names: set[str], use_ema: bool) -> dict:
    """Map ``model_ema.<name without dots>`` onto parameters; drop training-only keys."""
    ema = {k[len("model_ema."):]: v for k, v in sd.items() if k.startswith("model_ema.")}
    out = {
        k: v for k, v in sd.items() if not k.startswith(("model_ema.", "loss.", "quantize.", "lpips"))
    }
    if use_ema and ema:
        for name in names:
            key = name.replace(".", "")
            if key in ema:
                out[name] = ema[key]
    return out


def load(folder_or_file: str | Path, arch: str | None = None, use_ema: bool = True) -> WeTok:
    """Build WeTok from model.safetensors + config.json (a folder or the weights file)."""
    from safetensors.torch import load_file

    if arch is not None and arch.lower().replace("-", "_") != ARCH:
        raise ValueError(f"wetok.load: arch {arch!r} is not {ARCH!r}")
    weights, config = _resolve(folder_or_file)
    sd = load_file(str(weights))
    sd = {k.removeprefix("state_dict."): v for k, v in sd.items()}
    init = _find_init_args(json.loads(config.read_text())) if config else {}
    dd = init.get("ddconfig", {})
    keys = set(sd)
    groups = int(init.get("num_codebooks", 1))
    z = int(dd.get("z_channels", sd["encoder.conv_out.weight"].shape[0]))
    if "n_embed" in init:
        n_embed = int(init["n_embed"])
        bits_total = (n_embed - 1).bit_length()
        if 2**bits_total != n_embed:
            raise ValueError(f"WeTok config: n_embed {n_embed} is not a power of two")
    else:
        bits_total = z // groups
    if z % groups or bits_total != z // groups:
        raise ValueError(
            f"WeTok config: z_channels {z} must equal num_codebooks {groups} x log2(n_embed) bits"
        )
    ch_mult = tuple(dd.get("ch_mult", ()))
    if not ch_mult:
        raise ValueError("WeTok config: ddconfig.ch_mult is required")
    cfg = WeTokConfig(
        in_channels=int(dd.get("in_channels", sd["encoder.conv_in.weight"].shape[1])),
        out_ch=int(dd.get("out_ch", sd["decoder.conv_out.weight"].shape[0])),
        ch=int(dd.get("ch", sd["encoder.conv_in.weight"].shape[0])),
        ch_mult=ch_mult,
        num_res_blocks=int(dd.get("num_res_blocks", _count(keys, "encoder.down.0.block."))),
        z_channels=z,
        num_codebooks=groups,
        codebook_bits=z // groups,
    )
    model = WeTok(cfg, _count(keys, "encoder.mid_block."), _count(keys, "decoder.mid_block."))
    own = model.state_dict()
    sd = _apply_ema(sd, set(own), use_ema)
    _load_checked(model, sd, "WeTok", weights)
    return model.eval()


def _load_checked(model: nn.Module, sd: dict[str, torch.Tensor], what: str, src) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    bad = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(sd))
        if tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or bad:
        lines = [f"{what}: checkpoint {src} does not match the configuration"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape", bad)):
            if items:
                shown = ", ".join(items[:12]) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")
                lines.append(f"  {title} keys: {shown}")
        raise ValueError("\n".join(lines))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)


# --------------------------------------------------------------------------------- export


class EncoderGraph(nn.Module):
    """image (B, 3, H, W) -> (int64 indices (B, h, w, groups), encoder output (B, C, h, w))."""

    def __init__(self, model: WeTok):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.model.encoder(image)
        return self.model.quantize.codes_to_indices(h), h


class DecoderGraph(nn.Module):
    """int64 indices (B, h, w, groups) -> image (B, 3, H, W), raw (not clamped)."""

    def __init__(self, model: WeTok):
        super().__init__()
        self.model = model

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return self.model.decoder(self.model.quantize.indices_to_codes(indices))


def onnx_graphs(model: WeTok, token_axis: str = "dynamic") -> list[Graph]:
    """image (batch, C, f*height, f*width) -> indices (batch, height, width, groups), latents,
    and indices -> image; batch, height and width dynamic (one token-axis form)."""
    from torch.export import Dim

    cfg = model.config
    f = model.downsample_factor
    g = cfg.num_codebooks
    batch = batch_dim()
    h = Dim("height", min=1, max=4096)
    w = Dim("width", min=1, max=4096)
    rng = np.random.default_rng(1)
    gen = torch.Generator().manual_seed(0)
    th, tw = 4, 3  # traced latent grid; validated at 3 x 5
    ch, cw = 3, 5
    fh, fw = f"{f}*height", f"{f}*width"
    enc = Graph(
        "encoder", EncoderGraph(model).eval(), ("image",), ("indices", "latents"),
        (("batch", cfg.in_channels, fh, fw),),
        (("batch", "height", "width", g), ("batch", cfg.z_channels, "height", "width")),
        (torch.rand(TRACED_BATCH, cfg.in_channels, th * f, tw * f, generator=gen) * 2 - 1,),
        ({0: batch, 2: f * h, 3: f * w},),
        ((rng.random((CHECK_BATCH, cfg.in_channels, ch * f, cw * f), dtype=np.float32) * 2 - 1),),
    )
    n = 2 ** cfg.codebook_bits
    dec = Graph(
        "decoder", DecoderGraph(model).eval(), ("indices",), ("image",),
        (("batch", "height", "width", g),), (("batch", cfg.out_ch, fh, fw),),
        (torch.randint(0, n, (TRACED_BATCH, th, tw, g), generator=gen),),
        ({0: batch, 1: h, 2: w},),
        (rng.integers(0, n, (CHECK_BATCH, ch, cw, g), dtype=np.int64),),
    )
    return [enc, dec]


def onnx_constraints(model: WeTok) -> dict:
    return {"spatial_multiple": model.downsample_factor, "image_range": [-1.0, 1.0],
            "bits_per_group": model.config.codebook_bits, "groups": model.config.num_codebooks}
