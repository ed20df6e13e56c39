"""FlexTok's register encoder (Bachmann et al., ICML 2025): VAE latents → 1D register tokens.

Written from the paper and a reading of the official modules (``PatchEmbedder``,
``PositionalEmbeddingAdder``, ``Registers1D``, ``BlockWiseSequencePacker`` with mask mode
"causal_last", ``FlexTransformer`` of ``FlexBlock``, ``LinearHead``); no code is copied. As for
the decoder (:mod:`tokc.models.flextok_decoder`), the structure is read from the config's
``encoder.module_dict`` as data — each entry matched by the class name of its ``_target_``, never
imported — and the parameters carry the official names (``encoder.module_dict.<name>.…``).
What it shares with the decoder (trunk fields, modules, config pieces) is in
:mod:`tokc.models.flextok_blocks`.

For scaled VAE latents (B, C, H, W):

1. patches: channels last, p×p patches ((p_h, p_w, c) order) → linear to d, plus the 2D sin-cos
   position table (cropped);
2. registers: the first ``n_eval`` (= ``n_max``, 256) learned register tokens;
3. one sequence [patches | registers] per image; "causal_last" attention: a patch attends to
   every patch (not to the registers), register j to every patch and to registers 0..j;
4. ``FlexBlock``s (pre-norm, fp32 LayerNorm, QK-norm, scale 8/head_dim, SwiGLU; no adaLN);
5. ``LinearHead`` on the registers: LayerNorm, linear d → 6, then FSQ → indices.

The causal mask among registers is what makes every prefix of the tokens a description of the
whole image (with nested dropout in training).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from . import flextok_blocks as blocks

__all__ = ["EncoderSpec", "FlexTokEncoder", "encoder_spec_from_config", "encoder_config_dict"]

DEFAULT_NAMES = {
    "patch_emb": "enc_patch_emb",
    "posemb": "enc_posemb_module",
    "registers": "enc_register_module",
    "transformer": "enc_transformer",
    "to_latents": "enc_to_latents",
}


@dataclass(frozen=True)
class EncoderSpec(blocks.TransformerSpec):
    """Structure of the register encoder; defaults are the official classes' defaults."""

    latent_channels: int = 16
    patch_size: tuple[int, int] = (2, 2)
    posemb: str | None = "sincos"
    posemb_scaling: str = "absolute"
    posemb_max: tuple[int, int] = (32, 32)
    max_tokens: int = 256
    eval_tokens: int | None = None  # Registers1D.n_eval (None: max_tokens)
    code_dim: int = 6
    head_norm: bool = True
    head_norm_affine: bool = False
    head_norm_bias: bool = False
    head_proj_bias: bool = True
    names: dict = field(default_factory=lambda: dict(DEFAULT_NAMES), compare=False, hash=False)

    @property
    def num_tokens(self) -> int:
        return self.eval_tokens or self.max_tokens


def encoder_spec_from_config(config: dict, code_dim: int = 6) -> EncoderSpec:
    """An :class:`EncoderSpec` from a FlexTok config (whole hub config or its ``encoder``
    section); unknown classes or options tokc does not implement raise one CheckpointError."""
    kw: dict = {"code_dim": code_dim}
    names: dict = {}
    problems: list[str] = []
    for name, c, m in blocks.module_entries(config, "encoder", problems):
        if c == "PatchEmbedder":
            names["patch_emb"] = name
            kw.update(blocks.patch_embedder_kwargs(name, m, problems))
        elif c == "PositionalEmbeddingAdder":
            sizes = [int(v) for v in m.get("max_sizes", [])]
            ptype, scaling = str(m.get("posemb_type", "sincos")), str(m.get("posemb_scaling", "absolute"))
            if len(sizes) != 2 or ptype not in ("sincos", "learnable_sum", "learnable_prod") or scaling not in (
                    "absolute", "interpolate"):
                problems.append(f"{name}: position embedding {ptype!r} {sizes} {scaling!r}")
            else:
                names["posemb"] = name
                kw.update(posemb=ptype, posemb_scaling=scaling, posemb_max=tuple(sizes))
        elif c == "Registers1D":
            names["registers"] = name
            kw["max_tokens"] = int(m["n_max"])
            if m.get("n_eval") is not None:
                kw["eval_tokens"] = int(m["n_eval"])
            if str(m.get("ordering_mode", "nested")) != "nested":
                problems.append(f"{name}: ordering_mode {m.get('ordering_mode')!r}")
        elif c == "BlockWiseSequencePacker":
            if str(m.get("mask_mode", "causal_last")) != "causal_last":
                problems.append(f"{name}: mask_mode {m.get('mask_mode')!r} (tokc implements 'causal_last')")
        elif c == "FlexTransformer":
            names["transformer"] = name
            kw.update(blocks.transformer_kwargs(m))
            if m.get("adaLN_emb_read_key") is not None:
                problems.append(f"{name}: an encoder trunk with adaLN is not implemented")
        elif c == "LinearHead":
            names["to_latents"] = name
            kw.update(blocks.head_kwargs(name, m, problems))
            if m.get("adaLN_emb_read_key") is not None:
                problems.append(f"{name}: an adaLN head is not implemented")
            if m.get("dim_out") is not None and int(m["dim_out"]) != code_dim:
                problems.append(f"{name}: dim_out {m['dim_out']} but FSQ has {code_dim} dims")
        elif c in ("PerSampleOp", "SequenceUnpacker", "DictKeyFilter"):
            pass
        else:
            problems.append(f"{name}: module {c or '(no _target_)'} is not implemented")
    for part in ("patch_emb", "registers", "transformer", "to_latents"):
        if part not in names:
            problems.append(f"no {part} module")
    if "posemb" not in names:
        kw["posemb"] = None
    return blocks.build_spec(EncoderSpec, "encoder", kw, names, DEFAULT_NAMES, problems)


def encoder_config_dict(spec: EncoderSpec, target_prefix: str = "flextok.model") -> dict:
    """The ``encoder`` section of a hub config describing ``spec`` in the official layout (what
    :func:`encoder_spec_from_config` reads back; data keys are not used by tokc)."""
    t = lambda mod: f"{target_prefix}.{mod}"  # noqa: E731
    n = spec.names
    md: dict = {
        "enc_channels_to_last": blocks.per_sample_op_config(t, "vae_latents", "vae_latents_cl",
                                                            "channels_first_to_last"),
        n["patch_emb"]: blocks.patch_embedder_config(t, spec, "vae_latents_cl", "enc"),
    }
    if spec.posemb:
        md[n["posemb"]] = {"_target_": t("utils.posembs.PositionalEmbeddingAdder"), "read_key": "enc_patches",
                           "write_key": "enc_patches", "dim": spec.dim, "max_sizes": list(spec.posemb_max),
                           "posemb_type": spec.posemb, "posemb_scaling": spec.posemb_scaling}
    md[n["registers"]] = {"_target_": t("preprocessors.registers.Registers1D"),
                          "input_tensor_list_read_key": "enc_patches",
                          "register_sizes_read_write_key": "register_sizes", "registers_write_key": "enc_registers",
                          "dim": spec.dim, "n_min": 1, "n_max": spec.max_tokens, "n_eval": spec.eval_tokens}
    md["enc_seq_packer"] = blocks.seq_packer_config(t, "enc", ["enc_patches", "enc_registers"], "causal_last")
    md[n["transformer"]] = blocks.transformer_config(t, spec, "enc")
    md["enc_unpacker"] = blocks.unpacker_config(t, "enc", ["enc_patches", "enc_registers"])
    md[n["to_latents"]] = {"_target_": t("postprocessors.heads.LinearHead"), "read_key": "enc_registers",
                           "write_key": "enc_registers", "dim": spec.dim, "dim_out": spec.code_dim,
                           "use_mup_readout": False,
                           "norm_layer": blocks.norm_config(t, spec.head_norm_affine, spec.head_norm_bias)
                           if spec.head_norm else None,
                           "proj_bias": spec.head_proj_bias}
    return {"_target_": t("utils.wrappers.SequentialModuleDictWrapper"), "module_dict": md}


class _Registers(nn.Module):
    def __init__(self, n: int, dim: int):
        super().__init__()
        self.registers = nn.Parameter(torch.randn(n, dim) * 0.02)


class _LinearHead(nn.Module):
    def __init__(self, s: EncoderSpec):
        super().__init__()
        self.norm = blocks.layer_norm(s.dim, s.head_norm_affine, s.head_norm_bias) if s.head_norm else nn.Identity()
        self.proj = nn.Linear(s.dim, s.code_dim, bias=s.head_proj_bias)

    def forward(self, x):
        return self.proj(self.norm(x))


def causal_last_mask(n_patches: int, n_registers: int, device=None) -> torch.Tensor:
    """(L, L) bool, True where query i may attend to key j: patches see all patches; register r
    sees all patches and registers ≤ r (the official "causal_last" prefix-LM mask)."""
    n = n_patches + n_registers
    q = torch.arange(n, device=device)[:, None]
    k = torch.arange(n, device=device)[None, :]
    return (k < n_patches) | (k <= q)


class FlexTokEncoder(nn.Module):
    """VAE latents → register latents (B, N, 6) before FSQ; official key names under
    ``encoder.``."""

    def __init__(self, spec: EncoderSpec):
        super().__init__()
        s = self.spec = spec
        n = spec.names
        md: dict[str, nn.Module] = {n["patch_emb"]: blocks.PatchEmbedder(s)}
        if s.posemb:
            md[n["posemb"]] = blocks.PosEmbAdder(s.dim, s.posemb_max, s.posemb, s.posemb_scaling)
        md[n["registers"]] = _Registers(s.max_tokens, s.dim)
        md[n["transformer"]] = blocks.Transformer(s)
        md[n["to_latents"]] = _LinearHead(s)
        self.module_dict = nn.ModuleDict(md)

    def _m(self, part: str) -> nn.Module:
        return self.module_dict[self.spec.names[part]]

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        s = self.spec
        p = self._m("patch_emb")(latents)  # (B, gh, gw, d)
        b, gh, gw = p.shape[:3]
        if s.posemb:
            p = p + self._m("posemb").table([gh, gw]).to(p.dtype)
        p = p.reshape(b, gh * gw, s.dim)
        r = self._m("registers").registers[: s.num_tokens].to(p.dtype).expand(b, -1, -1)
        mask = causal_last_mask(gh * gw, r.shape[1], device=p.device)
        seq = self._m("transformer")(torch.cat([p, r], dim=1), mask)
        return self._m("to_latents")(seq[:, gh * gw:])
