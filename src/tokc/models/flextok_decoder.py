"""FlexTok's rectified-flow decoder (Bachmann et al., ICML 2025), and decoding through
:func:`tokc.kernels.flow_decode`.

Written from the paper and a reading of the official code (apple/ml-flextok, as mirrored in
public forks: ``flextok/model/{layers,trunks,preprocessors,postprocessors}``,
``flow_matching/{pipelines,cfg_utils}.py``, ``flextok_wrapper.py``); no code is copied. The
official decoder is a ``SequentialModuleDictWrapper`` whose ``module_dict`` entries are built by
Hydra from ``_target_`` strings. Here the same entries are *read as data*: each one is matched
by the class name at the end of its ``_target_`` (compared as a string, never imported), its
keyword arguments are read, and tokc's own modules are built with the official attribute names,
so the official state-dict keys (``decoder.module_dict.<name>.…``) load as they are. What the
decoder shares with the register encoder (trunk fields, modules, config pieces) is in
:mod:`tokc.models.flextok_blocks`.

The velocity model, for noised VAE latents x (B, C, H, W) at time t and FSQ codes (B, N, 6):

1. registers: ``LinearLayer`` 6 → d (``dec_from_latents``), plus a learned 1D position
   embedding (``PositionalEmbeddingAdder``, ``learnable_sum``); registers at positions ≥ k are
   replaced by the learned ``dropout_mask_token`` (``MaskedNestedDropout`` at ``eval_keep_k`` =
   k, the number of tokens given); for the unconditional branch of guidance the whole register
   sequence is replaced by the null condition (``LearnedNullCond``: a learned vector, or one
   token with ``replace_with_single_token``; ``ZeroNullCond``: zeros).
2. patches: x channels-last, p×p patches (``PatchEmbedder``, (p_h, p_w, c) order, c fastest) →
   linear to d, plus the 2D sin-cos position embedding (MoCo-v3 layout; a stored parameter).
3. one sequence per image, [patches | registers], full self-attention inside the image
   (``BlockWiseSequencePacker``, mask "full"; the official packing of all images into one
   sequence with a block mask gives the same result as a batch).
4. time: sinusoidal embedding of t (cos | sin, max period 256, frequencies ×1000/max_timestep),
   MLP d → d (``TimestepEmbedder``); it drives adaLN-zero in every block (``FlexBlockAdaLN``:
   SiLU → Linear d → e·6d, chunks gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp,
   scale_mlp; with ``adaLN_expansion`` e = 2 and ``per_subseq_embs`` the first 6d go to the
   patches and the next 6d to the registers).
5. blocks: pre-norm (LayerNorm in fp32, no affine by default), attention with separate
   ``wq``/``wk``/``wv``/``proj`` (no biases by default), per-head QK LayerNorm, scale 8/head_dim
   (μP; = 1/√64 at head_dim 64), SwiGLU MLP (``fc1``, ``fc3`` gate, ``fc2``; hidden ⌊2·⌊d·r⌋/3⌋).
6. head (``ToPatchesLinearHead``) on the patch tokens: norm, adaLN shift/scale from t, linear
   to p·p·C, unpatchify, channels-first: the velocity v(x, t | tokens).

Sampling (``MinRFPipeline``): x(1) ~ N(0, I) of shape (1, C, h, w) per image from one generator,
``steps`` Euler steps x ← x − dt·v at t = 1, 1 − 1/steps, …, 1/steps; guidance when the scale is
not 1 — CFG ``v_u + w(v_c − v_u)``, or APG (``perform_norm_guidance``, Sadat et al. 2024) with
a per-image momentum buffer (β = −0.5), rescaling threshold 2.5 and η = 0.
:meth:`FlexTokDecoder.sample` drives this with :func:`tokc.kernels.flow_decode`; the momentum
buffer (which the kernel does not have) is carried in the velocity callback: the kernel's APG
only needs d = v_c − v_u, so the callback hands it v_u' = v_c − m, m the running average of d.

:class:`FlexTokModel` (built by :func:`tokc.models.flextok.load`) ties the pieces together: FSQ,
this decoder, the register encoder (:mod:`tokc.models.flextok_encoder`) and the VAE
(:mod:`tokc.models.autoencoder_kl`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from tokc.quantizers.fsq import FSQ, LEVELS_64K

from . import flextok_blocks as blocks
from .flextok_blocks import sincos_2d_posemb

__all__ = [
    "DecoderSpec",
    "FlexTokDecoder",
    "FlexTokModel",
    "decoder_spec_from_config",
    "decoder_config_dict",
    "sinusoidal_time_embedding",
    "sincos_2d_posemb",
]

# Official module names (keys of decoder.module_dict), used when a config does not say.
DEFAULT_NAMES = {
    "from_latents": "dec_from_latents",
    "registers_posemb": "dec_registers_posemb_module",
    "nested_dropout": "dec_nested_dropout",
    "null_cond": "dec_latent_dropout",
    "patch_emb": "dec_noise_patch_emb",
    "patches_posemb": "dec_patches_posemb_module",
    "time_embedder": "dec_time_embedder",
    "transformer": "dec_transformer",
    "to_patches": "dec_to_patches",
}


@dataclass(frozen=True)
class DecoderSpec(blocks.TransformerSpec):
    """Structure of the decoder; defaults are the official classes' defaults."""

    adaLN_expansion: int = 1
    per_subseq_embs: bool = False
    code_dim: int = 6
    max_tokens: int = 256
    from_latents_bias: bool = True
    registers_posemb: str | None = "learnable_sum"  # None: no register position embedding
    patches_posemb: str | None = "sincos"
    patches_posemb_scaling: str = "absolute"  # absolute (crop) | interpolate
    patches_posemb_max: tuple[int, int] = (32, 32)
    nested_dropout: bool = True
    null_cond: str = "learned"  # learned | zero
    null_single_token: bool = False
    latent_channels: int = 16
    patch_size: tuple[int, int] = (2, 2)
    freq_size: int = 256
    max_timestep: float = 1000.0  # the class default; FlexTok configs may set 1.0 (t in [0, 1])
    head_norm: bool = True
    head_norm_affine: bool = False
    head_norm_bias: bool = False
    head_adaLN: bool = True
    head_adaLN_bias: bool = True
    head_proj_bias: bool = True
    names: dict = field(default_factory=lambda: dict(DEFAULT_NAMES), compare=False, hash=False)

    def __post_init__(self):
        super().__post_init__()
        if self.null_cond not in ("learned", "zero"):
            raise ValueError(f"null_cond must be learned or zero, got {self.null_cond!r}")
        if self.adaLN_expansion not in (1, 2) or (self.adaLN_expansion == 2) != self.per_subseq_embs:
            raise ValueError("adaLN_expansion must be 1, or 2 with per_subseq_embs (patches | registers)")


# -- config as data -------------------------------------------------------------------------
def decoder_spec_from_config(config: dict, code_dim: int = 6) -> DecoderSpec:
    """A :class:`DecoderSpec` from a FlexTok config (the whole hub config or its ``decoder``
    section). Every ``module_dict`` entry is matched by its class name; an entry of a class
    tokc does not know, or an option it does not implement, raises one CheckpointError."""
    kw: dict = {"code_dim": code_dim}
    names: dict = {}
    problems: list[str] = []
    for name, c, m in blocks.module_entries(config, "decoder", problems):
        if c == "LinearLayer":
            names["from_latents"] = name
            kw["code_dim"] = int(m.get("dim_in", code_dim))
            kw["from_latents_bias"] = bool(m.get("proj_bias", True))
        elif c == "PositionalEmbeddingAdder":
            sizes = [int(v) for v in m.get("max_sizes", [])]
            ptype = str(m.get("posemb_type", "sincos"))
            scaling = str(m.get("posemb_scaling", "absolute"))
            if len(sizes) == 1:
                names["registers_posemb"] = name
                if ptype not in ("learnable_sum", "learnable_prod"):
                    problems.append(f"{name}: 1D posemb_type {ptype!r}")
                kw["registers_posemb"] = ptype
                kw["max_tokens"] = sizes[0]
            elif len(sizes) == 2:
                names["patches_posemb"] = name
                if ptype not in ("sincos", "learnable_sum", "learnable_prod"):
                    problems.append(f"{name}: posemb_type {ptype!r}")
                if scaling not in ("absolute", "interpolate"):
                    problems.append(f"{name}: posemb_scaling {scaling!r}")
                kw.update(patches_posemb=ptype, patches_posemb_scaling=scaling,
                          patches_posemb_max=tuple(sizes))
            else:
                problems.append(f"{name}: max_sizes {sizes!r}")
        elif c == "MaskedNestedDropout":
            names["nested_dropout"] = name
        elif c in ("LearnedNullCond", "ZeroNullCond"):
            names["null_cond"] = name
            kw["null_cond"] = "learned" if c == "LearnedNullCond" else "zero"
            kw["null_single_token"] = bool(m.get("replace_with_single_token", False))
        elif c == "PatchEmbedder":
            names["patch_emb"] = name
            kw.update(blocks.patch_embedder_kwargs(name, m, problems))
        elif c == "BlockWiseSequencePacker":
            if str(m.get("mask_mode", "full")) != "full":
                problems.append(f"{name}: mask_mode {m.get('mask_mode')!r} (decoder needs 'full')")
            kw["per_subseq_embs"] = bool(m.get("per_subseq_embs", False))
        elif c == "TimestepEmbedder":
            names["time_embedder"] = name
            kw["freq_size"] = int(m.get("frequency_embedding_size", 256))
            kw["max_timestep"] = float(m.get("max_timestep", 1000.0))
            if m.get("temb_as_tokens"):
                problems.append(f"{name}: temb_as_tokens is not implemented")
        elif c == "FlexTransformer":
            names["transformer"] = name
            kw.update(blocks.transformer_kwargs(m, extra=[("adaLN_expansion", int)]))
            if m.get("adaLN_emb_read_key") is None:
                problems.append(f"{name}: a decoder trunk without adaLN is not implemented")
        elif c == "ToPatchesLinearHead":
            names["to_patches"] = name
            kw.update(blocks.head_kwargs(name, m, problems))
            kw["head_adaLN"] = m.get("adaLN_emb_read_key") is not None
            kw["head_adaLN_bias"] = bool(m.get("adaLN_bias", True))
        elif c in ("PerSampleOp", "SequenceUnpacker", "DictKeyFilter"):
            pass  # reshaping / bookkeeping only, no parameters
        else:
            problems.append(f"{name}: module {c or '(no _target_)'} is not implemented")
    for part in ("from_latents", "patch_emb", "time_embedder", "transformer", "to_patches"):
        if part not in names:
            problems.append(f"no {part} module")
    if "nested_dropout" not in names:
        kw["nested_dropout"] = False
    if "registers_posemb" not in names:
        kw["registers_posemb"] = None
    if "patches_posemb" not in names:
        kw["patches_posemb"] = None
    return blocks.build_spec(DecoderSpec, "decoder", kw, names, DEFAULT_NAMES, problems)


def decoder_config_dict(spec: DecoderSpec, target_prefix: str = "flextok.model") -> dict:
    """The ``decoder`` section of a hub config describing ``spec``, in the official layout
    (module names, ``_target_`` strings, keyword names): what :func:`decoder_spec_from_config`
    reads back. Data keys (``read_key`` …) follow the official naming but are not used by tokc."""
    t = lambda mod: f"{target_prefix}.{mod}"  # noqa: E731
    n = spec.names
    md: dict = {
        n["from_latents"]: {"_target_": t("preprocessors.linear.LinearLayer"), "read_key": "dec_quants",
                            "write_key": "dec_quants", "dim_in": spec.code_dim, "dim": spec.dim,
                            "proj_bias": spec.from_latents_bias},
    }
    if spec.registers_posemb:
        md[n["registers_posemb"]] = {"_target_": t("utils.posembs.PositionalEmbeddingAdder"),
                                     "read_key": "dec_quants", "write_key": "dec_quants", "dim": spec.dim,
                                     "max_sizes": [spec.max_tokens], "posemb_type": spec.registers_posemb,
                                     "posemb_scaling": "absolute"}
    if spec.nested_dropout:
        md[n["nested_dropout"]] = {"_target_": t("preprocessors.token_dropout.MaskedNestedDropout"),
                                   "read_write_key": "dec_quants", "dim": spec.dim,
                                   "eval_keep_k_read_key": "eval_keep_k"}
    nc = "LearnedNullCond" if spec.null_cond == "learned" else "ZeroNullCond"
    md[n["null_cond"]] = {"_target_": t(f"preprocessors.nullcond.{nc}"), "read_write_key": "dec_quants",
                          "eval_drop_flag_read_key": "eval_dropout_mask"}
    if spec.null_cond == "learned":
        md[n["null_cond"]].update(dim=spec.dim, replace_with_single_token=spec.null_single_token)
    md["dec_noise_channels_to_last"] = blocks.per_sample_op_config(t, "noised_images", "noised_images_cl",
                                                                   "channels_first_to_last")
    md[n["patch_emb"]] = blocks.patch_embedder_config(t, spec, "noised_images_cl", "dec")
    if spec.patches_posemb:
        md[n["patches_posemb"]] = {"_target_": t("utils.posembs.PositionalEmbeddingAdder"),
                                   "read_key": "dec_patches", "write_key": "dec_patches", "dim": spec.dim,
                                   "max_sizes": list(spec.patches_posemb_max), "posemb_type": spec.patches_posemb,
                                   "posemb_scaling": spec.patches_posemb_scaling}
    md["dec_seq_packer"] = blocks.seq_packer_config(t, "dec", ["dec_patches", "dec_quants"], "full",
                                                    emb_packing_fn_write_key="emb_packing_fn",
                                                    per_subseq_embs=spec.per_subseq_embs)
    md[n["time_embedder"]] = {"_target_": t("preprocessors.time_embedding.TimestepEmbedder"),
                              "timesteps_read_key": "timesteps", "time_embedding_write_key": "dec_temb",
                              "dim": spec.dim, "frequency_embedding_size": spec.freq_size,
                              "max_timestep": spec.max_timestep}
    md[n["transformer"]] = blocks.transformer_config(t, spec, "dec", adaLN_emb_read_key="dec_temb",
                                                     adaLN_packing_fn_read_key="emb_packing_fn",
                                                     adaLN_expansion=spec.adaLN_expansion)
    md["dec_unpacker"] = blocks.unpacker_config(t, "dec", ["dec_patches", "dec_quants"])
    md[n["to_patches"]] = {"_target_": t("postprocessors.heads.ToPatchesLinearHead"), "read_key": "dec_patches",
                           "write_key": "vae_latents_reconst", "dim": spec.dim,
                           "channels_out": spec.latent_channels, "patch_sizes": list(spec.patch_size),
                           "use_mup_readout": False,
                           "norm_layer": blocks.norm_config(t, spec.head_norm_affine, spec.head_norm_bias)
                           if spec.head_norm else None,
                           "adaLN_emb_read_key": "dec_temb" if spec.head_adaLN else None,
                           "adaLN_bias": spec.head_adaLN_bias, "proj_bias": spec.head_proj_bias}
    md["dec_channels_to_first"] = blocks.per_sample_op_config(t, "vae_latents_reconst", "vae_latents_reconst",
                                                              "channels_last_to_first")
    return {"_target_": t("utils.wrappers.SequentialModuleDictWrapper"), "module_dict": md}


# -- building blocks (official attribute names) ----------------------------------------------
def _modulate(x, shift, scale):
    return x * (1.0 + scale) + shift


class _BlockAdaLN(blocks.Block):
    """Pre-norm transformer block with adaLN-zero from the time embedding (``FlexBlockAdaLN``)."""

    def __init__(self, s: DecoderSpec):
        super().__init__(s)
        self.expansion = s.adaLN_expansion
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(s.dim, s.adaLN_expansion * 6 * s.dim))

    def forward(self, x: torch.Tensor, temb: torch.Tensor, n_patches: int) -> torch.Tensor:
        mod = self.adaLN_modulation(temb)  # (B, e·6d)
        if self.expansion == 1:
            mod = mod.unsqueeze(1)  # same modulation for every token of an image
        else:  # first 6d for the patches, next 6d for the registers
            b, n = x.shape[:2]
            parts = mod.reshape(b, 2, -1)
            mod = torch.cat([parts[:, :1].expand(b, n_patches, -1),
                             parts[:, 1:].expand(b, n - n_patches, -1)], dim=1)
        g_msa, g_mlp, sh_msa, sc_msa, sh_mlp, sc_mlp = mod.chunk(6, dim=-1)
        x = x + g_msa * self.attn(_modulate(self.norm1(x), sh_msa, sc_msa))
        return x + g_mlp * self.mlp(_modulate(self.norm2(x), sh_mlp, sc_mlp))


class _LinearLayer(nn.Module):
    def __init__(self, dim_in: int, dim: int, bias: bool):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim, bias=bias)

    def forward(self, x):
        return self.proj(x)


class _MaskToken(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dropout_mask_token = nn.Parameter(torch.randn(dim) * 0.02)


class _LearnedNull(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.nullcond = nn.Parameter(torch.randn(dim) * 0.02)


def sinusoidal_time_embedding(t: torch.Tensor, dim: int, max_timestep: float,
                              max_period: float = 256.0) -> torch.Tensor:
    """[cos(t·f), sin(t·f)], f_i = (1000 / max_timestep)·exp(−ln(max_period)·i/(dim/2)) (the
    official ``TimestepEmbedder``, which is called with its default max_period = 256)."""
    half = dim // 2
    freqs = (1000.0 / max_timestep) * torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class _TimestepEmbedder(nn.Module):
    def __init__(self, s: DecoderSpec):
        super().__init__()
        self.freq_size, self.max_timestep = s.freq_size, s.max_timestep
        self.mlp = nn.Sequential(nn.Linear(s.freq_size, s.dim), nn.SiLU(), nn.Linear(s.dim, s.dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling() and bool((t > self.max_timestep).any()):
            raise ValueError(f"timesteps must be <= {self.max_timestep}")
        return self.mlp(sinusoidal_time_embedding(t, self.freq_size, self.max_timestep))


class _ToPatchesHead(nn.Module):
    def __init__(self, s: DecoderSpec):
        super().__init__()
        ph, pw = s.patch_size
        self.norm = blocks.layer_norm(s.dim, s.head_norm_affine, s.head_norm_bias) if s.head_norm else nn.Identity()
        if s.head_adaLN:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(s.dim, 2 * s.dim, bias=s.head_adaLN_bias))
        self.proj = nn.Linear(s.dim, s.latent_channels * ph * pw, bias=s.head_proj_bias)
        self.has_adaLN = s.head_adaLN

    def forward(self, x, temb):
        x = self.norm(x)
        if self.has_adaLN:
            shift, scale = self.adaLN_modulation(temb).unsqueeze(1).chunk(2, dim=-1)
            x = _modulate(x, shift, scale)
        return self.proj(x)


# -- the decoder ----------------------------------------------------------------------------
class FlexTokDecoder(nn.Module):
    """The rectified-flow velocity model; ``state_dict()`` keys are the official ones under
    ``decoder.`` (``module_dict.dec_transformer.blocks.0.attn.wq.weight`` …)."""

    def __init__(self, spec: DecoderSpec):
        super().__init__()
        s = self.spec = spec
        n = spec.names
        md: dict[str, nn.Module] = {n["from_latents"]: _LinearLayer(s.code_dim, s.dim, s.from_latents_bias)}
        if s.registers_posemb:
            md[n["registers_posemb"]] = blocks.PosEmbAdder(s.dim, [s.max_tokens], s.registers_posemb)
        if s.nested_dropout:
            md[n["nested_dropout"]] = _MaskToken(s.dim)
        if s.null_cond == "learned":
            md[n["null_cond"]] = _LearnedNull(s.dim)
        md[n["patch_emb"]] = blocks.PatchEmbedder(s)
        if s.patches_posemb:
            md[n["patches_posemb"]] = blocks.PosEmbAdder(s.dim, s.patches_posemb_max, s.patches_posemb,
                                                         s.patches_posemb_scaling)
        md[n["time_embedder"]] = _TimestepEmbedder(s)
        md[n["transformer"]] = blocks.Transformer(s, _BlockAdaLN)
        md[n["to_patches"]] = _ToPatchesHead(s)
        self.module_dict = nn.ModuleDict(md)

    def _m(self, part: str) -> nn.Module:
        return self.module_dict[self.spec.names[part]]

    def registers(self, codes: torch.Tensor, keep_k: torch.Tensor | None, uncond: bool) -> torch.Tensor:
        """(B, N, 6) FSQ codes → (B, N', d) register tokens (N' = 1 for a single null token)."""
        s = self.spec
        r = self._m("from_latents")(codes)
        if s.registers_posemb:
            r = r + self._m("registers_posemb").table([r.shape[1]])
        if s.nested_dropout and keep_k is not None:
            keep = torch.arange(r.shape[1], device=r.device)[None, :] < keep_k.to(r.device)[:, None]
            r = torch.where(keep[..., None], r, self._m("nested_dropout").dropout_mask_token.to(r.dtype))
        if uncond:
            if s.null_cond == "zero":
                r = torch.zeros_like(r)
            else:
                null = self._m("null_cond").nullcond.to(r.dtype)
                r = null.expand(r.shape[0], 1 if s.null_single_token else r.shape[1], -1)
        return r

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, codes: torch.Tensor,
                keep_k: torch.Tensor | None = None, uncond: bool = False) -> torch.Tensor:
        """Velocity v(x, t | codes): x (B, C, H, W) noised latents, t (B,) or a float in
        [0, max_timestep], codes (B, N, 6), keep_k (B,) tokens kept per image (None: all);
        ``uncond`` gives the unconditional branch (null condition)."""
        s = self.spec
        b, c, h, w = x.shape
        ph, pw = s.patch_size
        p = self._m("patch_emb")(x)  # (B, gh, gw, d)
        gh, gw = p.shape[1:3]
        if not torch.is_tensor(t):
            t = torch.full((b,), float(t), device=x.device)
        if s.patches_posemb:
            p = p + self._m("patches_posemb").table([gh, gw]).to(p.dtype)
        p = p.reshape(b, gh * gw, s.dim)
        r = self.registers(codes.to(p.dtype), keep_k, uncond)
        temb = self._m("time_embedder")(t.to(x.device))
        seq = self._m("transformer")(torch.cat([p, r], dim=1), temb, gh * gw)
        out = self._m("to_patches")(seq[:, : gh * gw], temb)  # (B, gh·gw, ph·pw·C)
        out = out.reshape(b, gh, gw, ph, pw, c).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(b, c, h, w)

    @torch.no_grad()
    def sample(self, codes: torch.Tensor, keep_k: torch.Tensor | None = None, *, steps: int = 25,
               guidance: float = 1.0, apg: bool = False, apg_momentum: float = -0.5,
               apg_eta: float = 0.0, apg_norm_threshold: float = 2.5,
               latent_size: int | tuple[int, int] = 32, noise: torch.Tensor | None = None,
               seed: int | None = None, impl: str | None = None) -> torch.Tensor:
        """Latents (B, C, h, w) for register codes (B, N, 6), by :func:`tokc.kernels.flow_decode`
        (Euler, t from 1 to 0). ``guidance`` ≠ 1 adds the unconditional branch: CFG, or APG with
        ``apg=True`` (official settings: momentum −0.5, η 0, threshold 2.5). The noise is
        ``noise`` if given, else one (1, C, h, w) draw per image from a generator seeded with
        ``seed`` (the official pipeline's order)."""
        from tokc.kernels import flow_decode

        s = self.spec
        b = codes.shape[0]
        device = next(self.parameters()).device
        if noise is None:
            hw = (latent_size, latent_size) if isinstance(latent_size, int) else tuple(latent_size)
            gen = torch.Generator(device=device)
            gen.manual_seed(0 if seed is None else int(seed))
            noise = torch.cat([torch.randn((1, s.latent_channels, *hw), generator=gen, device=device)
                               for _ in range(b)])
        elif noise.shape[0] != b:
            raise ValueError(f"noise has batch {noise.shape[0]}, codes have {b}")
        codes = codes.to(device)
        guided = guidance != 1.0
        state = {"m": None}

        def velocity(x, t):
            tt = torch.full((b,), t, device=device)
            v_c = self(x, tt, codes, keep_k)
            if not guided:
                return v_c
            v_u = self(x, tt, codes, keep_k, uncond=True)
            if apg and apg_momentum != 0.0:
                d = v_c - v_u
                state["m"] = d if state["m"] is None else d + apg_momentum * state["m"]
                v_u = v_c - state["m"]  # the kernel's APG then sees d = the running average
            return v_c, v_u

        return flow_decode(velocity, noise.to(device), steps, guidance=guidance, method="euler",
                           mode="apg" if apg else "cfg", apg_eta=apg_eta,
                           apg_norm_threshold=apg_norm_threshold if apg else 0.0,
                           t_start=1.0, t_end=0.0, impl=impl)


# -- the tokenizer as far as tokc runs it ------------------------------------------------------
class FlexTokModel(nn.Module):
    """FlexTok: images → VAE latents → register encoder → FSQ indices, and indices → FSQ codes →
    flow decoder → VAE latents → pixels.

    ``state_dict()`` keys are the official full-model ones, restricted to the decoder
    (``decoder.module_dict.…``) and, when attached, the VAE's decoder half
    (``vae.vae.decoder.…``, ``vae.vae.post_quant_conv.…``) and, when loaded, the encoder
    (``encoder.module_dict.…``, :mod:`tokc.models.flextok_encoder`) and the VAE's encoder half.
    :meth:`decode` returns VAE latents (as the official flow decoder produces them, before the
    VAE divides by its scaling factor); :meth:`decode_images` runs the VAE decoder on them;
    :meth:`encode` / :meth:`encode_latents` give token indices.
    """

    def __init__(self, spec: DecoderSpec, levels: Sequence[int] = LEVELS_64K, vae_spec=None,
                 encoder_spec=None, vae_encoder: bool = False, sample_posterior: bool = True):
        super().__init__()
        self.fsq = FSQ(levels)
        if self.fsq.dim != spec.code_dim:
            raise ValueError(f"FSQ has {self.fsq.dim} dims, the decoder expects {spec.code_dim}")
        self.decoder = FlexTokDecoder(spec)
        self.encoder = None
        self.encoder_missing = "no encoder was loaded"
        if encoder_spec is not None:
            from .flextok_encoder import FlexTokEncoder

            if encoder_spec.code_dim != self.fsq.dim:
                raise ValueError(f"encoder head has {encoder_spec.code_dim} dims, FSQ {self.fsq.dim}")
            self.encoder = FlexTokEncoder(encoder_spec)
        self.vae = None
        self.sample_posterior = sample_posterior
        if vae_spec is not None:
            self.attach_vae(vae_spec, encoder=vae_encoder)

    def attach_vae(self, vae_spec, encoder: bool = False) -> None:
        """Add the VAE (:mod:`tokc.models.autoencoder_kl`; the decoder half, or with
        ``encoder=True`` the whole AutoencoderKL) under the official names
        ``vae.vae.{post_quant_conv,decoder,quant_conv,encoder}.…`` (FlexTok's
        ``StableDiffusionVAE`` keeps diffusers' ``AutoencoderKL`` as its ``vae`` attribute)."""
        from .autoencoder_kl import AutoencoderKL, AutoencoderKLDecoder

        if vae_spec.latent_channels != self.decoder.spec.latent_channels:
            raise ValueError(f"VAE has {vae_spec.latent_channels} latent channels, the decoder "
                             f"{self.decoder.spec.latent_channels}")
        self.vae = nn.Module()
        self.vae.vae = AutoencoderKL(vae_spec) if encoder else AutoencoderKLDecoder(vae_spec)

    @property
    def max_tokens(self) -> int:
        return self.decoder.spec.max_tokens

    @torch.no_grad()
    def encode_latents(self, latents: torch.Tensor, num_tokens: int | None = None) -> torch.Tensor:
        """Token indices (B, num_tokens) for scaled VAE latents (B, C, h, w): the register
        encoder, then FSQ. Any prefix of the result is a valid (coarser) description."""
        if self.encoder is None:
            raise NotImplementedError(f"FlexTok encoder not available: {self.encoder_missing}")
        z = self.encoder(latents)
        _, indices = self.fsq.quantize(z.float())
        return indices[:, :num_tokens] if num_tokens is not None else indices

    @torch.no_grad()
    def encode(self, images: torch.Tensor, num_tokens: int | None = None, seed: int | None = 0,
               sample_posterior: bool | None = None) -> torch.Tensor:
        """Token indices (B, N) for images (B, 3, H, W) in [−1, 1]: VAE encoder (posterior
        sample when the config's ``sample_posterior`` is true, as the official default, from a
        generator seeded with ``seed``; the mean otherwise), then :meth:`encode_latents`."""
        from .autoencoder_kl import AutoencoderKL

        if self.vae is None or not isinstance(self.vae.vae, AutoencoderKL):
            raise NotImplementedError("FlexTok encode needs the VAE encoder (vae.vae.encoder.* tensors, "
                                      "or tokc.models.flextok.load_vae(model, folder, encoder=True)); "
                                      "encode_latents takes VAE latents directly")
        sample = self.sample_posterior if sample_posterior is None else sample_posterior
        gen = None
        if sample:
            gen = torch.Generator(device=images.device)
            gen.manual_seed(0 if seed is None else int(seed))
        latents = self.vae.vae.encode(images, sample=sample, generator=gen)
        return self.encode_latents(latents, num_tokens)

    def tokens_to_codes(self, token_indices) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes (B, N, 6), keep_k (B,)) for a (B, k) tensor or a list of (k_i,) / (1, k_i)
        index tensors: each sequence padded with index 0 to N = max_tokens, as the official
        ``detokenize`` does (the padding is then replaced by the nested-dropout mask token)."""
        seqs = list(token_indices) if not torch.is_tensor(token_indices) else list(
            token_indices if token_indices.dim() == 2 else token_indices[None])
        if not seqs:
            raise ValueError("no token sequences given")
        device = self.decoder.module_dict[self.decoder.spec.names["from_latents"]].proj.weight.device
        rows, lens = [], []
        for sq in seqs:
            sq = torch.as_tensor(sq).reshape(-1)
            if not 1 <= sq.numel() <= self.max_tokens:
                raise ValueError(f"each token sequence needs 1..{self.max_tokens} tokens, got {sq.numel()}")
            if sq.dtype.is_floating_point:
                raise ValueError("token indices must be integers")
            rows.append(torch.cat([sq.long().cpu(), sq.new_zeros(self.max_tokens - sq.numel()).long().cpu()]))
            lens.append(sq.numel())
        codes = self.fsq.indices_to_codes(torch.stack(rows))
        return codes.to(device), torch.tensor(lens, device=device)

    @torch.no_grad()
    def decode(self, token_indices, steps: int = 25, guidance: float = 1.0, seed: int | None = 0, *,
               apg: bool = False, apg_momentum: float = -0.5, apg_eta: float = 0.0,
               apg_norm_threshold: float = 2.5, latent_size: int | tuple[int, int] = 32,
               noise: torch.Tensor | None = None, impl: str | None = None) -> torch.Tensor:
        """VAE latents (B, C, h, w) for token indices (any prefix length 1..N per image), by
        :func:`tokc.kernels.flow_decode` (see :meth:`FlexTokDecoder.sample`). Official
        defaults: 25 steps, guidance 1 (none); the authors' demo uses guidance 7.5 with
        ``apg=True``. ``latent_size`` is the latent grid (32 for 256² images with the f8 VAE)."""
        codes, keep_k = self.tokens_to_codes(token_indices)
        return self.decoder.sample(codes, keep_k, steps=steps, guidance=guidance, apg=apg,
                                   apg_momentum=apg_momentum, apg_eta=apg_eta,
                                   apg_norm_threshold=apg_norm_threshold, latent_size=latent_size,
                                   noise=noise, seed=seed, impl=impl)

    @torch.no_grad()
    def decode_images(self, token_indices, steps: int = 25, guidance: float = 1.0, seed: int | None = 0,
                      *, scaling_factor: float | None = None, **kw) -> torch.Tensor:
        """Images (B, 3, 8h, 8w), roughly in [−1, 1]: :meth:`decode`, then the VAE decoder
        (latents / scaling_factor → post_quant_conv → decoder). Needs an attached VAE."""
        if self.vae is None:
            raise RuntimeError("no VAE attached: the checkpoint had no vae.vae.decoder.* tensors; "
                               "load one with tokc.models.flextok.load_vae(model, folder)")
        latents = self.decode(token_indices, steps, guidance, seed, **kw)
        return self.vae.vae.decode(latents, scaling_factor=scaling_factor)
