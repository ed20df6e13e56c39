"""`tokc export --arch ARCH --checkpoint PATH -o DIR` on the parity fixtures (CliRunner)."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from parity_fixtures import fixture_folder

from tokc.cli import main

FOLDERS = {"one-d-piece": "one_d_piece", "titok-vq": "titok_vq_nonlegacy",
           "wavtokenizer": "wavtokenizer", "wetok": "wetok"}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def fixture(arch):
    return fixture_folder(FOLDERS[arch])


def test_usage_errors_are_one_line(tmp_path):
    ckpt = tmp_path / "missing"
    cases = [
        (["--arch", "wetok", "-o", tmp_path], "--arch and --checkpoint go together"),
        (["--checkpoint", tmp_path, "-o", tmp_path], "--arch and --checkpoint go together"),
        (["tokc-image-v1", "--arch", "wetok", "--checkpoint", tmp_path, "-o", tmp_path], "not both"),
        (["--arch", "wetok", "--checkpoint", ckpt, "-o", tmp_path], "no such file"),
        (["--arch", "wetok", "--checkpoint", tmp_path, "--precision", "fp16", "-o", tmp_path], "fp32 only"),
        (["--arch", "wetok", "--checkpoint", tmp_path, "--token-axis", "masked", "-o", tmp_path],
         "one-d-piece only"),
        (["--arch", "nope", "--checkpoint", tmp_path, "-o", tmp_path], "invalid value"),
        (["-o", tmp_path], "Missing argument 'MODEL'"),
        (["--arch", "wetok", "--checkpoint", tmp_path], "Missing option '-o'"),
    ]
    for args, message in cases:
        r = run("export", *args)
        assert r.exit_code == 2, (args, r.output)
        assert message.lower() in r.stderr.lower() and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_existing_outputs_refused_and_bad_checkpoint_fails_cleanly(tmp_path):
    folder = fixture("wetok")
    out = tmp_path / "out"
    out.mkdir()
    (out / "wetok.encoder.onnx").write_bytes(b"keep")
    r = run("export", "--arch", "wetok", "--checkpoint", folder, "-o", out)
    assert r.exit_code == 1 and "exists (use -f" in r.stderr
    assert (out / "wetok.encoder.onnx").read_bytes() == b"keep"
    # a checkpoint of another architecture: one line, exit 1, nothing written
    r = run("export", "--arch", "one-d-piece", "--checkpoint", folder, "-o", tmp_path / "x")
    assert r.exit_code == 1 and r.stderr.startswith("tokc: error:"), r.output
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def _check(out: Path, arch: str) -> dict:
    ort = pytest.importorskip("onnxruntime")
    side = json.loads((out / f"{arch}.onnx.json").read_text())
    assert side["arch"] == arch and side["opset"] == 18 and len(side["weights_sha256"]) == 64
    assert set(side["graphs"]) == {"encoder", "decoder"}
    for part, g in side["graphs"].items():
        sess = ort.InferenceSession(str(out / g["file"]), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == [i["name"] for i in g["inputs"]]
        assert [o.name for o in sess.get_outputs()] == [o["name"] for o in g["outputs"]]
        for i, spec in zip(sess.get_inputs(), g["inputs"], strict=True):
            assert list(i.shape) == spec["shape"], (part, i.shape, spec)  # named dynamic axes
        assert g["validation"]["validated_shapes"] != g["traced_shapes"]
        for v in g["validation"]["outputs"].values():
            assert v.get("tokens_equal") or v["max_abs_err"] < 1e-3
    assert not list(out.glob(".tokc-export-*"))
    return side


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["one-d-piece", "titok-vq", "wetok", "wavtokenizer"])
def test_export_each_arch(tmp_path, arch):
    folder = fixture(arch)
    out = tmp_path / "out"
    r = run("export", "--arch", arch, "--checkpoint", folder, "-o", out, "--json")
    assert r.exit_code == 0, r.output
    assert "max abs error vs PyTorch" in r.stderr
    side = _check(out, arch)
    assert json.loads(r.stdout) == side
    dims = {k: v for g in side["graphs"].values() for k, v in g["dynamic_axes"].items()}
    # every input with a dynamic axis has a batch axis (WavTokenizer's bandwidth_id (1,) has none)
    assert all("batch" in axes.values() for axes in dims.values() if axes)
    if arch == "one-d-piece":
        assert side["graphs"]["decoder"]["inputs"][0]["shape"] == ["batch", 1, "tokens"]
    if arch == "wetok":
        shape = side["graphs"]["encoder"]["inputs"][0]["shape"]
        assert shape[:2] == ["batch", 3] and shape[2].endswith("*height") and shape[3].endswith("*width")
    r = run("export", "--arch", arch, "--checkpoint", folder, "-o", out)
    assert r.exit_code == 1 and "exists" in r.stderr
    r = run("export", "--arch", arch, "--checkpoint", folder, "-o", out, "-f", "--quiet")
    assert r.exit_code == 0 and r.stderr == ""


@pytest.mark.slow
def test_one_d_piece_graphs_reproduce_fixture(tmp_path):
    """Exported One-D-Piece encoder gives the fixture's tokens, the prefix decoders its images;
    the masked decoder (fixed 8 slots + num_tokens) equals the dynamic one."""
    ort = pytest.importorskip("onnxruntime")
    folder = fixture("one-d-piece")
    io = dict(np.load(folder / "io.npz"))
    for axis in ("dynamic", "masked"):
        out = tmp_path / axis
        r = run("export", "--arch", "one-d-piece", "--checkpoint", folder, "-o", out, "--token-axis", axis)
        assert r.exit_code == 0, r.output
        side = _check(out, "one-d-piece")
        assert side["token_axis"] == axis
        enc = ort.InferenceSession(str(out / "one-d-piece.encoder.onnx"), providers=["CPUExecutionProvider"])
        dec = ort.InferenceSession(str(out / "one-d-piece.decoder.onnx"), providers=["CPUExecutionProvider"])
        tokens = enc.run(None, {"image": io["image"]})[0]
        np.testing.assert_array_equal(tokens, io["indices"])
        for k in (1, 3, 8):
            if axis == "dynamic":
                feeds = {"tokens": np.ascontiguousarray(tokens[:, :, :k])}
            else:
                feeds = {"tokens": tokens, "num_tokens": np.full((2,), k, dtype=np.int64)}
            image = dec.run(None, feeds)[0]
            assert np.abs(image - io[f"decoded_k{k}"]).max() < 1e-3


@pytest.mark.slow
def test_wavtokenizer_encoder_any_length(tmp_path):
    """The encoder graph takes any number of samples (LSTM as ONNX LSTM nodes, SEANet padding
    in the graph) and reproduces the fixture's codes; the decoder has no complex ops."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    folder = fixture("wavtokenizer")
    io = dict(np.load(folder / "io.npz"))
    r = run("export", "--arch", "wavtokenizer", "--checkpoint", folder, "-o", tmp_path)
    assert r.exit_code == 0, r.output
    enc_path = tmp_path / "wavtokenizer.encoder.onnx"
    dec_path = tmp_path / "wavtokenizer.decoder.onnx"
    assert "LSTM" in {n.op_type for n in onnx.load(str(enc_path)).graph.node}
    dec_ops = {n.op_type for n in onnx.load(str(dec_path)).graph.node}
    assert not dec_ops & {"DFT", "STFT", "Col2Im"}, dec_ops
    enc = ort.InferenceSession(str(enc_path), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(dec_path), providers=["CPUExecutionProvider"])
    codes, latents = enc.run(None, {"audio": io["audio"]})
    np.testing.assert_array_equal(codes, io["codes"])
    assert np.abs(latents - io["encoder_out"]).max() < 1e-4
    audio = dec.run(None, {"codes": io["codes"], "bandwidth_id": np.array([0], dtype=np.int64)})[0]
    assert np.abs(audio - io["audio_out_from_codes"]).max() < 1e-3
    from tokc.models import wavtokenizer as wt

    model = wt.load(folder)
    for n in (3000, 9601):
        x = io["audio"][:, :n]
        got = enc.run(None, {"audio": x})[0]
        np.testing.assert_array_equal(got, model.encode(torch_from(x)).numpy())


def torch_from(x):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))


def test_constraints_in_sidecar():
    from tokc.export import tokenizers
    from tokc.models import load_pretrained

    c = tokenizers.constraints(load_pretrained(fixture("one-d-piece")), "one-d-piece")
    assert c["num_tokens"] == 8 and c["decoder_tokens"] == "1..8" and c["image_size"] == [64, 64]
    c = tokenizers.constraints(load_pretrained(fixture("wavtokenizer")), "wavtokenizer")
    assert c["min_samples"] == 8 * c["hop"] and c["sample_rate"] == 24000
    c = tokenizers.constraints(load_pretrained(fixture("wetok")), "wetok")
    assert c["spatial_multiple"] == 4
