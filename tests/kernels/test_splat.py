"""splat forward and backward: Triton vs the dense reference and its autograd."""

import math

import pytest
import torch

from tokc.kernels import splat
from tokc.testing import assert_close

# (M, H, W, C): single pixel, odd maps, C above one channel block (64), Gaussians partly off-map
SHAPES = [(1, 1, 1, 1), (5, 17, 9, 3), (37, 23, 41, 5), (5, 17, 9, 70), (128, 64, 64, 3)]
SLOW_SHAPES = [(1024, 128, 128, 3), (4096, 256, 256, 8)]
HUGE_FOR_INTERPRETER = {(4096, 256, 256, 8)}


def gaussians(gen, m, c, dtype, device, grad=True):
    means = torch.rand(m, 2, generator=gen) * 2.2 - 1.1
    sigmas = torch.rand(m, 2, generator=gen) * 0.2 + 0.02
    rhos = torch.rand(m, generator=gen) * 1.6 - 0.8
    feats = torch.randn(m, c, generator=gen)
    return [t.to(dtype).to(device).requires_grad_(grad) for t in (means, sigmas, rhos, feats)]


def run(impl, params, h, w, grad_out):
    out = splat(*params, h, w, impl=impl)
    grads = torch.autograd.grad((out.float() * grad_out).sum(), params)
    return out, grads


def check(gen, device, m, h, w, c, dtype):
    params = gaussians(gen, m, c, dtype, device)
    grad_out = torch.randn(h, w, c, generator=gen).to(device)
    out, grads = run("triton", params, h, w, grad_out)
    ref_out, ref_grads = run("torch", params, h, w, grad_out)
    assert_close(out, ref_out, msg="out")
    for name, g, rg in zip(("means", "sigmas", "rhos", "features"), grads, ref_grads):
        assert_close(g, rg, op="splat_grad", msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("m,h,w,c", SHAPES)
def test_matches_reference_and_autograd(gen, device, needs_triton, m, h, w, c, dtype):
    check(gen, device, m, h, w, c, dtype)


def test_bf16_is_cast(gen, device, needs_triton):
    check(gen, device, 37, 23, 41, 5, torch.bfloat16)


@pytest.mark.slow
@pytest.mark.parametrize("m,h,w,c", SLOW_SHAPES)
def test_large(gen, device, needs_triton, m, h, w, c):
    if device == "cpu" and (m, h, w, c) in HUGE_FOR_INTERPRETER:
        pytest.skip("too slow for Triton's CPU interpreter (minutes); runs on a GPU")
    check(gen, device, m, h, w, c, torch.float32)


def test_only_some_inputs_need_grad(gen, device, needs_triton):
    means, sigmas, rhos, feats = gaussians(gen, 9, 4, torch.float32, device, grad=False)
    feats.requires_grad_(True)
    out = splat(means, sigmas, rhos, feats, 11, 13, impl="triton")
    (g,) = torch.autograd.grad(out.sum(), [feats])
    (rg,) = torch.autograd.grad(splat(means, sigmas, rhos, feats, 11, 13, impl="torch").sum(), [feats])
    assert_close(g, rg, op="splat_grad")


def test_reference_is_gpstoken_formula():
    """Pixel by pixel in float64 against the issue's formula, including the 3σ cut-off."""
    means = torch.tensor([[0.1, -0.2], [-0.71, 0.52]])  # no pixel exactly on a 3σ edge
    sigmas = torch.tensor([[0.3, 0.15], [0.1, 0.4]])
    rhos = torch.tensor([0.5, -0.3])
    feats = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    h, w = 7, 9
    out = splat(means, sigmas, rhos, feats, h, w, impl="torch")
    for i in range(h):
        for j in range(w):
            px, py = -1 + 2 * j / (w - 1), -1 + 2 * i / (h - 1)
            want = [0.0, 0.0]
            for (mx, my), (sx, sy), r, f in zip(means.tolist(), sigmas.tolist(), rhos.tolist(), feats.tolist()):
                dx, dy = px - mx, py - my
                if abs(dx) > 3 * sx or abs(dy) > 3 * sy:
                    continue
                e = (dx * dx / sx**2 - 2 * r * dx * dy / (sx * sy) + dy * dy / sy**2) / (2 * (1 - r * r))
                want = [a + math.exp(-e) * fc for a, fc in zip(want, f)]
            assert out[i, j].tolist() == pytest.approx(want, abs=1e-6), (i, j)


def test_cutoff_zeroes_outside(device, needs_triton):
    # one Gaussian at the centre with σ = 1/8 of the half-width: 3σ reaches 0.375
    params = [torch.tensor([[0.0, 0.0]]), torch.tensor([[0.125, 0.125]]), torch.tensor([0.0]),
              torch.tensor([[1.0]])]
    params = [p.to(device) for p in params]
    for impl in ("torch", "triton"):
        out = splat(*params, 33, 33, impl=impl)[..., 0].cpu()  # pixel pitch 1/16
        xs = torch.linspace(-1, 1, 33)
        inside = xs.abs() <= 0.375
        assert torch.all(out[~inside, :] == 0) and torch.all(out[:, ~inside] == 0), impl
        assert out[16, 16].item() == 1.0
        assert out[16, 22].item() == pytest.approx(math.exp(-0.5 * 3.0**2), rel=1e-5)  # exactly 3σ


def test_bad_shapes():
    with pytest.raises(ValueError, match="expected"):
        splat(torch.zeros(3, 2), torch.ones(3, 2), torch.zeros(2), torch.ones(3, 4), 5, 5, impl="torch")


def test_backward_with_gpu_tiles(gen, device, needs_triton, monkeypatch):
    """The GPU configurations (8x8 pixel tiles in the backward, at most 32 channels a program
    in the forward, 8 warps): check them in the interpreter too."""
    from tokc.kernels._dispatch import triton_module

    mod = triton_module("splat")
    default = mod._config

    def gpu_config(c, backward=False):
        with monkeypatch.context() as m:
            m.setattr(mod, "interpreting", lambda: False)
            return default(c, backward)

    assert gpu_config(70)[3] == 32 and gpu_config(70, True)[:2] == (8, 8)
    monkeypatch.setattr(mod, "_config", gpu_config)
    check(gen, device, 37, 23, 41, 5, torch.float32)
    check(gen, device, 5, 17, 9, 70, torch.float32)
