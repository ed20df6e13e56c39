"""Safe checkpoint reading and the load_pretrained entry point."""

import collections
import importlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from parity_fixtures import FIXTURES  # noqa: E402

from tokc.models import checkpoints as ck  # noqa: E402
from tokc.models import load_pretrained  # noqa: E402

EXPECTED_ARCH = {
    "one_d_piece": "one-d-piece",
    "titok_vq_nonlegacy": "titok-vq",
    "wavtokenizer": "wavtokenizer",
    "wetok": "wetok",
}
needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"parity fixtures {FIXTURES} are absent"
)


class Opaque:  # a global that weights_only loading must refuse
    def __init__(self):
        self.x = 1


@needs_fixtures
@pytest.mark.parametrize("folder", sorted(EXPECTED_ARCH))
def test_detect_arch_from_fixture_configs(folder):
    path = FIXTURES / folder / "config.json"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    assert ck.detect_arch(ck.read_config(path)) == EXPECTED_ARCH[folder]


def test_detect_arch_rejects_unknown():
    with pytest.raises(ck.CheckpointError, match="cannot detect the architecture"):
        ck.detect_arch({"model": {"something": 1}})
    assert ck.detect_arch({"arch": "wetok"}) == "wetok"


def test_dispatch_table_uses_strings():
    assert set(ck.ARCHS) >= {"one-d-piece", "titok-vq", "wavtokenizer", "wetok"}
    for target in ck.ARCHS.values():
        module, func = target.split(":")
        assert module.startswith("tokc.models.") and func == "load"
    load = importlib.import_module("tokc.models.titok").load
    assert callable(load)


@needs_fixtures
@pytest.mark.parametrize("folder", ["one_d_piece", "titok_vq_nonlegacy"])
def test_load_pretrained_folder_and_file(folder):
    root = FIXTURES / folder
    if not (root / "io.npz").exists():
        pytest.skip(f"{root} is absent")
    io = np.load(root / "io.npz")
    for path in (root, root / "model.safetensors"):
        model = load_pretrained(path)
        assert not model.training and model.arch == EXPECTED_ARCH[folder]
        with torch.no_grad():
            idx = model.encode(torch.from_numpy(io["image"]))
        np.testing.assert_array_equal(idx.numpy(), io["indices"])
    assert load_pretrained(root, arch=EXPECTED_ARCH[folder]).arch == EXPECTED_ARCH[folder]


def test_load_pretrained_errors(tmp_path):
    with pytest.raises(ck.CheckpointError, match="no such file"):
        load_pretrained(tmp_path / "nope")
    with pytest.raises(ck.CheckpointError, match="unknown arch 'bogus'"):
        load_pretrained(tmp_path, arch="bogus")
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ck.CheckpointError, match="no config.json"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"arch": "one-d-piece"}))
    with pytest.raises(ValueError):
        load_pretrained(tmp_path)


def test_read_safetensors_and_errors(tmp_path):
    from safetensors.torch import save_file

    save_file({"a.weight": torch.ones(2, 3)}, str(tmp_path / "m.safetensors"))
    state = ck.read_state_dict(tmp_path / "m.safetensors")
    assert list(state) == ["a.weight"] and state["a.weight"].shape == (2, 3)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 7)
    with pytest.raises(ck.CheckpointError, match="cannot read safetensors"):
        ck.read_state_dict(tmp_path / "bad.safetensors")
    (tmp_path / "m.npz").write_bytes(b"")
    with pytest.raises(ck.CheckpointError, match="unknown checkpoint format"):
        ck.read_state_dict(tmp_path / "m.npz")


def test_read_bin_and_lightning_ckpt(tmp_path):
    weights = collections.OrderedDict(
        [
            ("model.conv.weight_g", torch.ones(4, 1, 1)),
            ("model.conv.weight_v", torch.randn(4, 2, 3)),
            ("model.conv.bias", torch.zeros(4)),
            ("discriminator.w", torch.zeros(1)),
        ]
    )
    ckpt = {
        "state_dict": weights,
        "epoch": 3,
        "global_step": 1000,
        "hyper_parameters": {"lr": 1e-4, "name": "x", "sizes": [1, 2]},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4}]}],
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    state = ck.read_state_dict(tmp_path / "last.ckpt", prefix="model.")
    assert sorted(state) == ["conv.bias", "conv.weight_g", "conv.weight_v"]  # weight norm kept
    torch.testing.assert_close(state["conv.weight_v"], weights["model.conv.weight_v"])
    assert len(ck.read_state_dict(tmp_path / "last.ckpt")) == 4
    with pytest.raises(ck.CheckpointError, match="no key starts with 'encoder.'"):
        ck.read_state_dict(tmp_path / "last.ckpt", prefix="encoder.")

    torch.save(
        {"module.a": torch.ones(1), "module.b": torch.ones(2)}, tmp_path / "pytorch_model.bin"
    )
    assert sorted(ck.read_state_dict(tmp_path / "pytorch_model.bin")) == ["a", "b"]
    config, weights_path = ck.resolve(tmp_path)  # folder without config: bin found
    assert config is None and weights_path.name == "pytorch_model.bin"


def test_pickle_with_foreign_global_is_refused(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(1)}, "callback": Opaque()}, tmp_path / "evil.ckpt")
    with pytest.raises(ck.CheckpointError) as info:
        ck.read_state_dict(tmp_path / "evil.ckpt")
    msg = str(info.value)
    assert "refused" in msg and "Opaque'" in msg and "weights_only" in msg
    (tmp_path / "junk.bin").write_bytes(b"garbage")
    with pytest.raises(ck.CheckpointError, match="not a readable checkpoint"):
        ck.read_state_dict(tmp_path / "junk.bin")


def test_load_state_dict_into_reports_all(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    state = {"0.weight": torch.zeros(4, 3), "0.bias": torch.zeros(5), "2.weight": torch.zeros(1)}
    with pytest.raises(ck.CheckpointError) as info:
        ck.load_state_dict_into(model, state, source="x.safetensors")
    msg = str(info.value)
    assert msg.startswith("x.safetensors does not fit Sequential")
    assert "1.weight" in msg and "1.bias" in msg and "missing keys (2)" in msg
    assert "unexpected keys (1)" in msg and "2.weight" in msg
    assert "0.bias: checkpoint (5,) vs model (4,)" in msg
    good = {k: torch.full_like(v, 0.5, dtype=torch.float16) for k, v in model.state_dict().items()}
    ck.load_state_dict_into(model, good)
    assert model[0].weight.dtype == torch.float32 and float(model[0].weight.detach()[0, 0]) == 0.5
