"""The published tokenizers' quantizer lookups go through tokc.kernels and give the parity
fixtures' indices exactly, with the torch reference and with Triton (interpreter on CPU)."""

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from parity_fixtures import fixture_folder  # noqa: E402

import tokc.kernels  # noqa: E402,F401
from tokc.models import titok, wavtokenizer, wetok  # noqa: E402

CASES = {  # folder -> (loader, input key, indices key)
    "one_d_piece": (titok.load, "image", "indices"),
    "titok_vq_nonlegacy": (titok.load, "image", "indices"),
    "wavtokenizer": (wavtokenizer.load, "audio", "codes"),
    "wetok": (wetok.load, "image", "indices_lfq_bhwc"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    folder = fixture_folder(request.param, "io.npz")
    load, x_key, idx_key = CASES[request.param]
    io = np.load(folder / "io.npz")
    return request.param, load(folder), torch.from_numpy(io[x_key]), io[idx_key]


def _count_dispatch(monkeypatch, op: str) -> list:
    """Record the ops each kernel dispatcher picked (torch or triton)."""
    seen = []
    mod = sys.modules[f"tokc.kernels.{op}"]
    choose = mod.choose

    def recording(impl, *tensors):
        picked = choose(impl, *tensors)
        seen.append(picked)
        return picked

    monkeypatch.setattr(mod, "choose", recording)
    return seen


@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_fixture_indices_through_kernels(case, impl, monkeypatch, device, request):
    name, model, x, want = case
    if impl == "triton":
        request.getfixturevalue("needs_triton")
    monkeypatch.setenv("TOKC_KERNEL_IMPL", impl)
    op = "lfq" if name == "wetok" else "vq_lookup"
    seen = _count_dispatch(monkeypatch, op)
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            got = model.to(device).encode(x.to(device)).cpu().numpy()
    finally:
        torch.set_num_threads(saved)
        model.to("cpu")
    assert seen == [impl]
    np.testing.assert_array_equal(got, want)
