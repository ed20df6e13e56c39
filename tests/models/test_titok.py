"""One-D-Piece / legacy TiTok and TiTok VQ against the official parity fixtures."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from parity_fixtures import FIXTURES, needs_fixture  # noqa: E402

from tokc.models import titok  # noqa: E402
from tokc.models.checkpoints import CheckpointError  # noqa: E402
from tokc.models.vit import ViTSize, vit_size  # noqa: E402

ODP = FIXTURES / "one_d_piece"
TVQ = FIXTURES / "titok_vq_nonlegacy"

needs_odp = needs_fixture("one_d_piece", "io.npz")
needs_tvq = needs_fixture("titok_vq_nonlegacy", "io.npz")


def maxerr(a, b) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


@pytest.fixture(scope="module")
def odp():
    return titok.load(ODP), dict(np.load(ODP / "io.npz"))


@pytest.fixture(scope="module")
def tvq():
    return titok.load(TVQ), dict(np.load(TVQ / "io.npz"))


# -- sizes ------------------------------------------------------------------------------------
def test_vit_size_names():
    assert vit_size("large") == ViTSize(1024, 24, 16)
    assert vit_size("base") == ViTSize(768, 12, 12)
    assert vit_size("small") == ViTSize(512, 8, 8)
    assert vit_size("tiny") == ViTSize(64, 2, 2)
    assert vit_size("tiny_w96_l3_h3") == ViTSize(96, 3, 3)
    with pytest.raises(ValueError, match="unknown ViT size"):
        vit_size("huge")
    with pytest.raises(ValueError, match="not divisible"):
        vit_size("tiny_w96_l3_h5")


# -- One-D-Piece ------------------------------------------------------------------------------
@needs_odp
def test_one_d_piece_encode(odp):
    model, io = odp
    x = torch.from_numpy(io["image"])
    with torch.no_grad():
        z = model.encode_latent(x)
        idx = model.encode(x)
    assert model.arch == "one-d-piece" and not model.training
    assert maxerr(z, io["z"]) < 1e-5
    assert idx.dtype == torch.int64 and tuple(idx.shape) == io["indices"].shape
    np.testing.assert_array_equal(idx.numpy(), io["indices"])
    assert maxerr(model.indices_to_codes(idx), io["z_quantized"]) < 1e-5


@needs_odp
@pytest.mark.parametrize("k", [1, 3, 8])
def test_one_d_piece_decode_prefix(odp, k):
    model, io = odp
    tokens = torch.from_numpy(io["indices"][:, :, :k])
    with torch.no_grad():
        zq = model.indices_to_codes(tokens)
        logits = model.decoder_output(zq)
        states = model.pixel_quantized_states(logits)
        image = model.decode(tokens)
    assert maxerr(zq, io[f"zq_from_tokens_k{k}"]) < 1e-5
    assert maxerr(logits, io[f"decoder_logits_k{k}"]) < 1e-4
    assert maxerr(states, io[f"pixel_quantized_states_k{k}"]) < 1e-4
    assert maxerr(image, io[f"decoded_k{k}"]) < 1e-3


@needs_odp
def test_one_d_piece_forward_paths(odp):
    model, io = odp
    x = torch.from_numpy(io["image"])
    with torch.no_grad():
        idx = model.encode(x)
        assert maxerr(model(x), io["decoded_forward_full"]) < 1e-3
        assert maxerr(model.decode(idx[:, :, :3]), io["decoded_forward_length3"]) < 1e-3
        assert maxerr(model.decode(idx[:, 0]), io["decoded_full"]) < 1e-3  # (B, N) accepted
    with pytest.raises(ValueError, match="1..8"):
        model.decode(idx[:, :, :0])
    with pytest.raises(ValueError, match="1..8"):
        model.decode(torch.cat([idx, idx[:, :, :1]], dim=2))


# -- TiTok VQ (non-legacy) --------------------------------------------------------------------
@needs_tvq
def test_titok_vq_fixture(tvq):
    model, io = tvq
    x = torch.from_numpy(io["image"])
    captured = {}
    hook = model.decoder.conv_out.register_forward_pre_hook(
        lambda mod, args: captured.setdefault("ffn", args[0].clone())
    )
    try:
        with torch.no_grad():
            z = model.encode_latent(x)
            idx = model.encode(x)
            zq = model.indices_to_codes(idx)
            image = model.decode(idx)
            forward = model(x)
    finally:
        hook.remove()
    assert model.arch == "titok-vq" and not model.training
    assert maxerr(z, io["z"]) < 1e-5
    assert idx.dtype == torch.int64
    np.testing.assert_array_equal(idx.numpy(), io["indices"])
    assert maxerr(zq, io["z_quantized"]) < 1e-5
    assert maxerr(zq, io["zq_from_tokens"]) < 1e-5
    assert maxerr(captured["ffn"], io["decoder_ffn_rearranged"]) < 1e-4
    assert maxerr(image, io["decoded_full"]) < 1e-4
    assert maxerr(forward, io["decoded_forward"]) < 1e-4
    with pytest.raises(ValueError, match="exactly 8"):
        model.decode(idx[:, :, :3])
    with pytest.raises(ValueError, match="resize or crop"):
        model.encode(torch.rand(1, 3, 48, 64))
    with pytest.raises(ValueError, match=r"integers in \[0, 64\)"):
        model.decode(torch.full((1, 1, 8), 64))


# -- configs and loading errors ---------------------------------------------------------------
def _tiny_config(legacy: bool, size: str = "tiny_w32_l1_h2", crop=32) -> dict:
    vq = {
        "codebook_size": 16,
        "token_size": 6,
        "use_l2_norm": legacy,
        "vit_enc_model_size": size,
        "vit_dec_model_size": size,
        "vit_enc_patch_size": 8,
        "vit_dec_patch_size": 8,
        "num_latent_tokens": 5,
        "finetune_decoder": legacy,
        "is_legacy": legacy,
    }
    if legacy:
        vq["fixture_pixel_decoder"] = {
            "channel_mult": [1, 1, 1, 2],
            "num_resolutions": 4,
            "dropout": 0.0,
            "hidden_channels": 32,
            "num_channels": 3,
            "num_res_blocks": 1,
            "resolution": 64,
            "z_channels": 8,
        }
    return {"model": {"vq_model": vq}, "dataset": {"preprocessing": {"crop_size": crop}}}


def _save(folder: Path, config: dict, state: dict) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    return folder


@pytest.mark.parametrize("legacy", [True, False])
def test_sizes_come_from_config(tmp_path, legacy):
    """Another size name, token count, patch size, pixel decoder and a non-square image."""
    config = _tiny_config(legacy, crop=[32, 48])
    torch.manual_seed(0)
    ref = titok.TiTok(titok.TiTokConfig.from_dict(config)).eval()
    for p in ref.parameters():
        torch.nn.init.normal_(p, std=0.2)
    model = titok.load(_save(tmp_path / "m", config, ref.state_dict()))
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        idx = model.encode(x)
        assert tuple(idx.shape) == (2, 1, 5) and idx.dtype == torch.int64
        np.testing.assert_array_equal(idx.numpy(), ref.encode(x).numpy())
        assert tuple(model.decode(idx).shape) == (2, 3, 32, 48)
        if legacy:
            assert tuple(model.decode(idx[:, :, :2]).shape) == (2, 3, 32, 48)
    assert model.config.pixel_decoder is None or model.config.pixel_decoder.z_channels == 8


@pytest.mark.parametrize(
    "size, legacy, tokens, codes, token_size",
    [
        ("large", True, 32, 4096, 12),  # TiTok-L-32 / One-D-Piece-L layout
        ("base", True, 256, 4096, 12),
        ("small", False, 128, 8192, 64),  # titok_sl256_vq8k layout
    ],
)
def test_real_sizes_build(size, legacy, tokens, codes, token_size):
    """Official sizes build from the same code (on the meta device: no memory, no time)."""
    vq = {
        "codebook_size": codes,
        "token_size": token_size,
        "use_l2_norm": legacy,
        "vit_enc_model_size": size,
        "vit_dec_model_size": size,
        "vit_enc_patch_size": 16,
        "vit_dec_patch_size": 16,
        "num_latent_tokens": tokens,
        "finetune_decoder": legacy,
        "is_legacy": legacy,
    }
    cfg = titok.TiTokConfig.from_dict({"model": {"vq_model": vq}})
    with torch.device("meta"):
        model = titok.TiTok(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    width = vit_size(size).width
    assert shapes["encoder.positional_embedding"] == (257, width)
    assert shapes["quantize.embedding.weight"] == (codes, token_size)
    if legacy:
        assert shapes["decoder.ffn.2.weight"] == (1024, 2 * width, 1, 1)
        assert shapes["pixel_quantize.embedding.weight"] == (1024, 256)
        assert shapes["pixel_decoder.conv_in.weight"] == (512, 256, 3, 3)
        # channel_mult [1, 1, 2, 2, 4]: the shortcut sits where the width changes
        shortcuts = sorted(k for k in shapes if "nin_shortcut" in k)
        assert shortcuts == [
            "pixel_decoder.up.1.block.0.nin_shortcut.weight",
            "pixel_decoder.up.3.block.0.nin_shortcut.weight",
        ]
    else:
        assert shapes["decoder.ffn.0.weight"] == (768, width, 1, 1)
        assert not any(k.startswith("pixel_") for k in shapes)


def test_load_reports_every_problem_at_once(tmp_path):
    config = _tiny_config(True)
    state = titok.TiTok(titok.TiTokConfig.from_dict(config)).state_dict()
    state.pop("decoder.mask_token")
    state["encoder.extra_weight"] = torch.zeros(3)
    state["quantize.embedding.weight"] = torch.zeros(17, 6)
    folder = _save(tmp_path / "bad", config, state)
    with pytest.raises(CheckpointError) as info:
        titok.load(folder)
    msg = str(info.value)
    assert "missing keys (1)" in msg and "decoder.mask_token" in msg
    assert "unexpected keys (1)" in msg and "encoder.extra_weight" in msg
    assert "quantize.embedding.weight: checkpoint (17, 6) vs model (16, 6)" in msg
    assert isinstance(info.value, ValueError)


def test_load_refuses_unsupported_configs(tmp_path):
    config = _tiny_config(False)
    state = titok.TiTok(titok.TiTokConfig.from_dict(config)).state_dict()
    folder = _save(tmp_path / "m", config, state)
    with pytest.raises(ValueError, match="describes 'titok-vq', not 'one-d-piece'"):
        titok.load(folder, arch="one-d-piece")
    config["model"]["vq_model"]["quantize_mode"] = "vae"
    with pytest.raises(ValueError, match="quantize_mode 'vae'"):
        titok.TiTokConfig.from_dict(config)
    (folder / "config.json").unlink()
    with pytest.raises(ValueError, match="no config.json"):
        titok.load(folder)


# -- ONNX -------------------------------------------------------------------------------------
def _ort(path):
    ort = pytest.importorskip("onnxruntime")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _export(model, folder):
    """encoder.onnx, decoder.onnx as `tokc export` writes them (batch and, for One-D-Piece, the
    decoder's token count 1..N dynamic)."""
    from tokc.export.tokenizers import write_graphs

    return [path for _, path in write_graphs(model, model.arch, folder)]


@needs_odp
@pytest.mark.slow
def test_one_d_piece_onnx(odp, tmp_path):
    pytest.importorskip("onnxscript")
    model, io = odp
    enc, dec = _export(model, tmp_path)
    tokens = _ort(enc).run(None, {"image": io["image"]})[0]
    assert tokens.dtype == np.int64
    np.testing.assert_array_equal(tokens, io["indices"])
    decoder = _ort(dec)
    for k in (1, 3, 8):  # one graph, dynamic token count
        image = decoder.run(None, {"tokens": io["indices"][:, :, :k]})[0]
        assert maxerr(image, io[f"decoded_k{k}"]) < 1e-3
    one = decoder.run(None, {"tokens": io["indices"][1:, :, :5]})[0]  # dynamic batch
    with torch.no_grad():
        expect = model.decode(torch.from_numpy(io["indices"][1:, :, :5])).numpy()
    assert maxerr(one, expect) < 1e-3


@needs_tvq
@pytest.mark.slow
def test_titok_vq_onnx(tvq, tmp_path):
    pytest.importorskip("onnxscript")
    _, io = tvq
    model = titok.load(TVQ)
    enc, dec = _export(model, tmp_path)
    tokens = _ort(enc).run(None, {"image": io["image"]})[0]
    np.testing.assert_array_equal(tokens, io["indices"])
    image = _ort(dec).run(None, {"tokens": io["indices"]})[0]
    assert maxerr(image, io["decoded_full"]) < 1e-4
    single = _ort(enc).run(None, {"image": io["image"][:1]})[0]
    np.testing.assert_array_equal(single, io["indices"][:1])
