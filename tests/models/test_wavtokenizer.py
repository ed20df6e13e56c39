"""WavTokenizer against the official parity fixture (shared/fixtures/wavtokenizer)."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from parity_fixtures import FIXTURES, needs_fixture  # noqa: E402

from tokc.models import wavtokenizer as wt  # noqa: E402

FIX = FIXTURES / "wavtokenizer"
pytestmark = needs_fixture("wavtokenizer")
AUDIO_ATOL = 1e-5
FEAT_ATOL = 1e-6
# the encoder's float32 latents: one of 2,432 values moved by 1.24e-6 with this venv's BLAS
# (numpy 2.4 / torch 2.13 CPU); the tokens themselves are compared exactly
LATENT_ATOL = 5e-6


@pytest.fixture(scope="module")
def io():
    return dict(np.load(FIX / "io.npz"))


@pytest.fixture(scope="module")
def model():
    return wt.load(FIX, arch="wavtokenizer")


def test_config_from_fixture(model):
    c = model.config
    assert (c.n_filters, c.dimension, c.codebook_size, c.hop, c.n_fft) == (4, 64, 32, 320, 1280)


def test_encode_matches_fixture(model, io):
    audio = torch.from_numpy(io["audio"])
    lat = model.encode_latents(audio)
    np.testing.assert_allclose(lat.numpy(), io["encoder_out"], rtol=0, atol=LATENT_ATOL)
    codes = model.encode(audio)
    assert codes.dtype == torch.int64 and tuple(codes.shape) == io["codes"].shape
    np.testing.assert_array_equal(codes.numpy(), io["codes"])
    feats = model.codes_to_features(codes)
    np.testing.assert_allclose(feats.numpy(), io["features"], rtol=0, atol=FEAT_ATOL)
    np.testing.assert_allclose(feats.numpy(), io["features_from_codes"], rtol=0, atol=FEAT_ATOL)


def test_decode_matches_fixture(model, io):
    feats = torch.from_numpy(io["features"])
    with torch.no_grad():
        bb = model.backbone(feats, 0)
        np.testing.assert_allclose(bb.numpy(), io["backbone_out"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(model.head.out(bb).numpy(), io["head_linear_out"], rtol=0, atol=1e-5)
    out = model.decode(torch.from_numpy(io["codes"]))
    assert tuple(out.shape) == io["audio_out"].shape == (1, 38 * 320)
    np.testing.assert_allclose(out.numpy(), io["audio_out"], rtol=0, atol=AUDIO_ATOL)
    np.testing.assert_allclose(out.numpy(), io["audio_out_from_codes"], rtol=0, atol=AUDIO_ATOL)


def _reference_istft(spec: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """The official "same" ISTFT written with complex irfft and fold (test oracle only)."""
    window = torch.hann_window(n_fft)
    t = spec.shape[-1]
    frames = torch.fft.irfft(spec, n_fft, dim=1, norm="backward") * window[None, :, None]
    size = (t - 1) * hop + n_fft
    pad = (n_fft - hop) // 2
    fold = torch.nn.functional.fold
    y = fold(frames, output_size=(1, size), kernel_size=(1, n_fft), stride=(1, hop))[:, 0, 0, pad:-pad]
    env = window.square().expand(1, t, -1).transpose(1, 2)
    env = fold(env, output_size=(1, size), kernel_size=(1, n_fft), stride=(1, hop)).squeeze()[pad:-pad]
    return y / env


@pytest.mark.parametrize("n_fft,hop,frames", [(1280, 320, 7), (2400, 600, 5), (2400, 600, 1)])
def test_istft_matches_complex_reference(n_fft, hop, frames):
    g = torch.Generator().manual_seed(0)
    nb = n_fft // 2 + 1
    mag = torch.rand(2, nb, frames, generator=g) * 3
    p = torch.randn(2, nb, frames, generator=g) * 3
    ref = _reference_istft(mag * torch.exp(1j * p), n_fft, hop)
    ours = wt.ISTFT(n_fft, hop)((mag * torch.cos(p)).transpose(1, 2), (mag * torch.sin(p)).transpose(1, 2))
    assert ours.shape == ref.shape == (2, frames * hop)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=0, atol=1e-5)


def _config_40hz() -> dict:
    cfg = json.loads((FIX / "config.json").read_text())
    init = cfg["model"]["init_args"]
    init["feature_extractor"]["init_args"]["dowmsamples"] = [6, 5, 5, 4]
    init["head"]["init_args"].update(n_fft=2400, hop_length=600)
    return cfg


def test_40hz_layout_odd_length():
    """hop 600 / n_fft 2400 (strides 6,5,5,4) with an input length that is not a multiple of hop."""
    cfg = wt.config_from(_config_40hz(), {})
    assert cfg.hop == 600 and cfg.n_fft == 2400
    cfg = wt.WavTokenizerConfig(**{**cfg.__dict__, "codebook_size": 32, "dimension": 64,
                                   "input_channels": 64})
    torch.manual_seed(0)
    m = wt.WavTokenizer(cfg).eval()
    with torch.no_grad():
        m.quantizer.vq.layers[0]._codebook.embed.normal_()
    audio = torch.randn(2, 600 * 7 + 123) * 0.3
    codes = m.encode(audio)
    assert codes.shape == (1, 2, 8) and codes.dtype == torch.int64
    out = m.decode(codes)
    assert out.shape == (2, 8 * 600) and torch.isfinite(out).all()
    short = m.encode(torch.randn(1, 5) * 0.3)  # shorter than every pad: zero-then-reflect fallback
    assert short.shape == (1, 1, 1)


def test_load_reports_key_problems(tmp_path):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(FIX / "model.safetensors"))
    sd.pop("backbone.embed.bias")
    sd["backbone.norm.scale.weight"] = torch.zeros(3, 64)
    sd["backbone.extra.weight"] = torch.zeros(1)
    save_file(sd, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((FIX / "config.json").read_text())
    with pytest.raises(ValueError) as e:
        wt.load(tmp_path)
    msg = str(e.value)
    assert "missing keys: backbone.embed.bias" in msg
    assert "unexpected keys: backbone.extra.weight" in msg
    assert "backbone.norm.scale.weight: checkpoint (3, 64) vs model (4, 64)" in msg
    with pytest.raises(ValueError, match="not 'wavtokenizer'"):
        wt.load(FIX, arch="wetok")


@pytest.mark.slow
def test_onnx_export_matches_fixture(model, io, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from tokc.export.tokenizers import write_graphs

    enc, dec = (path for _, path in write_graphs(model, model.arch, tmp_path))
    ops = {n.op_type for p in (enc, dec) for n in onnx.load(str(p)).graph.node}
    assert not ops & {"DFT", "STFT", "Col2Im"}, ops  # the encoder's LSTM is ONNX LSTM nodes
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    codes, lat = ort.InferenceSession(str(enc), so).run(None, {"audio": io["audio"]})
    np.testing.assert_array_equal(codes, io["codes"])
    np.testing.assert_allclose(lat, io["encoder_out"], rtol=0, atol=1e-5)
    sess = ort.InferenceSession(str(dec), so)
    bw = np.array([model.bandwidth_id], dtype=np.int64)
    audio = sess.run(None, {"codes": io["codes"], "bandwidth_id": bw})[0]
    np.testing.assert_allclose(audio, io["audio_out"], rtol=0, atol=AUDIO_ATOL)
    part = io["codes"][:, :, :17]  # the frame axis is dynamic
    np.testing.assert_allclose(sess.run(None, {"codes": part, "bandwidth_id": bw})[0],
                               model.decode(torch.from_numpy(part)).numpy(), rtol=0, atol=AUDIO_ATOL)


def test_unrolled_lstm_matches_nn_lstm(model):
    slstm = model.encoder.model[13]
    seq = torch.randn(11, 2, slstm.lstm.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, _ = slstm.lstm(seq)
        np.testing.assert_allclose(slstm.unrolled(seq).numpy(), ref.numpy(), rtol=0, atol=1e-5)


def test_decoder_graph_takes_the_bandwidth_id(model, io, tmp_path):
    """The adaptive layer norms' row is a graph input: with rows that differ, the ONNX decoder
    at ids 0 and 3 gives the torch decode at each (within the export's tolerance), and the two
    differ (the export once folded id 0 in as a constant)."""
    import copy

    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from tokc.export import tokenizers

    m = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(("scale.weight", "shift.weight")):
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
    graph = next(g for g in wt.onnx_graphs(m) if g.part == "decoder")
    assert graph.inputs == ("codes", "bandwidth_id")
    path = tmp_path / "decoder.onnx"
    tokenizers.trace(graph, path, tokenizers.OPSET)
    report = tokenizers.validate(path, graph)  # validated at the last id, 3
    assert graph.checked[1].tolist() == [3] and report["outputs"]["audio"]["max_abs_err"] < 1e-3
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    codes = io["codes"][:, :, :20]
    outs = {}
    for bw in (0, 3):
        got = sess.run(None, {"codes": codes, "bandwidth_id": np.array([bw], dtype=np.int64)})[0]
        with torch.no_grad():
            want = m.decode(torch.from_numpy(codes), bandwidth_id=bw).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=tokenizers.TOLERANCE[0] + 1e-3 * np.abs(want).max())
        outs[bw] = got
    assert np.abs(outs[0] - outs[3]).max() > 1e-3
