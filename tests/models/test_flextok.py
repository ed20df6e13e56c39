"""FlexTok: config read as data (never instantiated), its FSQ on the tokc kernels, and the
decode path (flow decoder driven by tokc.kernels.flow_decode) with tiny random configs. There is
no parity fixture from the official code."""

import json
import math
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from tiny_tokenizers import FLEXTOK_DEC as TINY  # noqa: E402
from tiny_tokenizers import FLEXTOK_ENC as TINY_ENC  # noqa: E402
from tiny_tokenizers import FLEXTOK_VAE as TINY_VAE  # noqa: E402
from tiny_tokenizers import flextok_full_model as full_model  # noqa: E402
from tiny_tokenizers import flextok_hub_config as hub_config  # noqa: E402
from tiny_tokenizers import save_flextok_checkpoint as _save_checkpoint  # noqa: E402

from tokc.models import flextok, load_pretrained  # noqa: E402
from tokc.models.checkpoints import CheckpointError, detect_arch  # noqa: E402
from tokc.models.metadata import parse_metadata, read_safetensors_header  # noqa: E402

PROBE = "tokc_flextok_probe_module"


def test_fsq_matches_formula_and_round_trips():
    fsq = flextok.FSQ()
    assert (fsq.codebook_size, fsq.dim) == (64000, 6)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 37, 6, generator=g) * 2
    codes, idx = fsq.quantize(z, impl="torch")
    # the published FSQ written out independently (float64)
    L = np.array(flextok.FLEXTOK_LEVELS, dtype=np.float64)
    half_l = (L - 1) * (1 + 1e-3) / 2
    offset = np.where(L % 2 == 0, 0.5, 0.0)
    q = np.round(np.tanh(z.double().numpy() + np.arctanh(offset / half_l)) * half_l - offset)
    half_w = np.floor(L / 2)
    np.testing.assert_allclose(codes.numpy(), q / half_w, atol=1e-6)
    basis = np.cumprod([1, *flextok.FLEXTOK_LEVELS[:-1]])
    np.testing.assert_array_equal(idx.numpy(), ((q + half_w) * basis).sum(-1).astype(np.int64))
    assert idx.dtype == torch.int64 and int(idx.min()) >= 0 and int(idx.max()) < 64000
    np.testing.assert_array_equal(fsq.codes_to_indices(codes).numpy(), idx.numpy())
    torch.testing.assert_close(fsq.indices_to_codes(idx, impl="torch"), codes)
    every = torch.arange(64000)
    np.testing.assert_array_equal(fsq.codes_to_indices(fsq.indices_to_codes(every)).numpy(), every.numpy())
    # first dimension is the least significant digit
    one = fsq.indices_to_codes(torch.tensor([1]))[0]
    assert one[0] == (1 - 4) / 4 and (one[1:] == torch.tensor([-1.0, -1.0, -1.0, -1.0, -1.0])).all()
    with pytest.raises(ValueError, match="64000"):
        fsq.indices_to_codes(torch.tensor([64000]))


def test_config_json_is_read_as_data(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(hub_config()))
    assert detect_arch(hub_config()) == "flextok"
    cfg = flextok.read_config(tmp_path)
    assert (cfg.levels, cfg.codebook_size, cfg.code_dim) == ((8, 8, 8, 5, 5, 5), 64000, 6)
    assert (cfg.max_tokens, cfg.min_tokens, cfg.vae_latent_channels, cfg.patch_size) == (256, 1, 16, (2, 2))
    assert (cfg.encoder_dim, cfg.encoder_depth, cfg.decoder_dim, cfg.decoder_depth) == (64, 3, 96, 5)
    assert "flextok.regularizers.quantize_fsq.FSQ" in cfg.targets


def test_metadata_targets_are_never_imported(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    # a module that leaves a mark if anything imports it
    marker = tmp_path / "imported.txt"
    (tmp_path / f"{PROBE}.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nclass Boom:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = hub_config(target_prefix=PROBE)
    # FlexTok writes metadata as {key: str(value)} (Python reprs); add hostile strings too
    metadata = {k: str(v) for k, v in cfg.items()}
    metadata["_target_"] = f"{PROBE}.Boom"
    metadata["evil"] = f"__import__({PROBE!r})"
    metadata["evil_yaml"] = f"!!python/object/apply:{PROBE}.Boom []"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    save_file({"encoder.w": torch.zeros(2, 3)}, str(ckpt / "model.safetensors"), metadata=metadata)

    header = read_safetensors_header(ckpt / "model.safetensors")
    assert header.num_parameters == 6 and header.metadata["_target_"] == f"{PROBE}.Boom"
    parsed = parse_metadata(header.metadata)
    assert parsed["regularizer"]["levels"] == [8, 8, 8, 5, 5, 5]
    assert parsed["evil"] == f"__import__({PROBE!r})"  # stays a string
    assert detect_arch(parsed) == "flextok"
    conf = flextok.read_config(ckpt)
    assert conf.levels == flextok.FLEXTOK_LEVELS and f"{PROBE}.Boom" in conf.targets
    with pytest.raises(CheckpointError, match="not supported by tokc"):  # no full decoder here
        load_pretrained(ckpt, arch="flextok")
    assert PROBE not in sys.modules
    assert not marker.exists()


def test_bad_levels_and_bad_files(tmp_path):
    bad = hub_config()
    bad["regularizer"]["levels"] = [8, "x"]
    with pytest.raises(CheckpointError, match="FSQ levels"):
        flextok.config_from_dict(bad)
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        flextok.read_config(tmp_path / "model.safetensors")


# -- the decode path: rectified-flow decoder + tokc.kernels.flow_decode -------------------------
from tokc.models import flextok_decoder as fd  # noqa: E402

LAT = 6  # latent grid 6×6 -> 3×3 patches (the sin-cos table is cropped from 4×4)


def tiny_model(spec=TINY, seed=0):
    torch.manual_seed(seed)
    return fd.FlexTokModel(spec).eval()


def tiny_hub_config(spec=TINY) -> dict:
    cfg = hub_config()
    cfg["decoder"] = fd.decoder_config_dict(spec)
    return cfg


def test_decoder_keys_are_the_official_names():
    """Names read off the official modules (SequentialModuleDictWrapper.module_dict, LinearLayer
    .proj, PositionalEmbeddingAdder.posembs, MaskedNestedDropout.dropout_mask_token,
    LearnedNullCond.nullcond, PatchEmbedder.patch_proj, TimestepEmbedder.mlp (Linear, SiLU,
    Linear), FlexTransformer.blocks.i (FlexBlockAdaLN: attn.wq/wk/wv/proj, mlp.fc1/fc2/fc3 of
    GatedMlp, adaLN_modulation (SiLU, Linear)), ToPatchesLinearHead (adaLN_modulation, proj))."""
    d, n = "decoder.module_dict.", 32
    expected = {
        d + "dec_from_latents.proj.weight": (n, 6), d + "dec_from_latents.proj.bias": (n,),
        d + "dec_registers_posemb_module.posembs": (1, 1, n, 8),
        d + "dec_nested_dropout.dropout_mask_token": (n,),
        d + "dec_latent_dropout.nullcond": (n,),
        d + "dec_noise_patch_emb.patch_proj.weight": (n, 16), d + "dec_noise_patch_emb.patch_proj.bias": (n,),
        d + "dec_patches_posemb_module.posembs": (1, n, 4, 4),
        d + "dec_time_embedder.mlp.0.weight": (n, 256), d + "dec_time_embedder.mlp.0.bias": (n,),
        d + "dec_time_embedder.mlp.2.weight": (n, n), d + "dec_time_embedder.mlp.2.bias": (n,),
        d + "dec_to_patches.adaLN_modulation.1.weight": (2 * n, n),
        d + "dec_to_patches.adaLN_modulation.1.bias": (2 * n,),
        d + "dec_to_patches.proj.weight": (16, n), d + "dec_to_patches.proj.bias": (16,),
    }
    hidden = int(2 * (4 * n) / 3)  # GatedMlp: 2/3 of mlp_ratio·dim
    for i in range(2):
        b = f"{d}dec_transformer.blocks.{i}."
        expected.update({b + f"attn.{w}.weight": (n, n) for w in ("wq", "wk", "wv", "proj")})
        expected.update({b + "mlp.fc1.weight": (hidden, n), b + "mlp.fc3.weight": (hidden, n),
                         b + "mlp.fc2.weight": (n, hidden),
                         b + "adaLN_modulation.1.weight": (6 * n, n), b + "adaLN_modulation.1.bias": (6 * n,)})
    got = {k: tuple(v.shape) for k, v in tiny_model().state_dict().items()}
    assert got == expected
    # optional parts appear under their official names when the config asks for them
    spec = fd.DecoderSpec(dim=32, depth=1, head_dim=16, max_tokens=8, latent_channels=4, qkv_bias=True,
                          norm_affine=True, norm_bias=True, adaLN_expansion=2, per_subseq_embs=True,
                          patches_posemb_max=(4, 4))
    keys = set(fd.FlexTokModel(spec).state_dict())
    b = d + "dec_transformer.blocks.0."
    assert {b + "attn.wq.bias", b + "attn.q_norm.weight", b + "attn.k_norm.bias", b + "norm1.weight",
            b + "norm2.bias"} <= keys
    assert fd.FlexTokModel(spec).state_dict()[b + "adaLN_modulation.1.weight"].shape == (2 * 6 * 32, 32)


def test_config_round_trip_and_refusals():
    cfg = tiny_hub_config()
    assert fd.decoder_spec_from_config(cfg) == TINY
    assert flextok.config_from_dict(cfg).decoder_dim == 32
    bad = tiny_hub_config()
    md = bad["decoder"]["module_dict"]
    md["dec_to_patches"]["use_mup_readout"] = True
    md["dec_seq_packer"]["mask_mode"] = "causal"
    md["dec_mystery"] = {"_target_": "flextok.model.Mystery"}
    with pytest.raises(CheckpointError) as err:
        fd.decoder_spec_from_config(bad)
    msg = str(err.value)
    assert "use_mup_readout" in msg and "causal" in msg and "Mystery" in msg


def test_decode_shapes_seed_and_prefixes():
    m = tiny_model()
    tokens = torch.randint(0, 64000, (2, 5), generator=torch.Generator().manual_seed(3))
    a = m.decode(tokens, steps=3, guidance=2.0, seed=7, latent_size=LAT)
    assert a.shape == (2, 4, LAT, LAT) and torch.isfinite(a).all()
    torch.testing.assert_close(m.decode(tokens, steps=3, guidance=2.0, seed=7, latent_size=LAT), a,
                               rtol=0, atol=0)
    assert not torch.allclose(m.decode(tokens, steps=3, guidance=2.0, seed=8, latent_size=LAT), a)
    # variable-length prefixes in one call; each image as if decoded alone (the official packing)
    seqs = [tokens[0, :2], tokens[1, :5]]
    both = m.decode(seqs, steps=2, seed=1, latent_size=LAT)
    noise = torch.randn(1, 4, LAT, LAT, generator=torch.Generator().manual_seed(1))
    alone = m.decode([tokens[0, :2]], steps=2, noise=noise)
    torch.testing.assert_close(both[:1], alone, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="1..8"):
        m.decode(torch.zeros(1, 9, dtype=torch.long), steps=1, latent_size=LAT)


def test_nested_dropout_and_null_condition():
    m = tiny_model()
    dec = m.decoder
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, LAT, LAT, generator=g)
    codes = m.fsq.indices_to_codes(torch.randint(0, 64000, (2, 8), generator=g))
    other = codes.clone()
    other[:, 3:] = -other[:, 3:]
    k = torch.tensor([3, 3])
    with torch.no_grad():
        # tokens past keep_k are replaced by the mask token: they cannot change the velocity
        torch.testing.assert_close(dec(x, 0.5, codes, k), dec(x, 0.5, other, k))
        assert not torch.allclose(dec(x, 0.5, codes), dec(x, 0.5, other))
        # the unconditional branch ignores the tokens altogether
        torch.testing.assert_close(dec(x, 0.5, codes, k, uncond=True), dec(x, 0.5, -codes, None, uncond=True))


def _velocity_by_hand(dec, x, t, codes, keep_k, uncond=False):
    """The decoder's forward written per token, from the description in flextok_decoder's
    docstring, for the TINY spec (adaLN expansion 1, no norm affine, SwiGLU, QK-norm)."""
    sd = {k.replace("module_dict.", ""): v for k, v in dec.state_dict().items()}
    s = dec.spec
    ln = lambda v: torch.nn.functional.layer_norm(v, v.shape[-1:])  # noqa: E731
    lin = lambda v, name, bias=True: v @ sd[name + ".weight"].T + (sd[name + ".bias"] if bias else 0)  # noqa: E731
    b, c, h, w = x.shape
    gh, gw = h // 2, w // 2
    patches = torch.stack([torch.stack([
        torch.stack([x[:, ch, 2 * i + a, 2 * j + bb] for a in range(2) for bb in range(2) for ch in range(c)], -1)
        for j in range(gw)], 1) for i in range(gh)], 1)  # (B, gh, gw, 16), (ph, pw, c) order
    p = lin(patches, "dec_noise_patch_emb.patch_proj")
    p = p + sd["dec_patches_posemb_module.posembs"][0, :, :gh, :gw].permute(1, 2, 0)
    p = p.reshape(b, gh * gw, s.dim)
    r = lin(codes, "dec_from_latents.proj") + sd["dec_registers_posemb_module.posembs"][0, 0].T
    keep = torch.arange(r.shape[1])[None, :, None] < keep_k[:, None, None]
    r = torch.where(keep, r, sd["dec_nested_dropout.dropout_mask_token"])
    if uncond:
        r = sd["dec_latent_dropout.nullcond"].expand_as(r)
    half = s.freq_size // 2
    freqs = (1000.0 / s.max_timestep) * torch.exp(-math.log(256.0) * torch.arange(half) / half)
    tf = torch.cat([torch.cos(t * freqs), torch.sin(t * freqs)])[None].expand(b, -1)
    temb = lin(torch.nn.functional.silu(lin(tf, "dec_time_embedder.mlp.0")), "dec_time_embedder.mlp.2")
    z = torch.cat([p, r], 1)
    nh, hd = s.num_heads, s.head_dim
    for i in range(s.depth):
        pre = f"dec_transformer.blocks.{i}."
        mod = lin(torch.nn.functional.silu(temb), pre + "adaLN_modulation.1")[:, None]
        g1, g2, sh1, sc1, sh2, sc2 = mod.chunk(6, -1)
        y = ln(z) * (1 + sc1) + sh1
        q, k_, v = (lin(y, pre + f"attn.{n}", False).reshape(b, -1, nh, hd) for n in ("wq", "wk", "wv"))
        q, k_ = ln(q), ln(k_)
        att = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k_) * (8.0 / hd), -1)
        o = torch.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, -1, s.dim)
        z = z + g1 * lin(o, pre + "attn.proj", False)
        y = ln(z) * (1 + sc2) + sh2
        hid = torch.nn.functional.silu(lin(y, pre + "mlp.fc1", False)) * lin(y, pre + "mlp.fc3", False)
        z = z + g2 * lin(hid, pre + "mlp.fc2", False)
    sh, sc = lin(torch.nn.functional.silu(temb), "dec_to_patches.adaLN_modulation.1")[:, None].chunk(2, -1)
    out = lin(ln(z[:, : gh * gw]) * (1 + sc) + sh, "dec_to_patches.proj")  # (B, gh·gw, 16)
    v = torch.zeros_like(x)
    out = out.reshape(b, gh, gw, 2, 2, c)
    for i in range(gh):
        for j in range(gw):
            v[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2] = out[:, i, j].permute(0, 3, 1, 2)
    return v


def test_velocity_matches_the_model_written_out():
    m = tiny_model()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, LAT, LAT, generator=g)
    codes = m.fsq.indices_to_codes(torch.randint(0, 64000, (2, 8), generator=g))
    k = torch.tensor([8, 2])
    with torch.no_grad():
        for uncond in (False, True):
            torch.testing.assert_close(m.decoder(x, 0.36, codes, k, uncond=uncond),
                                       _velocity_by_hand(m.decoder, x, 0.36, codes, k, uncond),
                                       rtol=1e-4, atol=1e-5)


def test_time_and_position_embeddings_formulas():
    t = torch.tensor([0.0, 0.3, 1.0])
    e = fd.sinusoidal_time_embedding(t, 8, max_timestep=1.0)
    f = 1000.0 * np.exp(-np.log(256.0) * np.arange(4) / 4)
    ref = np.concatenate([np.cos(t.numpy()[:, None] * f), np.sin(t.numpy()[:, None] * f)], 1)
    np.testing.assert_allclose(e.numpy(), ref, atol=1e-4)  # fp32 arguments up to 1000 rad
    pe = fd.sincos_2d_posemb(3, 3, 8)  # (1, 8, h, w): [sin x, cos x, sin y, cos y], ω = 1/100^i
    om = 1.0 / 10000.0 ** (np.arange(2) / 2)
    # official quirk: the flat index runs over (x, y), y fastest, then is read as (h, w)
    row, col = 1, 2
    gx, gy = row, col
    ref = np.concatenate([np.sin(gx * om), np.cos(gx * om), np.sin(gy * om), np.cos(gy * om)])
    np.testing.assert_allclose(pe[0, :, row, col].numpy(), ref, rtol=1e-6)


def _euler_by_hand(dec, codes, keep_k, noise, steps, w, apg=False):
    """MinRFPipeline written out: t = i/steps for i = steps..1, x ← x − v/steps; CFG, or APG
    (normalized_guidance with MomentumBuffer(−0.5), η = 0, threshold 2.5, projection in float64)."""
    x, running = noise.clone(), 0
    for i in range(steps, 0, -1):
        t = torch.full((x.shape[0],), i / steps)
        vc = dec(x, t, codes, keep_k)
        if w != 1.0:
            vu = dec(x, t, codes, keep_k, uncond=True)
            if not apg:
                v = vu + w * (vc - vu)
            else:
                diff = vc - vu
                running = diff + (-0.5) * running
                diff = running
                norm = diff.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
                diff = diff * torch.minimum(torch.ones_like(norm), 2.5 / norm)
                v1 = torch.nn.functional.normalize(vc.double().flatten(1), dim=1).reshape(vc.shape)
                par = (diff.double() * v1).sum(dim=(1, 2, 3), keepdim=True) * v1
                v = vc + (w - 1) * (diff - par.float())
        else:
            v = vc
        x = x - v / steps
    return x


@pytest.mark.parametrize("guidance,apg", [(1.0, False), (3.0, False), (3.0, True)])
def test_decode_is_flow_decode_and_matches_the_official_loop(monkeypatch, guidance, apg):
    import tokc.kernels

    m = tiny_model()
    g = torch.Generator().manual_seed(11)
    tokens = torch.randint(0, 64000, (2, 8), generator=g)
    noise = torch.randn(2, 4, LAT, LAT, generator=g)
    calls = []
    real = tokc.kernels.flow_decode

    def spy(fn, x0, steps, **kw):
        calls.append((steps, kw))
        return real(fn, x0, steps, **kw)

    monkeypatch.setattr(tokc.kernels, "flow_decode", spy)
    got = m.decode([tokens[0, :3], tokens[1]], steps=4, guidance=guidance, apg=apg, noise=noise)
    assert len(calls) == 1
    steps, kw = calls[0]
    assert steps == 4 and kw["guidance"] == guidance and kw["method"] == "euler"
    assert kw["mode"] == ("apg" if apg else "cfg")
    codes, keep_k = m.tokens_to_codes([tokens[0, :3], tokens[1]])
    with torch.no_grad():
        ref = _euler_by_hand(m.decoder, codes, keep_k, noise, 4, guidance, apg)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metadata", [False, True])
def test_load_pretrained_official_layout(tmp_path, metadata):
    m = tiny_model(seed=4)
    _save_checkpoint(tmp_path / "ckpt", m, tiny_hub_config(), metadata=metadata)
    loaded = load_pretrained(tmp_path / "ckpt", arch="flextok")
    if not metadata:
        assert isinstance(load_pretrained(tmp_path / "ckpt"), fd.FlexTokModel)  # detected
    assert not loaded.training and loaded.decoder.spec == TINY
    tokens = torch.randint(0, 64000, (1, 4))
    torch.testing.assert_close(loaded.decode(tokens, steps=2, guidance=2.0, seed=0, latent_size=LAT),
                               m.decode(tokens, steps=2, guidance=2.0, seed=0, latent_size=LAT))
    with pytest.raises(NotImplementedError, match="encoder"):
        loaded.encode(torch.zeros(1, 3, 48, 48))


def test_load_mismatch_is_one_clear_error(tmp_path):
    m = tiny_model()
    state = {k: v for k, v in m.state_dict().items() if "blocks.1.mlp.fc2" not in k}
    state["decoder.module_dict.dec_from_latents.proj.weight"] = torch.zeros(32, 5)
    state["decoder.module_dict.dec_transformer.blocks.2.attn.wq.weight"] = torch.zeros(32, 32)
    folder = tmp_path / "bad"
    folder.mkdir()
    from safetensors.torch import save_file

    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(tiny_hub_config()))
    with pytest.raises(CheckpointError) as err:
        load_pretrained(folder, arch="flextok")
    msg = str(err.value)
    assert "missing keys (1)" in msg and "blocks.1.mlp.fc2.weight" in msg
    assert "unexpected keys (1)" in msg and "blocks.2.attn.wq.weight" in msg
    assert "dec_from_latents.proj.weight: checkpoint (32, 5) vs model (32, 6)" in msg


# -- the VAE decoder (diffusers AutoencoderKL layout) ------------------------------------------
from tokc.models import autoencoder_kl as akl  # noqa: E402


def test_vae_decoder_keys_are_diffusers_names():
    vae = akl.AutoencoderKLDecoder(akl.vae_spec_from_config(TINY_VAE))
    got = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    d = "decoder."
    expected_some = {
        "post_quant_conv.weight": (4, 4, 1, 1), d + "conv_in.weight": (16, 4, 3, 3),
        d + "mid_block.resnets.1.conv2.weight": (16, 16, 3, 3),
        d + "mid_block.attentions.0.group_norm.weight": (16,),
        d + "mid_block.attentions.0.to_q.weight": (16, 16), d + "mid_block.attentions.0.to_out.0.bias": (16,),
        d + "up_blocks.0.resnets.1.norm1.weight": (16,), d + "up_blocks.0.upsamplers.0.conv.weight": (16, 16, 3, 3),
        d + "up_blocks.1.resnets.0.conv_shortcut.weight": (8, 16, 1, 1),
        d + "up_blocks.1.resnets.1.conv1.weight": (8, 8, 3, 3),
        d + "conv_norm_out.weight": (8,), d + "conv_out.weight": (3, 8, 3, 3),
    }
    assert expected_some.items() <= got.items()
    assert not any("up_blocks.1.upsamplers" in k or "up_blocks.0.resnets.2" in k for k in got)
    assert len([k for k in got if ".resnets." in k and k.endswith("conv1.weight")]) == 2 + 2 + 2
    with torch.no_grad():
        img = vae.decode(torch.randn(1, 4, 5, 6))
    assert img.shape == (1, 3, 10, 12)
    legacy = akl.rename_legacy_attention({"decoder.mid_block.attentions.0.query.weight": 1,
                                          "decoder.mid_block.attentions.0.proj_attn.bias": 2})
    assert set(legacy) == {"decoder.mid_block.attentions.0.to_q.weight",
                           "decoder.mid_block.attentions.0.to_out.0.bias"}


def test_vae_matches_diffusers():
    """Parity with diffusers' AutoencoderKL decode / encode (skipped where diffusers is not
    installed; it is not a tokc dependency)."""
    diffusers = pytest.importorskip("diffusers")
    cfg = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
               up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[8, 16], layers_per_block=1,
               latent_channels=4, norm_num_groups=4, scaling_factor=0.5)
    torch.manual_seed(0)
    ref = diffusers.models.AutoencoderKL(**cfg).eval()
    ours = akl.AutoencoderKLDecoder(akl.vae_spec_from_config(cfg)).eval()
    ours.load_state_dict({k: v for k, v in ref.state_dict().items()
                          if k.startswith(("decoder.", "post_quant_conv."))})
    z = torch.randn(2, 4, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(ours.decode(z), ref.decode(z / 0.5).sample, rtol=1e-5, atol=1e-5)
    full = akl.AutoencoderKL(akl.vae_spec_from_config(cfg)).eval()
    full.load_state_dict(ref.state_dict())
    x = torch.rand(2, 3, 10, 12) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(full.encode(x), ref.encode(x).latent_dist.mode() * 0.5,
                                   rtol=1e-5, atol=1e-5)


def test_checkpoint_with_vae_decodes_to_pixels(tmp_path):
    from safetensors.torch import save_file

    m = tiny_model()
    cfg = tiny_hub_config()
    cfg["vae"].update(TINY_VAE)
    with pytest.raises(RuntimeError, match="no VAE attached"):
        m.decode_images(torch.zeros(1, 2, dtype=torch.long), steps=1, latent_size=LAT)
    m.attach_vae(akl.vae_spec_from_config(TINY_VAE))
    state = _save_checkpoint(tmp_path / "ckpt", m, cfg)
    assert any(k.startswith("vae.vae.decoder.up_blocks.") for k in state)
    loaded = load_pretrained(tmp_path / "ckpt", arch="flextok")
    tokens = torch.randint(0, 64000, (2, 3))
    img = loaded.decode_images(tokens, steps=2, guidance=2.0, seed=0, latent_size=LAT)
    assert img.shape == (2, 3, 2 * LAT, 2 * LAT)
    lat = m.decode(tokens, steps=2, guidance=2.0, seed=0, latent_size=LAT)
    torch.testing.assert_close(img, m.vae.vae.decode(lat))

    # a separate diffusers folder (legacy attention names), attached with load_vae
    plain = tiny_model()
    vae_dir = tmp_path / "vae"
    vae_dir.mkdir()
    vstate = {k[len("vae.vae."):]: v.contiguous() for k, v in m.state_dict().items() if k.startswith("vae.")}
    vstate = {k.replace(".to_q.", ".query.").replace(".to_out.0.", ".proj_attn."): v for k, v in vstate.items()}
    vstate["encoder.conv_in.weight"] = torch.zeros(1)
    save_file(vstate, str(vae_dir / "diffusion_pytorch_model.safetensors"))
    (vae_dir / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", **TINY_VAE}))
    flextok.load_vae(plain, vae_dir)
    torch.testing.assert_close(plain.vae.vae.decode(lat), img)
    del vstate["decoder.conv_out.weight"]
    save_file(vstate, str(vae_dir / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(CheckpointError, match="(?s)missing keys.*decoder.conv_out.weight"):
        flextok.load_vae(plain, vae_dir)


# -- the encoder: VAE encoder + register encoder + FSQ ------------------------------------------
from tokc.models import flextok_encoder as fe  # noqa: E402


def test_encoder_keys_config_and_refusals():
    d = "encoder.module_dict."
    got = {k: tuple(v.shape) for k, v in full_model().state_dict().items() if k.startswith("encoder.")}
    assert {d + "enc_patch_emb.patch_proj.weight": (32, 16), d + "enc_posemb_module.posembs": (1, 32, 4, 4),
            d + "enc_register_module.registers": (8, 32), d + "enc_transformer.blocks.1.attn.wq.weight": (32, 32),
            d + "enc_transformer.blocks.0.mlp.fc3.weight": (int(2 * 128 / 3), 32),
            d + "enc_to_latents.proj.weight": (6, 32), d + "enc_to_latents.proj.bias": (6,)}.items() <= got.items()
    assert not any("adaLN" in k for k in got)
    cfg = {"encoder": fe.encoder_config_dict(TINY_ENC)}
    assert fe.encoder_spec_from_config(cfg) == TINY_ENC
    cfg["encoder"]["module_dict"]["enc_seq_packer"]["mask_mode"] = "full"
    with pytest.raises(CheckpointError, match="causal_last"):
        fe.encoder_spec_from_config(cfg)


def test_causal_last_mask_and_prefixes():
    mask = fe.causal_last_mask(3, 2)
    expected = torch.tensor([[1, 1, 1, 0, 0]] * 3 + [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)
    m = full_model()
    g = torch.Generator().manual_seed(2)
    lat = torch.randn(2, 4, LAT, LAT, generator=g)
    z = m.encoder(lat)
    assert z.shape == (2, 8, 6)
    # registers attend causally and patches never see them: fewer registers, same first latents
    short = fe.FlexTokEncoder(fe.EncoderSpec(**{**TINY_ENC.__dict__, "eval_tokens": 3}))
    short.load_state_dict(m.encoder.state_dict())
    torch.testing.assert_close(short(lat), z[:, :3])
    idx = m.encode_latents(lat)
    assert idx.shape == (2, 8) and idx.dtype == torch.int64 and int(idx.max()) < 64000
    assert torch.equal(m.encode_latents(lat, num_tokens=5), idx[:, :5])
    torch.testing.assert_close(m.fsq.indices_to_codes(idx), m.fsq.quantize(z)[0])


def test_encode_images_round_trip_through_a_checkpoint(tmp_path):
    m = full_model(seed=3)
    cfg = tiny_hub_config()
    cfg["encoder"] = fe.encoder_config_dict(TINY_ENC)
    cfg["vae"].update(TINY_VAE, sample_posterior=False)
    _save_checkpoint(tmp_path / "ckpt", m, cfg)
    loaded = load_pretrained(tmp_path / "ckpt", arch="flextok")
    assert loaded.encoder is not None and loaded.sample_posterior is False
    images = torch.rand(2, 3, 2 * LAT, 2 * LAT, generator=torch.Generator().manual_seed(4)) * 2 - 1
    tokens = loaded.encode(images)
    assert torch.equal(tokens, m.encode(images)) and tokens.shape == (2, 8)
    assert torch.equal(tokens, m.encode_latents(m.vae.vae.encode(images)))
    a = loaded.encode(images, sample_posterior=True, seed=1)
    assert torch.equal(a, loaded.encode(images, sample_posterior=True, seed=1))
    out = loaded.decode_images(tokens[:, :3], steps=2, seed=0, latent_size=LAT)
    assert out.shape == images.shape
    # an encoder section tokc cannot build: the model still loads and decodes; encode says why
    cfg["encoder"]["module_dict"]["enc_seq_packer"]["mask_mode"] = "causal"
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(cfg))
    partial = load_pretrained(tmp_path / "ckpt", arch="flextok")
    assert partial.encoder is None
    with pytest.raises(NotImplementedError, match="causal_last"):
        partial.encode_latents(torch.zeros(1, 4, LAT, LAT))
