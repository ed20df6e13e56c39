"""`tokc inspect` on the parity fixtures (real official-layout checkpoints) and on bad input."""

import json
import math
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from parity_fixtures import fixture_folder

from tokc.cli import main

EXPECTED = {  # folder -> (arch, sizes that must appear), from each fixture's config.json
    "one_d_piece": ("one-d-piece", {"tokens": 8, "codebook_size": 64, "codebook_dim": 12,
                                    "image_size": 64}),
    "titok_vq_nonlegacy": ("titok-vq", {"tokens": 8, "codebook_size": 64, "codebook_dim": 12}),
    "wavtokenizer": ("wavtokenizer", {"codebook_size": 32, "codebook_dim": 64, "hop": 320,
                                      "sample_rate": 24000, "tokens_per_second": 75.0}),
    "wetok": ("wetok", {"codebook_size": 256, "codebook_groups": 4, "bits_per_group": 8,
                        "token_grid": "16 x 16", "ch": 32}),
}


def runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click 8.1
    except TypeError:
        return CliRunner()  # click >= 8.2 keeps stderr apart


def _one_error_line(result, code: int, match: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tokc: error: "), result.stderr
    assert match in lines[0]
    assert "Traceback" not in result.output + result.stderr


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_inspect_fixture(name):
    folder = fixture_folder(name)
    arch, sizes = EXPECTED[name]
    result = runner().invoke(main, ["inspect", str(folder), "--json"])
    assert result.exit_code == 0, result.output + str(result.exception)
    d = json.loads(result.stdout)
    assert d["arch"] == arch and d["format"] == "safetensors"
    for k, v in sizes.items():
        assert d["sizes"][k] == v, (k, d["sizes"])
    # the parameter count is every tensor element in the file, counted independently here
    st = pytest.importorskip("safetensors.numpy")
    tensors = st.load_file(str(folder / "model.safetensors"))
    assert d["parameters"] == sum(math.prod(t.shape) for t in tensors.values())
    assert d["tensors"] == len(tensors)
    # text form; the weights file given directly finds config.json beside it
    text = runner().invoke(main, ["inspect", str(folder / "model.safetensors")])
    assert text.exit_code == 0
    assert text.stdout.splitlines()[1].split() == ["arch", arch]
    assert f"{d['parameters']} (" in text.stdout


def test_inspect_bad_inputs(tmp_path):
    _one_error_line(runner().invoke(main, ["inspect", str(tmp_path / "missing")]), 2, "no such file")
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    _one_error_line(runner().invoke(main, ["inspect", str(bad)]), 1, "not a safetensors file")
    bad.write_bytes(b"\xff" * 4)
    _one_error_line(runner().invoke(main, ["inspect", str(bad)]), 1, "shorter than 8 bytes")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    _one_error_line(runner().invoke(main, ["inspect", str(txt)]), 1, "unknown checkpoint format")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_error_line(runner().invoke(main, ["inspect", str(empty)]), 1, "no weights found")
    _one_error_line(runner().invoke(main, ["inspect", str(empty), "--arch", "nope"]), 2, "unknown arch")


def test_inspect_needs_arch_without_config(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    np = pytest.importorskip("numpy")
    st.save_file({"w": np.zeros((3, 4), np.float32)}, str(tmp_path / "model.safetensors"))
    _one_error_line(runner().invoke(main, ["inspect", str(tmp_path)]), 1, "pass --arch")
    # a forced arch that does not fit the tensors is one clear line too
    _one_error_line(runner().invoke(main, ["inspect", str(tmp_path), "--arch", "gpstoken"]), 1,
                    "does not look like a gpstoken checkpoint")


def test_inspect_gpstoken(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from tokc.models.gpstoken import GPSToken, GPSTokenConfig

    tiny = GPSTokenConfig(num_tokens=6, rois=2, enc_layers=2, enc_width=16, enc_heads=2,
                          feature_dim=4, render_size=(8, 8), pre_channels=8, pre_temb_channels=8,
                          ch=8, ch_mult=(1, 2), num_res_blocks=1, resolution=16, num_groups=4)
    model = GPSToken(tiny)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(tiny.to_official()))
    result = runner().invoke(main, ["inspect", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output + str(result.exception)
    d = json.loads(result.stdout)
    assert d["arch"] == "gpstoken"
    assert d["sizes"]["tokens"] == 6 and d["sizes"]["token_dim"] == 9
    assert d["sizes"]["encoder"] == {"width": 16, "layers": 2, "rois": 2}
    assert d["parameters"] == sum(t.numel() for t in model.state_dict().values())
    del torch


def test_inspect_flextok_metadata_is_data(tmp_path, monkeypatch):
    st = pytest.importorskip("safetensors.numpy")
    np = pytest.importorskip("numpy")
    probe = "tokc_inspect_probe_module"
    marker = tmp_path / "imported.txt"
    (tmp_path / f"{probe}.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    config = {  # a FlexTok hub config's layout, tiny sizes, every class path in the probe module
        "vae": {"_target_": f"{probe}.StableDiffusionVAE"},
        "encoder": {"_target_": f"{probe}.SequentialModuleDictWrapper", "module_dict": {
            "enc_register_module": {"_target_": f"{probe}.Registers1D", "n_min": 1, "n_max": 256},
            "enc_transformer": {"_target_": f"{probe}.FlexTransformer", "dim": 64, "depth": 3}}},
        "decoder": {"_target_": f"{probe}.SequentialModuleDictWrapper", "module_dict": {}},
        "regularizer": {"_target_": f"{probe}.FSQ", "levels": [8, 8, 8, 5, 5, 5]},
        "_target_": f"{probe}.FlexTok",
    }
    meta = {k: str(v) for k, v in config.items()}
    st.save_file({"regularizer.dummy": np.zeros(5, np.float32)}, str(ckpt / "model.safetensors"),
                 metadata=meta)
    result = runner().invoke(main, ["inspect", str(ckpt / "model.safetensors"), "--json"])
    assert result.exit_code == 0, result.output + str(result.exception)
    d = json.loads(result.stdout)
    assert d["arch"] == "flextok" and d["config"] is None
    assert d["sizes"]["fsq_levels"] == [8, 8, 8, 5, 5, 5] and d["sizes"]["codebook_size"] == 64000
    assert d["sizes"]["tokens"] == 256
    assert d["sizes"]["encoder"] == {"width": 64, "layers": 3}
    assert probe not in sys.modules and not marker.exists()


def test_inspect_pickled_checkpoints(tmp_path):
    torch = pytest.importorskip("torch")
    from tokc.models.gpstoken import GPSToken, GPSTokenConfig

    tiny = GPSTokenConfig(num_tokens=5, rois=2, enc_layers=1, enc_width=8, enc_heads=2,
                          feature_dim=4, render_size=(4, 4), pre_channels=4, pre_temb_channels=4,
                          ch=4, ch_mult=(1, 2), num_res_blocks=1, resolution=8, num_groups=2)
    state = GPSToken(tiny).state_dict()
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "model.ckpt")  # Lightning layout
    (tmp_path / "config.json").write_text(json.dumps(tiny.to_official()))
    result = runner().invoke(main, ["inspect", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output + str(result.exception)
    d = json.loads(result.stdout)
    assert d["format"] == "torch (weights_only)" and d["arch"] == "gpstoken"
    assert d["parameters"] == sum(t.numel() for t in state.values())
    # a pickle that needs an arbitrary global is refused, in one line
    evil = tmp_path / "evil"
    evil.mkdir()
    torch.save({"state_dict": state, "cfg": Path("x")}, evil / "model.ckpt")
    (evil / "config.json").write_text(json.dumps(tiny.to_official()))
    _one_error_line(runner().invoke(main, ["inspect", str(evil)]), 1, "refused")
