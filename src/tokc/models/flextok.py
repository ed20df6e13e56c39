"""FlexTok (Bachmann et al., ICML 2025, arXiv:2502.13967): configuration, quantizer, decode path.

FlexTok resamples an image into a 1D sequence of up to 256 discrete register tokens, ordered
coarse-to-fine by nested dropout, so any prefix of length 1..256 decodes to an image. Licences
(see docs/TOKENIZERS.md): the official code (apple/ml-flextok) is under Apple's *Sample Code
License* (non-commercial use) and the weights (EPFL-VILAB/flextok_*) under the *Apple Machine
Learning Research Model License* (research purposes only, no commercial use). Nothing from
either is shipped here; this module is written from the paper and a reading of the code.

What is here:

- **Configuration as data.** Official checkpoints keep their Hydra config in the safetensors
  ``__metadata__`` (each value the ``str()`` of a dict) or in a hub ``config.json``; the
  official loader passes it to ``hydra.utils.instantiate``, which imports and calls every
  ``_target_`` class path (it checks an allow-list first). :func:`read_config` parses the same
  text into plain literals (:mod:`tokc.models.metadata`) and reads sizes out of it; a
  ``_target_`` is only ever a string that is compared, never imported.
- **FSQ** (:class:`tokc.quantizers.fsq.FSQ`): levels (8, 8, 8, 5, 5, 5) → 64 000 codes of 6
  dims, with ``codes_to_indices`` / ``indices_to_codes``.
- **The rest of the tokenizer**, each structure built from the config's ``module_dict``
  sections read as data, official key names: the rectified-flow decoder and decoding through
  :func:`tokc.kernels.flow_decode` with CFG or APG (the official APG momentum carried in the
  velocity callback) in :mod:`tokc.models.flextok_decoder`; the register encoder in
  :mod:`tokc.models.flextok_encoder`; the SD-style VAE (diffusers' AutoencoderKL layout) in
  :mod:`tokc.models.autoencoder_kl`. :func:`load` returns a
  :class:`~tokc.models.flextok_decoder.FlexTokModel`: ``decode(tokens, steps, guidance, seed)``
  gives VAE latents, ``decode_images`` pixels, ``encode(images)`` token indices.

Not verified (see docs/TOKENIZERS.md): no parity fixture from the official code exists, and the
released config.json was not available to read; the wiring follows the official module classes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tokc.quantizers.fsq import FSQ, LEVELS_64K

from .checkpoints import CheckpointError, resolve
from .checkpoints import read_config as _read_json
from .metadata import parse_metadata, read_safetensors_header

__all__ = [
    "FLEXTOK_LEVELS",
    "FlexTokConfig",
    "FSQ",
    "config_from_dict",
    "find_targets",
    "read_config",
    "load",
    "load_vae",
]

FLEXTOK_LEVELS = LEVELS_64K


@dataclass(frozen=True)
class FlexTokConfig:
    """Sizes read from a FlexTok config; ``None`` where the config does not say."""

    levels: tuple[int, ...] = FLEXTOK_LEVELS
    max_tokens: int | None = None  # enc_register_module.n_max
    min_tokens: int | None = None
    encoder_dim: int | None = None
    encoder_depth: int | None = None
    decoder_dim: int | None = None
    decoder_depth: int | None = None
    vae_latent_channels: int | None = None  # enc_patch_emb.channels_in
    patch_size: tuple[int, ...] | None = None
    targets: tuple[str, ...] = ()  # every _target_ string, as found (never imported)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    @property
    def code_dim(self) -> int:
        return len(self.levels)


# -- config as data ---------------------------------------------------------------------------
def _walk(node, path: tuple = ()) -> Iterator[tuple[tuple, dict]]:
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, path + (str(k),))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _walk(v, path + (str(i),))


def find_targets(config) -> list[str]:
    """Every ``_target_`` value in a nested config, as strings (reported, never resolved)."""
    return [str(d["_target_"]) for _, d in _walk(config) if "_target_" in d]


def _target_name(d: dict) -> str:
    return str(d.get("_target_", "")).rsplit(".", 1)[-1]


def _int(v) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def config_from_dict(config: dict) -> FlexTokConfig:
    """Read sizes out of a FlexTok Hydra config (hub config.json or parsed metadata)."""
    if not isinstance(config, dict):
        raise CheckpointError("FlexTok config is not an object")
    reg = config.get("regularizer")
    levels = reg.get("levels") if isinstance(reg, dict) else None
    if levels is None:  # a bare metadata dict may nest everything under a single key
        levels = next((d["levels"] for _, d in _walk(config) if _target_name(d) == "FSQ"
                       and "levels" in d), None)
    if not isinstance(levels, (list, tuple)) or not levels or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 2 for v in levels):
        raise CheckpointError(f"FlexTok config has no valid FSQ levels (got {levels!r})")
    kw: dict = {"levels": tuple(levels), "targets": tuple(find_targets(config))}
    for section, prefix in (("encoder", "encoder"), ("decoder", "decoder")):
        sec = config.get(section)
        for _, d in _walk(sec):
            name = _target_name(d)
            if name.startswith("FlexTransformer") and f"{prefix}_dim" not in kw:
                kw[f"{prefix}_dim"] = _int(d.get("dim"))
                kw[f"{prefix}_depth"] = _int(d.get("depth"))
            if section == "encoder" and name == "Registers1D":
                kw["max_tokens"] = _int(d.get("n_max"))
                kw["min_tokens"] = _int(d.get("n_min"))
            if section == "encoder" and name == "PatchEmbedder":
                kw["vae_latent_channels"] = _int(d.get("channels_in"))
                ps = d.get("patch_sizes")
                if isinstance(ps, (list, tuple)) and all(_int(p) for p in ps):
                    kw["patch_size"] = tuple(int(p) for p in ps)
    return FlexTokConfig(**kw)


def read_config(path: str | Path) -> FlexTokConfig:
    """From a folder (config.json, else the weights' metadata) or a .safetensors file."""
    raw = read_raw_config(path)
    return config_from_dict(raw)


def read_raw_config(path: str | Path) -> dict:
    """The FlexTok config as plain data: config.json if present, else safetensors metadata."""
    if Path(path).is_dir() and (Path(path) / "config.json").is_file():
        return _read_json(Path(path) / "config.json")  # the config alone is enough here
    config_path, weights = resolve(path)
    if config_path is not None:
        return _read_json(config_path)
    if weights.suffix != ".safetensors":
        raise CheckpointError(f"{weights}: FlexTok configs live in safetensors metadata or config.json")
    meta = parse_metadata(read_safetensors_header(weights).metadata)
    if not meta:
        raise CheckpointError(f"{weights}: no config.json and no safetensors metadata")
    return meta


def load(folder_or_file: str | Path, arch: str | None = None):
    """FlexTok (:class:`tokc.models.flextok_decoder.FlexTokModel`) from an official checkpoint.

    The structures are read from the config as data. Weights: ``decoder.*`` (required);
    ``encoder.*`` when present and the config's encoder section is one tokc can build (else the
    model decodes only, and ``encode`` says why); ``vae.vae.*`` when present (decoder half, plus
    the encoder half if its tensors are there) — else attach a VAE with :func:`load_vae`. A
    decoder config tokc cannot build, or tensors that do not fit, raise one CheckpointError."""
    from .autoencoder_kl import rename_legacy_attention
    from .checkpoints import load_state_dict_into, read_state_dict
    from .flextok_decoder import FlexTokModel, decoder_spec_from_config
    from .flextok_encoder import encoder_spec_from_config

    raw = read_raw_config(folder_or_file)
    cfg = config_from_dict(raw)
    spec = decoder_spec_from_config(raw, code_dim=cfg.code_dim)
    _, weights = resolve(folder_or_file)
    state = read_state_dict(weights)
    keep = {k: v for k, v in state.items() if k.startswith("decoder.")}
    if not keep:
        raise CheckpointError(
            f"{weights}: no decoder.* tensors; FlexTok (FSQ levels {list(cfg.levels)}) is "
            "recognised, but this file has no decoder to load")
    enc_state = {k: v for k, v in state.items() if k.startswith("encoder.")}
    enc_spec, enc_missing = None, "the checkpoint has no encoder.* tensors"
    if enc_state:
        try:
            enc_spec = encoder_spec_from_config(raw, code_dim=cfg.code_dim)
        except CheckpointError as exc:
            enc_spec, enc_missing, enc_state = None, str(exc), {}
    vae_state = rename_legacy_attention({k: v for k, v in state.items() if k.startswith(
        ("vae.vae.decoder.", "vae.vae.post_quant_conv.", "vae.vae.encoder.", "vae.vae.quant_conv."))})
    vae_encoder = any(k.startswith("vae.vae.encoder.") for k in vae_state)
    vae_section = raw.get("vae") if isinstance(raw.get("vae"), dict) else {}
    try:
        vae_spec = _vae_spec(vae_section, spec.latent_channels) if vae_state else None
        model = FlexTokModel(spec, cfg.levels, vae_spec=vae_spec, encoder_spec=enc_spec,
                             vae_encoder=vae_encoder,
                             sample_posterior=bool(vae_section.get("sample_posterior", True)))
    except ValueError as exc:
        raise CheckpointError(f"{folder_or_file}: {exc}") from None
    if model.encoder is None:
        model.encoder_missing = enc_missing
    load_state_dict_into(model, {**keep, **enc_state, **vae_state}, source=str(weights))
    return model


def _vae_spec(section, latent_channels: int):
    """The VAE decoder's structure: FlexTok's base AutoencoderKL config, with the
    ``latent_channels`` / ``scaling_factor`` of the config's ``vae`` section when given."""
    from .autoencoder_kl import vae_spec_from_config

    section = dict(section) if isinstance(section, dict) else {}
    section.setdefault("latent_channels", latent_channels)
    return vae_spec_from_config(section)


def load_vae(model, folder_or_file: str | Path, scaling_factor: float | None = None,
             encoder: bool = False):
    """Attach a diffusers ``AutoencoderKL`` (e.g. EPFL-VILAB/flextok_vae_c16: a folder with
    config.json and diffusion_pytorch_model.safetensors) to a FlexTok model: its decoder half
    (``decoder.*``, ``post_quant_conv.*``), and with ``encoder=True`` its encoder half too
    (``encoder.*``, ``quant_conv.*``). Returns the model."""
    from .autoencoder_kl import rename_legacy_attention, vae_spec_from_config
    from .checkpoints import load_state_dict_into, read_state_dict

    config_path, weights = resolve(folder_or_file)
    raw = _read_json(config_path) if config_path is not None else {}
    raw.setdefault("latent_channels", model.decoder.spec.latent_channels)
    if scaling_factor is not None:
        raw["scaling_factor"] = scaling_factor
    try:
        spec = vae_spec_from_config(raw)
        model.attach_vae(spec, encoder=encoder)
    except ValueError as exc:
        raise CheckpointError(f"{folder_or_file}: {exc}") from None
    state = rename_legacy_attention(read_state_dict(weights))
    parts = ("decoder.", "post_quant_conv.") + (("encoder.", "quant_conv.") if encoder else ())
    state = {k: v for k, v in state.items() if k.startswith(parts)}
    load_state_dict_into(model.vae.vae, state, source=str(weights))
    return model
