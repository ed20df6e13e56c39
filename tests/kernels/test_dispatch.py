import subprocess
import sys

import pytest
import torch

import tokc.kernels as K
from tokc.kernels import _dispatch
from tokc.kernels._dispatch import choose


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("TOKC_KERNEL_IMPL", raising=False)


def test_automatic_choice_is_reference_on_cpu():
    assert choose(None, torch.zeros(3)) == "torch"


def test_env_forces_and_argument_wins(monkeypatch, needs_triton, device):
    t = torch.zeros(3, device=device)  # CPU tensors under the interpreter, CUDA ones compiled
    monkeypatch.setenv("TOKC_KERNEL_IMPL", "torch")
    assert choose(None, t) == "torch"
    monkeypatch.setenv("TOKC_KERNEL_IMPL", "triton")
    assert choose(None, t) == "triton"
    assert choose("torch", t) == "torch"
    monkeypatch.setenv("TOKC_KERNEL_IMPL", "auto")
    assert choose(None, t) == ("triton" if t.is_cuda else "torch")


def test_unknown_impl_raises(monkeypatch):
    with pytest.raises(ValueError, match="impl must be"):
        choose("cuda", torch.zeros(3))
    monkeypatch.setenv("TOKC_KERNEL_IMPL", "numba")
    with pytest.raises(ValueError, match="impl must be"):
        K.vq_lookup(torch.zeros(2, 3), torch.zeros(4, 3))


def test_explicit_triton_that_cannot_run_raises(monkeypatch):
    monkeypatch.setattr(_dispatch, "triton_available", lambda: False)
    x, cb = torch.randn(4, 3), torch.randn(5, 3)
    with pytest.raises(RuntimeError, match="triton is not installed"):
        K.vq_lookup(x, cb, impl="triton")
    monkeypatch.setenv("TOKC_KERNEL_IMPL", "triton")
    with pytest.raises(RuntimeError, match="unavailable"):
        K.vq_lookup(x, cb)
    # the automatic choice falls back silently
    monkeypatch.delenv("TOKC_KERNEL_IMPL")
    assert torch.equal(K.vq_lookup(x, cb), K.vq_lookup(x, cb, impl="torch"))


def test_cpu_tensors_without_interpreter_raise(monkeypatch, needs_triton):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        choose("triton", torch.zeros(3))
    assert choose(None, torch.zeros(3)) == "torch"


def test_tracing_uses_the_reference(monkeypatch, needs_triton):
    """Export traces the reference even when the environment prefers Triton."""
    monkeypatch.setenv("TOKC_KERNEL_IMPL", "triton")
    cb = torch.randn(7, 4)

    class Quantize(torch.nn.Module):
        def forward(self, x):
            return K.indices_to_codes(K.vq_lookup(x, cb), cb)

    exported = torch.export.export(Quantize(), (torch.randn(5, 4),))
    targets = {str(n.target) for n in exported.graph.nodes}
    assert any("argmin" in t for t in targets), targets
    x = torch.randn(5, 4)
    assert torch.equal(exported.module()(x), Quantize()(x))
    monkeypatch.setattr(_dispatch, "_tracing", lambda: True)
    assert choose(None, x) == "torch"
    with pytest.raises(RuntimeError, match="tracing"):
        choose("triton", x)


def test_tokc_kernels_import_and_run_without_triton():
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch, tokc, tokc.kernels as K\n"
        "assert not K.triton_available()\n"
        "x, cb = torch.randn(6, 4), torch.randn(9, 4)\n"
        "assert K.vq_lookup(x, cb).shape == (6,)\n"
        "assert K.fsq_quantize(torch.randn(3, 4), [8, 5, 5, 5])[1].shape == (3,)\n"
        "assert K.lfq_quantize(torch.randn(3, 16))[1].shape == (3, 2)\n"
        "assert K.splat(torch.zeros(1, 2), torch.ones(1, 2), torch.zeros(1), torch.ones(1, 3), 4, 5).shape == (4, 5, 3)\n"
        "assert K.flow_step(x, x, x, 0.1, 2.0).shape == x.shape\n"
        "try:\n"
        "    K.vq_lookup(x, cb, impl='triton')\n"
        "except RuntimeError:\n"
        "    print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
