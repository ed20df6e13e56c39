"""`tokc export --arch gpstoken|flextok` on tiny random checkpoints in the official layouts
(there is no official parity fixture for either), and their exported folders run through
tokc.load_exported: the same tokens as torch, and FlexTok's sampler through ONNX Runtime (the
loop in numpy, tokc.runtimes.flow) equal to the torch sampler for the same noise."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("safetensors")

from click.testing import CliRunner  # noqa: E402
from tiny_tokenizers import (  # noqa: E402
    flextok_full_config,
    flextok_full_model,
    gpstoken_model,
    save_flextok_checkpoint,
    save_gpstoken_checkpoint,
)

import tokc  # noqa: E402
from tokc.cli import main  # noqa: E402
from tokc.models import load_pretrained  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def export(arch, ckpt, out):
    r = CliRunner().invoke(main, ["export", "--arch", arch, "--checkpoint", str(ckpt), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "max abs error" in r.stderr or r.stderr == "" or "tokc:" in r.stderr
    return json.loads((out / f"{arch}.onnx.json").read_text())


@pytest.fixture(scope="module")
def gps(tmp_path_factory):
    root = tmp_path_factory.mktemp("gps")
    ckpt = save_gpstoken_checkpoint(root / "ckpt", gpstoken_model(seed=2))
    side = export("gpstoken", ckpt, root / "out")
    return load_pretrained(ckpt, arch="gpstoken"), root / "out", side


@pytest.fixture(scope="module")
def flex(tmp_path_factory):
    root = tmp_path_factory.mktemp("flex")
    save_flextok_checkpoint(root / "ckpt", flextok_full_model(seed=3), flextok_full_config())
    side = export("flextok", root / "ckpt", root / "out")
    return load_pretrained(root / "ckpt", arch="flextok"), root / "out", side


def test_gpstoken_export_validates_with_a_dynamic_token_count(gps):
    _, out, side = gps
    assert sorted(p.name for p in out.iterdir()) == [
        "gpstoken.decoder.onnx", "gpstoken.encoder.onnx", "gpstoken.onnx.json"]
    enc, dec = side["graphs"]["encoder"], side["graphs"]["decoder"]
    assert [i["name"] for i in enc["inputs"]] == ["image", "init", "regions"]
    assert enc["dynamic_axes"]["init"] == {"0": "batch", "1": "tokens"}
    assert dec["dynamic_axes"]["tokens"] == {"0": "batch", "1": "tokens"}
    # validated at another batch and token count than traced
    assert enc["validation"]["validated_shapes"][1][:2] != enc["traced_shapes"][1][:2]
    assert dec["validation"]["validated_shapes"][0][:2] != dec["traced_shapes"][0][:2]
    assert side["constraints"]["layout"] == {"adaptive_weight": 2.5, "min_size": 2}


def test_gpstoken_runtime_matches_torch(gps):
    model, out, side = gps
    tok = tokc.load_exported(out)
    images = np.random.default_rng(7).uniform(-1, 1, (2, 3, 16, 20)).astype(np.float32)
    for n in (6, 3, 11):  # the default, fewer and more tokens than traced
        with torch.no_grad():
            want = model.encode(torch.from_numpy(images), num_tokens=n)
            pixels = model.decode(want).numpy()
        got = tok.encode(images, num_tokens=n)
        assert got.shape == (2, n, model.token_dim)
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(tok.decode(got), pixels, rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match=r"image must be \(batch, 3, 16, 20\)"):
        tok.encode(images[:, :, :8])


def test_flextok_export_has_every_graph(flex):
    _, out, side = flex
    assert sorted(side["graphs"]) == ["decoder", "encoder", "vae_decoder", "vae_encoder"]
    dec = side["graphs"]["decoder"]
    assert [i["name"] for i in dec["inputs"]] == ["latents", "timestep", "tokens", "guidance"]
    assert [o["name"] for o in dec["outputs"]] == ["v_cond", "v_uncond"]
    assert dec["dynamic_axes"]["tokens"] == {"0": "batch", "1": "tokens"}
    assert dec["validation"]["validated_shapes"][2] != dec["traced_shapes"][2]
    assert side["graphs"]["encoder"]["validation"]["outputs"]["tokens"]["tokens_equal"]
    assert side["constraints"]["latent_size"] == [8, 8] and side["constraints"]["max_tokens"] == 8


@pytest.mark.parametrize("guidance,apg", [(1.0, False), (2.5, False), (3.0, True)])
def test_flextok_sampler_through_onnx_runtime_matches_torch(flex, guidance, apg):
    model, out, _ = flex
    tok = tokc.load_exported(out)
    rng = np.random.default_rng(5)
    images = rng.uniform(-1, 1, (2, 3, 16, 16)).astype(np.float32)
    tokens = model.encode(torch.from_numpy(images), sample_posterior=False)
    np.testing.assert_array_equal(tok.encode(images), tokens.numpy())
    np.testing.assert_array_equal(tok.encode(images, num_tokens=3), tokens[:, :3].numpy())
    noise = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    for k in (8, 5, 1):  # prefixes of the token sequence
        want = model.decode_images(tokens[:, :k], steps=6, guidance=guidance, apg=apg,
                                   noise=torch.from_numpy(noise), latent_size=8).numpy()
        got = tok.decode(tokens[:, :k].numpy(), steps=6, guidance=guidance, apg=apg, noise=noise)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    # a seed draws numpy noise: the same seed gives the same image, another a different one
    a = tok.decode(tokens[:, :4].numpy(), steps=2, seed=1)
    np.testing.assert_array_equal(a, tok.decode(tokens[:, :4].numpy(), steps=2, seed=1))
    assert np.abs(a - tok.decode(tokens[:, :4].numpy(), steps=2, seed=2)).max() > 1e-3


def test_flextok_bad_tokens_are_clear_errors(flex):
    _, out, _ = flex
    tok = tokc.load_exported(out)
    for bad in (np.zeros((1, 9), np.int64), np.full((1, 2), 64000), np.zeros((1, 2), np.float32),
                np.zeros((1, 0), np.int64)):
        with pytest.raises(ValueError, match=r"tokens must be integers \(batch, 1..8\)"):
            tok.decode(bad, steps=1)


@pytest.mark.slow
def test_flextok_decoder_only_checkpoint_exports_what_it_has(tmp_path):
    from tiny_tokenizers import FLEXTOK_DEC, flextok_hub_config

    from tokc.models import flextok_decoder as fd
    from tokc.runtimes.errors import RuntimeUnavailable

    torch.manual_seed(0)
    cfg = flextok_hub_config()
    cfg["decoder"] = fd.decoder_config_dict(FLEXTOK_DEC)
    save_flextok_checkpoint(tmp_path / "ckpt", fd.FlexTokModel(FLEXTOK_DEC).eval(), cfg)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "flextok.vae_decoder.onnx").write_bytes(b"stale")  # from an earlier export
    r = CliRunner().invoke(main, ["export", "--arch", "flextok", "--checkpoint", str(tmp_path / "ckpt"),
                                  "-o", str(tmp_path / "out"), "-f"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["flextok.decoder.onnx", "flextok.onnx.json"]
    tok = tokc.load_exported(tmp_path / "out")
    latents = tok.decode(np.zeros((1, 3), np.int64), steps=2)
    assert latents.shape == (1, 4, 8, 8)
    with pytest.raises(RuntimeUnavailable, match="no vae_encoder graph"):
        tok.encode(np.zeros((1, 3, 16, 16), np.float32))


PROBE = """
import json, sys
sys.modules["torch"] = None
import numpy as np
import tokc
gps, flex, io = sys.argv[1:4]
io = np.load(io)
g = tokc.load_exported(gps)
f = tokc.load_exported(flex)
print(json.dumps({
    "gps_err": float(np.abs(g.encode(io["gps_images"], num_tokens=5) - io["gps_tokens"]).max()),
    "flex_tokens_equal": bool(np.array_equal(f.encode(io["flex_images"]), io["flex_tokens"])),
    "flex_err": float(np.abs(f.decode(io["flex_tokens"][:, :5], steps=4, guidance=2.0, noise=io["noise"])
                             - io["flex_decoded"]).max()),
    "torch_imported": sys.modules["torch"] is not None}))
"""


@pytest.mark.slow
def test_both_exports_run_without_torch(gps, flex, tmp_path):
    gmodel, gout, _ = gps
    fmodel, fout, _ = flex
    rng = np.random.default_rng(9)
    gi = rng.uniform(-1, 1, (1, 3, 16, 20)).astype(np.float32)
    fi = rng.uniform(-1, 1, (2, 3, 16, 16)).astype(np.float32)
    noise = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    with torch.no_grad():
        gt = gmodel.encode(torch.from_numpy(gi), num_tokens=5).numpy()
    ft = fmodel.encode(torch.from_numpy(fi), sample_posterior=False)
    fd = fmodel.decode_images(ft[:, :5], steps=4, guidance=2.0, noise=torch.from_numpy(noise), latent_size=8)
    np.savez(tmp_path / "io.npz", gps_images=gi, gps_tokens=gt, flex_images=fi, flex_tokens=ft.numpy(),
             noise=noise, flex_decoded=fd.numpy())
    res = subprocess.run([sys.executable, "-c", PROBE, str(gout), str(fout), str(tmp_path / "io.npz")],
                         capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(ROOT / "src")})
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["gps_err"] < 1e-4 and got["flex_tokens_equal"] and got["flex_err"] < 1e-4, got
    assert not got["torch_imported"]
