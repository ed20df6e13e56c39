"""FlexTok's ONNX graphs (``tokc export --arch flextok``), described as data for
:mod:`tokc.export.tokenizers`:

- ``encoder``: VAE latents (batch, C, h, w) -> tokens (batch, N) int64: the register encoder,
  then FSQ (the kernel's reference). Any prefix of the tokens is a coarser description.
- ``decoder``: the rectified-flow velocity network, one call per sampling step: latents
  (batch, C, h, w), timestep (batch,), tokens (batch, tokens) int64 with 1 <= tokens <= N (a
  prefix; the rest is the nested-dropout mask token, as :meth:`FlexTokModel.tokens_to_codes`),
  guidance (1,) -> v_cond, v_uncond. The unconditional branch runs only when guidance != 1
  (an ONNX ``If``); otherwise v_uncond is a copy of v_cond. The guidance itself (CFG or APG,
  with APG's momentum) is applied by the sampling loop outside the graph —
  :func:`tokc.kernels.flow_step` in torch, :mod:`tokc.runtimes.flow` in numpy — as
  :meth:`FlexTokDecoder.sample` does.
- ``vae_decoder`` (when the checkpoint has the VAE): latents -> image (batch, 3, 8h, 8w).
- ``vae_encoder`` (when it has the VAE's encoder half): image -> latents (the posterior mean,
  scaled) and std (scaled): a posterior sample is latents + std·ε.

The latent grid (h, w) is fixed at export: the size the decoder's position table was built
for (``patches_posemb_max`` × patch size: 32×32 latents, 256² pixels, for the released models).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tokc.kernels.fsq import reference as fsq_ref

from .graphs import CHECK_BATCH, TRACED_BATCH, Graph, batch_dim


class EncoderGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, latents):
        z = self.model.encoder(latents)
        return fsq_ref.fsq_quantize(z.float(), self.model.fsq.levels)[1]


class VelocityGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, latents, timestep, tokens, guidance):
        n = self.model.max_tokens
        codes = fsq_ref.indices_to_codes(nn.functional.pad(tokens, (0, n - tokens.shape[1])),
                                         self.model.fsq.levels)
        keep = torch.ones_like(tokens).sum(1)  # the prefix length, per row
        dec = self.model.decoder
        v_cond = dec(latents, timestep, codes, keep)

        def uncond(x, t, c, k):
            return dec(x, t, c, k, uncond=True)

        def same(x, t, c, k):
            return v_cond.clone()

        v_uncond = torch.cond(guidance[0] != 1.0, uncond, same, (latents, timestep, codes, keep))
        return v_cond, v_uncond


class VAEDecoderGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, latents):
        return self.model.vae.vae.decode(latents)


class VAEEncoderGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        vae = self.model.vae.vae
        mean, logvar = vae.quant_conv(vae.encoder(image)).chunk(2, dim=1)
        sf = vae.spec.scaling_factor
        return mean * sf, torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * sf


def latent_size(model) -> tuple[int, int]:
    s = model.decoder.spec
    return s.patches_posemb_max[0] * s.patch_size[0], s.patches_posemb_max[1] * s.patch_size[1]


def _has_vae_encoder(model) -> bool:
    return model.vae is not None and hasattr(model.vae.vae, "encoder")


def onnx_graphs(model, token_axis: str = "dynamic") -> list[Graph]:
    from torch.export import Dim

    s = model.decoder.spec
    c = s.latent_channels
    h, w = latent_size(model)
    n = model.max_tokens
    batch = batch_dim()
    rng = np.random.default_rng(1)
    gen = torch.Generator().manual_seed(0)

    def lat(b):
        return rng.standard_normal((b, c, h, w)).astype(np.float32)

    graphs = []
    if model.encoder is not None:
        graphs.append(Graph(
            "encoder", EncoderGraph(model).eval(), ("latents",), ("tokens",),
            (("batch", c, h, w),), (("batch", n),),
            (torch.from_numpy(lat(TRACED_BATCH)),), ({0: batch},), (lat(CHECK_BATCH),)))
    tokens = Dim("tokens", min=1, max=n)
    k = model.fsq.codebook_size
    traced_n, checked_n = max(n - 1, 1), max(n // 2, 1)
    graphs.append(Graph(
        "decoder", VelocityGraph(model).eval(), ("latents", "timestep", "tokens", "guidance"),
        ("v_cond", "v_uncond"),
        (("batch", c, h, w), ("batch",), ("batch", "tokens"), (1,)),
        (("batch", c, h, w), ("batch", c, h, w)),
        (torch.from_numpy(lat(TRACED_BATCH)), torch.rand(TRACED_BATCH, generator=gen),
         torch.randint(0, k, (TRACED_BATCH, traced_n), generator=gen), torch.tensor([2.0])),
        ({0: batch}, {0: batch}, {0: batch, 1: tokens}, None),
        (lat(CHECK_BATCH), rng.random(CHECK_BATCH, dtype=np.float32),
         rng.integers(0, k, (CHECK_BATCH, checked_n), dtype=np.int64), np.array([3.0], np.float32))))
    if model.vae is not None:
        f = 2 ** (len(model.vae.vae.spec.block_out_channels) - 1)
        graphs.append(Graph(
            "vae_decoder", VAEDecoderGraph(model).eval(), ("latents",), ("image",),
            (("batch", c, h, w),), (("batch", 3, f * h, f * w),),
            (torch.from_numpy(lat(TRACED_BATCH)),), ({0: batch},), (lat(CHECK_BATCH),)))
        if _has_vae_encoder(model):
            def img(b):
                return rng.uniform(-1, 1, (b, 3, f * h, f * w)).astype(np.float32)

            graphs.append(Graph(
                "vae_encoder", VAEEncoderGraph(model).eval(), ("image",), ("latents", "std"),
                (("batch", 3, f * h, f * w),), (("batch", c, h, w), ("batch", c, h, w)),
                (torch.from_numpy(img(TRACED_BATCH)),), ({0: batch},), (img(CHECK_BATCH),)))
    return graphs


def onnx_constraints(model) -> dict:
    s = model.decoder.spec
    out = {"latent_size": list(latent_size(model)), "latent_channels": s.latent_channels,
           "max_tokens": model.max_tokens, "codebook_size": model.fsq.codebook_size,
           "fsq_levels": list(model.fsq.levels), "timestep": "t from 1 (noise) to 0 (data)",
           "sampler": {"steps": 25, "guidance": 1.0, "method": "euler",
                       "apg": {"momentum": -0.5, "eta": 0.0, "norm_threshold": 2.5}}}
    if model.vae is not None:
        out["image_range"] = [-1.0, 1.0]
        out["sample_posterior"] = bool(model.sample_posterior)
    return out
