"""WeTok against the official parity fixture (shared/fixtures/wetok)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from parity_fixtures import FIXTURES, needs_fixture  # noqa: E402

from tokc.models import wetok  # noqa: E402

FIX = FIXTURES / "wetok"
pytestmark = needs_fixture("wetok")
ENC_ATOL = 1e-5
DEC_ATOL = 1e-4


@pytest.fixture(scope="module")
def io():
    return dict(np.load(FIX / "io.npz"))


@pytest.fixture(scope="module")
def model():
    return wetok.load(FIX, arch="wetok")


def _assert_indices(got: np.ndarray, io) -> None:
    fragile = io["index_fragile_mask_bhwc"].astype(bool)
    assert got.shape == io["indices_lfq_bhwc"].shape
    assert ((got != io["indices_lfq_bhwc"]) & ~fragile).sum() == 0


def test_config_from_fixture(model):
    c = model.config
    assert (c.ch, c.ch_mult, c.z_channels, c.num_codebooks, c.codebook_bits) == (32, (1, 1, 2), 32, 4, 8)


def test_encode_matches_fixture(model, io):
    x = torch.from_numpy(io["image"])
    h, q = model.encode_latents(x)
    np.testing.assert_allclose(h.numpy(), io["encoder_out"], rtol=0, atol=ENC_ATOL)
    np.testing.assert_array_equal(q.numpy(), io["quantized"])
    idx = model.encode(x)
    assert idx.dtype == torch.int64
    _assert_indices(idx.numpy(), io)
    # exact on the provided encoder output, flat order (b, h, w, group) as the official encode
    exact = model.quantize.codes_to_indices(torch.from_numpy(io["encoder_out"]))
    np.testing.assert_array_equal(exact.reshape(-1).numpy(), io["indices_lfq_flat"])
    np.testing.assert_array_equal(wetok.WeTok.factorize(exact).numpy(), io["indices_gfq_factorized"])
    back = wetok.WeTok.unfactorize(torch.from_numpy(io["indices_gfq_factorized"]), 16, 16)
    np.testing.assert_array_equal(back.numpy(), io["indices_lfq_bhwc"])


def test_quantizer_edge_cases(model, io):
    x = torch.from_numpy(io["qtest_input"])
    np.testing.assert_array_equal(model.quantize.quantize(x).numpy(), io["qtest_quantized"])
    idx = model.quantize.codes_to_indices(x)
    np.testing.assert_array_equal(idx.reshape(-1).numpy(), io["qtest_indices_lfq_flat"])
    np.testing.assert_array_equal(
        wetok.WeTok.factorize(idx).reshape(4, -1).numpy(), io["qtest_indices_gfq_factorized"]
    )


def test_decode_matches_fixture(model, io):
    idx = torch.from_numpy(io["indices_lfq_bhwc"])
    q = model.quantize.indices_to_codes(idx)
    np.testing.assert_array_equal(q.numpy(), io["quant_from_indices"])
    out = model.decode(idx)
    np.testing.assert_allclose(out.numpy(), io["decoded"], rtol=0, atol=DEC_ATOL)
    np.testing.assert_allclose(out.numpy(), io["decoded_from_indices"], rtol=0, atol=DEC_ATOL)
    with torch.no_grad():
        up = model.decoder.up[2].upsample
        y = up(torch.from_numpy(io["decoder_up2_upsample_in_b0"]))
        np.testing.assert_allclose(y.numpy(), io["decoder_up2_upsample_out_b0"], rtol=0, atol=1e-5)
        z = torch.from_numpy(io["quantized"])
        a = model.decoder.adaptive[2](model.decoder.mid_block[0](model.decoder.conv_in(z)), z)
        np.testing.assert_allclose(a[:1].numpy(), io["decoder_adaptive2_out"], rtol=0, atol=1e-5)


def test_depth_to_space_is_dcr():
    x = torch.arange(2 * 8 * 1 * 1, dtype=torch.float32).reshape(2, 8, 1, 1)
    y = wetok.depth_to_space_dcr(x, 2)  # out[c, i, j] = x[(2i + j) * C + c]
    assert y[0, 1, 0, 1].item() == x[0, (2 * 0 + 1) * 2 + 1, 0, 0].item()
    assert not torch.equal(y, torch.nn.functional.pixel_shuffle(x, 2))


def test_ema_weights_mapped(tmp_path, model):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(FIX / "model.safetensors"))
    ckpt = {f"state_dict.{k}": v for k, v in sd.items()}
    ckpt["state_dict.model_ema.decay"] = torch.tensor(0.999)
    ckpt["state_dict.model_ema.num_updates"] = torch.tensor(10)
    ckpt["state_dict.loss.discriminator.weight"] = torch.zeros(2)
    for k, v in sd.items():
        ckpt["state_dict.model_ema." + k.replace(".", "")] = v * 2
    save_file(ckpt, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((FIX / "config.json").read_text())
    ema = wetok.load(tmp_path)
    assert torch.equal(ema.encoder.conv_in.weight, model.encoder.conv_in.weight * 2)
    raw = wetok.load(tmp_path, use_ema=False)
    assert torch.equal(raw.encoder.conv_in.weight, model.encoder.conv_in.weight)


def test_load_reports_key_problems(tmp_path):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(FIX / "model.safetensors"))
    sd.pop("decoder.conv_in.bias")
    sd["encoder.conv_out.bias"] = torch.zeros(7)
    sd["encoder.bogus"] = torch.zeros(1)
    save_file(sd, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((FIX / "config.json").read_text())
    with pytest.raises(ValueError) as e:
        wetok.load(tmp_path)
    msg = str(e.value)
    assert "missing keys: decoder.conv_in.bias" in msg
    assert "unexpected keys: encoder.bogus" in msg
    assert "encoder.conv_out.bias: checkpoint (7,) vs model (32,)" in msg


@pytest.mark.slow
def test_onnx_export_matches_fixture(model, io, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from tokc.export.tokenizers import write_graphs

    enc, dec = (path for _, path in write_graphs(model, model.arch, tmp_path))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    idx, lat = ort.InferenceSession(str(enc), so).run(None, {"image": io["image"]})
    _assert_indices(idx, io)
    np.testing.assert_allclose(lat, io["encoder_out"], rtol=0, atol=ENC_ATOL)
    sess = ort.InferenceSession(str(dec), so)
    out = sess.run(None, {"indices": io["indices_lfq_bhwc"]})[0]
    np.testing.assert_allclose(out, io["decoded"], rtol=0, atol=DEC_ATOL)
    part = io["indices_lfq_bhwc"][:1, :8, :12]  # batch, height and width are dynamic
    np.testing.assert_allclose(sess.run(None, {"indices": part})[0],
                               model.decode(torch.from_numpy(part)).numpy(), rtol=0, atol=DEC_ATOL)
