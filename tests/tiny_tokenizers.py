"""Tiny randomly initialised FlexTok and GPSToken models and checkpoints in the official layouts
(there is no parity fixture from the official code for either), shared by the model and export
tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tokc.models import autoencoder_kl as akl
from tokc.models import flextok_decoder as fd
from tokc.models import flextok_encoder as fe
from tokc.models import gpstoken

FLEXTOK_DEC = fd.DecoderSpec(dim=32, depth=2, head_dim=16, max_tokens=8, latent_channels=4,
                             patch_size=(2, 2), patches_posemb_max=(4, 4))
FLEXTOK_ENC = fe.EncoderSpec(dim=32, depth=2, head_dim=16, latent_channels=4, patch_size=(2, 2),
                             posemb_max=(4, 4), max_tokens=8)
FLEXTOK_VAE = {"latent_channels": 4, "block_out_channels": [8, 16], "layers_per_block": 1,
               "norm_num_groups": 4, "scaling_factor": 0.5}
GPSTOKEN = gpstoken.GPSTokenConfig(
    num_tokens=6, rois=2, enc_layers=2, enc_width=16, enc_heads=2, feature_dim=4,
    render_size=(8, 10), pre_channels=8, pre_temb_channels=8, ch=8, ch_mult=(1, 2),
    num_res_blocks=1, resolution=16, num_groups=4, adaptive_min_size=2, attn_resolutions=(8,),
)


def flextok_hub_config(target_prefix: str = "flextok") -> dict:
    """The shape of a FlexTok hub config (sections, module_dict, _target_ paths), tiny sizes."""
    t = lambda name: f"{target_prefix}.{name}"  # noqa: E731
    return {
        "vae": {"_target_": t("vae_wrapper.StableDiffusionVAE"), "images_read_key": "rgb"},
        "encoder": {"_target_": t("model.utils.wrappers.SequentialModuleDictWrapper"), "module_dict": {
            "enc_patch_emb": {"_target_": t("model.preprocessors.patching.PatchEmbedder"),
                              "channels_in": 16, "dim": 64, "patch_sizes": [2, 2]},
            "enc_register_module": {"_target_": t("model.preprocessors.registers.Registers1D"),
                                    "dim": 64, "n_min": 1, "n_max": 256},
            "enc_transformer": {"_target_": t("model.trunks.transformers.FlexTransformer"),
                                "dim": 64, "depth": 3},
        }},
        "decoder": {"_target_": t("model.utils.wrappers.SequentialModuleDictWrapper"), "module_dict": {
            "dec_transformer": {"_target_": t("model.trunks.transformers.FlexTransformer"),
                                "dim": 96, "depth": 5},
        }},
        "regularizer": {"_target_": t("regularizers.quantize_fsq.FSQ"),
                        "levels": [8, 8, 8, 5, 5, 5], "latents_read_key": "enc_registers"},
        "flow_matching_noise_module": {"_target_": t("flow_matching.noise_modules.MinRFNoiseModule")},
        "pipeline": {"_target_": t("flow_matching.pipelines.MinRFPipeline"), "_partial_": True},
    }


def flextok_full_model(seed=0, enc=FLEXTOK_ENC):
    """Decoder, register encoder and the whole VAE (posterior mean when encoding)."""
    torch.manual_seed(seed)
    return fd.FlexTokModel(FLEXTOK_DEC, encoder_spec=enc, vae_spec=akl.vae_spec_from_config(FLEXTOK_VAE),
                           vae_encoder=True, sample_posterior=False).eval()


def flextok_full_config() -> dict:
    """The hub config of :func:`flextok_full_model`."""
    cfg = flextok_hub_config()
    cfg["decoder"] = fd.decoder_config_dict(FLEXTOK_DEC)
    cfg["encoder"] = fe.encoder_config_dict(FLEXTOK_ENC)
    cfg["vae"].update(FLEXTOK_VAE, sample_posterior=False)
    return cfg


def save_flextok_checkpoint(folder: Path, model, config: dict, extra=None, metadata=False) -> dict:
    """model.safetensors (+ config.json, or the config in the safetensors metadata)."""
    from safetensors.torch import save_file

    folder.mkdir()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state.setdefault("encoder.module_dict.enc_register_module.registers", torch.zeros(8, 32))
    state.update(extra or {})
    if metadata:
        save_file(state, str(folder / "model.safetensors"), metadata={k: str(v) for k, v in config.items()})
    else:
        save_file(state, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(config))
    return state


def gpstoken_model(seed=0) -> gpstoken.GPSToken:
    torch.manual_seed(seed)
    m = gpstoken.GPSToken(GPSTOKEN).eval()
    with torch.no_grad():  # the official zero-init of the delta head hides bugs; randomise it
        m.to_gps[0].weight.normal_(0, 0.1)
        m.to_gps[0].bias.normal_(0, 0.1)
    return m


def save_gpstoken_checkpoint(folder: Path, model: gpstoken.GPSToken) -> Path:
    from safetensors.torch import save_file

    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(model.config.to_official()))
    return folder
