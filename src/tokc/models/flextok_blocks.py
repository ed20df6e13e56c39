"""The pieces FlexTok's flow decoder (:mod:`tokc.models.flextok_decoder`) and register encoder
(:mod:`tokc.models.flextok_encoder`) share: the ``FlexTransformer`` fields of their specs, reading
and writing the config entries both have, and the modules (official attribute names) both build.

Written from the paper and a reading of the official code; no code is copied (see the decoder's
module docstring for what was read).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import CheckpointError

__all__ = ["TransformerSpec", "sincos_2d_posemb"]


@dataclass(frozen=True)
class TransformerSpec:
    """The ``FlexTransformer`` fields; defaults are the official class's defaults."""

    dim: int = 768
    depth: int = 12
    head_dim: int = 64
    mlp_ratio: float = 4.0
    qkv_bias: bool = False
    proj_bias: bool = False
    mlp_bias: bool = False
    gated_mlp: bool = True
    qk_norm: bool = True
    act: str = "silu"  # silu | gelu
    norm_affine: bool = False
    norm_bias: bool = False
    norm_eps: float = 1e-5

    def __post_init__(self):
        if self.dim % self.head_dim:
            raise ValueError(f"dim {self.dim} is not a multiple of head_dim {self.head_dim}")
        if self.act not in ("silu", "gelu"):
            raise ValueError(f"act must be silu or gelu, got {self.act!r}")

    @property
    def num_heads(self) -> int:
        return self.dim // self.head_dim

    @property
    def mlp_hidden(self) -> int:
        hidden = int(self.dim * self.mlp_ratio)
        return int(2 * hidden / 3) if self.gated_mlp else hidden


# -- config as data ---------------------------------------------------------------------------
def cls_name(d) -> str:
    """The class name at the end of an entry's ``_target_`` ("" when there is none)."""
    return str(d.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(d, dict) else ""


def module_entries(config, section: str, problems: list[str]) -> Iterator[tuple[str, str, dict]]:
    """(name, class name, entry) for each entry of ``config[section]["module_dict"]`` (or of
    ``config["module_dict"]`` for the section alone); an entry that is not a mapping is a problem."""
    sec = config.get(section, config) if isinstance(config, dict) else None
    mods = sec.get("module_dict") if isinstance(sec, dict) else None
    if not isinstance(mods, dict) or not mods:
        raise CheckpointError(f"FlexTok config has no {section}.module_dict")
    for name, m in mods.items():
        if isinstance(m, dict):
            yield name, cls_name(m), m
        else:
            problems.append(f"{name}: not a mapping")


def build_spec(spec_cls, section: str, kw: dict, names: dict, default_names: dict, problems: list[str]):
    """``spec_cls(**kw)`` with the module names found, or one CheckpointError for all problems."""
    if problems:
        raise CheckpointError(f"FlexTok {section} config not supported by tokc:\n  " + "\n  ".join(problems))
    try:
        return spec_cls(**kw, names={**default_names, **names})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"FlexTok {section} config: {exc}") from None


def norm_kwargs(node, prefix: str = "") -> dict:
    """(affine, bias, eps) from a norm_layer entry such as {_target_: ...Fp32LayerNorm,
    _partial_: true, bias: false, elementwise_affine: false}; the defaults otherwise."""
    out: dict = {}
    if isinstance(node, dict):
        name = cls_name(node)
        if name and name not in ("Fp32LayerNorm", "LayerNorm"):
            raise CheckpointError(f"FlexTok: unsupported norm_layer {name!r}")
        if "elementwise_affine" in node:
            out[prefix + "norm_affine"] = bool(node["elementwise_affine"])
        if "bias" in node:
            out[prefix + "norm_bias"] = bool(node["bias"])
        if "eps" in node and not prefix:
            out["norm_eps"] = float(node["eps"])
    return out


def patch_embedder_kwargs(name: str, m: dict, problems: list[str]) -> dict:
    """Spec fields from a ``PatchEmbedder`` entry."""
    size = tuple(int(p) for p in m.get("patch_sizes", (2, 2)))
    if len(size) != 2 or m.get("dim") is None:
        problems.append(f"{name}: expected 2 patch sizes and a projection dim")
    return {"latent_channels": int(m["channels_in"]), "patch_size": size}


def transformer_kwargs(m: dict, extra: Sequence[tuple[str, type]] = ()) -> dict:
    """:class:`TransformerSpec` fields (and ``extra`` ones) from a ``FlexTransformer`` entry."""
    kw: dict = {}
    for key, typ in (("dim", int), ("depth", int), ("head_dim", int), ("mlp_ratio", float),
                     ("qkv_bias", bool), ("proj_bias", bool), ("mlp_bias", bool),
                     ("gated_mlp", bool), ("qk_norm", bool), *extra):
        if key in m:
            kw[key] = typ(m[key])
    act = m.get("act_layer")
    if isinstance(act, dict):
        kw["act"] = {"SiLU": "silu", "GELU": "gelu"}.get(cls_name(act), cls_name(act))
    kw.update(norm_kwargs(m.get("norm_layer")))
    return kw


def head_kwargs(name: str, m: dict, problems: list[str]) -> dict:
    """``head_norm*`` and ``head_proj_bias`` from a ``LinearHead`` / ``ToPatchesLinearHead`` entry."""
    if m.get("use_mup_readout"):
        problems.append(f"{name}: use_mup_readout (μP readout scaling needs base shapes)")
    if "norm_layer" in m and m["norm_layer"] is None:
        kw = {"head_norm": False}
    else:
        kw = norm_kwargs(m.get("norm_layer"), prefix="head_")
    return {**kw, "head_proj_bias": bool(m.get("proj_bias", True))}


# -- config writers (the official layout; data keys are not used by tokc) ---------------------
def norm_config(t, affine: bool, bias: bool) -> dict:
    return {"_target_": t("layers.norm.Fp32LayerNorm"), "_partial_": True, "bias": bias, "elementwise_affine": affine}


def per_sample_op_config(t, read_key: str, write_key: str, op: str) -> dict:
    return {"_target_": t("utils.dict_ops.PerSampleOp"), "read_key": read_key, "write_key": write_key,
            "per_sample_op": {"_target_": t(f"utils.dict_ops.{op}"), "_partial_": True}}


def patch_embedder_config(t, spec, read_key: str, p: str) -> dict:
    """``PatchEmbedder`` writing ``{p}_patches``."""
    return {"_target_": t("preprocessors.patching.PatchEmbedder"), "input_tensor_list_read_key": read_key,
            "patches_list_write_key": f"{p}_patches", "n_patches_write_key": f"{p}_n_patches",
            "patch_sizes": list(spec.patch_size), "channels_in": spec.latent_channels, "dim": spec.dim,
            "flatten_patches": False}


def seq_packer_config(t, p: str, inputs: list[str], mask_mode: str, **extra) -> dict:
    return {"_target_": t("preprocessors.flex_seq_packing.BlockWiseSequencePacker"),
            "input_list_read_keys": inputs, "packed_seq_write_key": f"{p}_packed_seq",
            "block_mask_write_key": f"{p}_block_mask", "inner_packed_shapes_write_key": f"{p}_ps_inner",
            "outer_packed_shapes_write_key": f"{p}_ps_outer", "mask_mode": mask_mode, "pad_to_multiple": 128,
            **extra}


def transformer_config(t, spec: TransformerSpec, p: str, **extra) -> dict:
    return {"_target_": t("trunks.transformers.FlexTransformer"),
            "input_seq_read_key": f"{p}_packed_seq", "output_seq_write_key": f"{p}_packed_seq",
            "dim": spec.dim, "depth": spec.depth, "head_dim": spec.head_dim,
            "mlp_ratio": spec.mlp_ratio, "qkv_bias": spec.qkv_bias, "proj_bias": spec.proj_bias,
            "mlp_bias": spec.mlp_bias, "gated_mlp": spec.gated_mlp, "qk_norm": spec.qk_norm,
            "act_layer": {"_target_": f"torch.nn.{'SiLU' if spec.act == 'silu' else 'GELU'}", "_partial_": True},
            "norm_layer": norm_config(t, spec.norm_affine, spec.norm_bias),
            "block_mask_read_key": f"{p}_block_mask", **extra}


def unpacker_config(t, p: str, outputs: list[str]) -> dict:
    return {"_target_": t("postprocessors.seq_unpacking.SequenceUnpacker"), "packed_seq_read_key": f"{p}_packed_seq",
            "inner_seq_write_keys": outputs, "inner_packed_shapes_read_key": f"{p}_ps_inner",
            "outer_packed_shapes_read_key": f"{p}_ps_outer"}


# -- modules (official attribute names) -------------------------------------------------------
def layer_norm(dim: int, affine: bool, bias: bool, eps: float = 1e-5) -> nn.Module:
    return Fp32LayerNorm(dim, eps=eps, elementwise_affine=affine, bias=bias and affine)


class Fp32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back (the official ``Fp32LayerNorm``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).type_as(x)


class Attention(nn.Module):
    def __init__(self, s: TransformerSpec):
        super().__init__()
        self.num_heads = s.num_heads
        self.head_dim = s.head_dim
        self.wq = nn.Linear(s.dim, s.dim, bias=s.qkv_bias)
        self.wk = nn.Linear(s.dim, s.dim, bias=s.qkv_bias)
        self.wv = nn.Linear(s.dim, s.dim, bias=s.qkv_bias)
        self.proj = nn.Linear(s.dim, s.dim, bias=s.proj_bias)
        if s.qk_norm:
            self.q_norm = layer_norm(s.head_dim, s.norm_affine, s.norm_bias, s.norm_eps)
            self.k_norm = layer_norm(s.head_dim, s.norm_affine, s.norm_bias, s.norm_eps)
        else:
            self.q_norm = self.k_norm = nn.Identity()
        self.scale = 8.0 / s.head_dim  # μP attention scale, as the official FlexAttention

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, d); ``mask`` (L, L) bool, True where a query may attend to a key."""
        b, n, d = x.shape

        def heads(t):
            return t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)

        q = self.q_norm(heads(self.wq(x)))
        k = self.k_norm(heads(self.wk(x)))
        v = heads(self.wv(x))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, s: TransformerSpec):
        super().__init__()
        self.gated = s.gated_mlp
        self.fc1 = nn.Linear(s.dim, s.mlp_hidden, bias=s.mlp_bias)
        self.act = nn.SiLU() if s.act == "silu" else nn.GELU()
        self.fc2 = nn.Linear(s.mlp_hidden, s.dim, bias=s.mlp_bias)
        if self.gated:
            self.fc3 = nn.Linear(s.dim, s.mlp_hidden, bias=s.mlp_bias)

    def forward(self, x):
        h = self.act(self.fc1(x))
        return self.fc2(h * self.fc3(x) if self.gated else h)


class Block(nn.Module):
    """Pre-norm transformer block without modulation (the official ``FlexBlock``)."""

    def __init__(self, s: TransformerSpec):
        super().__init__()
        self.norm1 = layer_norm(s.dim, s.norm_affine, s.norm_bias, s.norm_eps)
        self.attn = Attention(s)
        self.norm2 = layer_norm(s.dim, s.norm_affine, s.norm_bias, s.norm_eps)
        self.mlp = Mlp(s)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """``FlexTransformer``: ``depth`` blocks of class ``block``, each called as ``blk(x, *args)``."""

    def __init__(self, s: TransformerSpec, block: type[nn.Module] = Block):
        super().__init__()
        self.blocks = nn.ModuleList(block(s) for _ in range(s.depth))

    def forward(self, x, *args):
        for blk in self.blocks:
            x = blk(x, *args)
        return x


class PatchEmbedder(nn.Module):
    """``PatchEmbedder``: channels last, p×p patches ((p_h, p_w, c) order, c fastest) → linear to d."""

    def __init__(self, s):
        super().__init__()
        self.patch_size, self.channels = tuple(s.patch_size), s.latent_channels
        ph, pw = s.patch_size
        self.patch_proj = nn.Linear(s.latent_channels * ph * pw, s.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, H/p_h, W/p_w, d)."""
        b, c, h, w = x.shape
        ph, pw = self.patch_size
        if c != self.channels or h % ph or w % pw:
            raise ValueError(f"latents {tuple(x.shape)} do not fit {self.channels} channels "
                             f"and patch size {self.patch_size}")
        gh, gw = h // ph, w // pw
        p = x.permute(0, 2, 3, 1).reshape(b, gh, ph, gw, pw, c).permute(0, 1, 3, 2, 4, 5)
        return self.patch_proj(p.reshape(b, gh, gw, ph * pw * c))


def sincos_2d_posemb(h: int, w: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """The MoCo-v3 2D sin-cos table as the official ``build_2d_sincos_posemb``: (1, dim, h, w).
    Channels [sin(x·ω), cos(x·ω), sin(y·ω), cos(y·ω)], ω_i = temperature^(−i/(dim/4)); the flat
    index runs over (x, y) with y fastest and is then read as (h, w) — a transposition that
    only matters for non-square tables (kept for parity)."""
    if dim % 4:
        raise ValueError("2D sin-cos position embedding needs dim divisible by 4")
    gx, gy = torch.meshgrid(torch.arange(w, dtype=torch.float32), torch.arange(h, dtype=torch.float32),
                            indexing="ij")
    q = dim // 4
    omega = 1.0 / temperature ** (torch.arange(q, dtype=torch.float32) / q)
    ox = gx.reshape(-1)[:, None] * omega[None]
    oy = gy.reshape(-1)[:, None] * omega[None]
    table = torch.cat([ox.sin(), ox.cos(), oy.sin(), oy.cos()], dim=1)  # (w·h, dim)
    return table.reshape(h, w, dim).permute(2, 0, 1).unsqueeze(0).contiguous()


class PosEmbAdder(nn.Module):
    """``posembs``: (1, d, H, W) sin-cos (not trained, but stored) or (n_dim, 1, d, N) learned."""

    def __init__(self, dim: int, max_sizes: Sequence[int], kind: str, scaling: str = "absolute"):
        super().__init__()
        self.kind, self.scaling, self.n_dim = kind, scaling, len(max_sizes)
        if kind == "sincos":
            self.posembs = nn.Parameter(sincos_2d_posemb(*max_sizes, dim=dim), requires_grad=False)
        else:
            if len(set(max_sizes)) != 1:
                raise ValueError("learned position embeddings need equal max_sizes")
            self.posembs = nn.Parameter(torch.randn(self.n_dim, 1, dim, max_sizes[0]) * 0.02)

    def table(self, shape: Sequence[int]) -> torch.Tensor:
        """(1, *shape, d) for a grid of ``shape`` (cropped, or interpolated)."""
        if self.kind == "sincos":
            pe = self.posembs
        elif self.n_dim == 1:
            pe = self.posembs[0]
        else:
            ph, pw = self.posembs
            pe = ph.unsqueeze(-1) * pw.unsqueeze(-2) if self.kind == "learnable_prod" else (
                ph.unsqueeze(-1) + pw.unsqueeze(-2))
        if self.scaling == "absolute":
            if any(n > m for n, m in zip(shape, pe.shape[2:])):
                raise ValueError(f"grid {tuple(shape)} exceeds the position table {tuple(pe.shape[2:])}")
            pe = pe[(slice(None), slice(None)) + tuple(slice(None, n) for n in shape)]
        else:
            pe = F.interpolate(pe, list(shape), mode="bilinear", align_corners=True)
        return pe.movedim(1, -1)
