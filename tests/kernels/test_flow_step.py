"""flow_step (Euler / Heun, CFG / APG) and flow_decode: Triton vs reference."""

import math

import pytest
import torch

from tokc.kernels import flow_decode, flow_step
from tokc.testing import assert_close

SHAPES = [(1, 1), (1, 3, 5, 7), (5, 123, 77), (2, 3, 64, 64)]
SLOW_SHAPES = [(8, 3, 256, 256)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
VARIANTS = [
    dict(mode="cfg"),
    dict(mode="cfg", heun=True),
    dict(mode="cfg", no_uncond=True),
    dict(mode="apg"),
    dict(mode="apg", heun=True, apg_eta=0.3),
    dict(mode="apg", apg_eta=0.5, apg_norm_threshold=2.0),
]


def tensors(gen, shape, dtype, device, n=4):
    return [torch.randn(*shape, generator=gen).to(dtype).to(device) for _ in range(n)]


def call(impl, x, vc, vu, xp, variant, dt=0.125, w=4.5):
    kw = {k: v for k, v in variant.items() if k in ("mode", "apg_eta", "apg_norm_threshold")}
    return flow_step(x, vc, None if variant.get("no_uncond") else vu, dt, w, impl=impl,
                     x_pred=xp if variant.get("heun") else None, **kw)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(gen, device, needs_triton, shape, dtype, variant):
    x, vc, vu, xp = tensors(gen, shape, dtype, device)
    got = call("triton", x, vc, vu, xp, variant)
    want = call("torch", x, vc, vu, xp, variant)
    assert got.dtype == dtype and got.shape == x.shape
    assert_close(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS[:1] + VARIANTS[3:4])
@pytest.mark.parametrize("shape", SLOW_SHAPES)
def test_large(gen, device, needs_triton, shape, variant):
    x, vc, vu, xp = tensors(gen, shape, torch.float32, device)
    assert_close(call("triton", x, vc, vu, xp, variant), call("torch", x, vc, vu, xp, variant))


def test_reference_formulas(gen):
    x, vc, vu, xp = tensors(gen, (3, 4, 5), torch.float64, "cpu")
    dt, w = 0.25, 3.0
    v = vu + w * (vc - vu)
    assert torch.allclose(flow_step(x, vc, vu, dt, w, impl="torch"), x - dt * v)
    assert torch.allclose(flow_step(x, vc, None, dt, w, impl="torch"), x - dt * vc)
    assert torch.allclose(flow_step(x, vc, vu, dt, 1.0, impl="torch"), x - dt * vc)
    # Heun corrector with x_pred = x - dt·v1 equals x - dt·(v1 + v2)/2
    v1 = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    heun = flow_step(x, vc, vu, dt, w, impl="torch", x_pred=x - dt * v1)
    assert torch.allclose(heun, x - dt * (v1 + v) / 2)
    # APG with η = 1 and no rescaling is CFG; with η = 0 the update is orthogonal to v_c
    apg1 = flow_step(x, vc, vu, dt, w, impl="torch", mode="apg", apg_eta=1.0)
    assert torch.allclose(apg1, x - dt * v)
    v0 = (x - flow_step(x, vc, vu, dt, w, impl="torch", mode="apg")) / dt
    update = (v0 - vc).reshape(3, -1)
    assert torch.allclose((update * vc.reshape(3, -1)).sum(1), torch.zeros(3, dtype=torch.float64), atol=1e-4)  # fp32 math
    # the norm threshold caps ||v_c - v_u|| per sample
    capped = (x - flow_step(x, vc, vu, dt, 2.0, impl="torch", mode="apg", apg_eta=1.0,
                            apg_norm_threshold=0.5)) / dt - vc
    assert torch.allclose(capped.reshape(3, -1).norm(dim=1), torch.full((3,), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_flow_decode_closed_form(method):
    """dx/dt = x from t=1 to 0: Euler multiplies by (1 − dt), Heun by (1 − dt + dt²/2)."""
    x0 = torch.ones(2, 3, dtype=torch.float64)
    steps, dt = 8, 1 / 8
    got = flow_decode(lambda x, t: x, x0, steps, method=method, impl="torch")
    factor = (1 - dt) if method == "euler" else (1 - dt + dt * dt / 2)
    assert torch.allclose(got, x0 * factor**steps)
    assert abs(got[0, 0].item() - math.exp(-1)) < (0.03 if method == "euler" else 2e-3)


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("mode", ["cfg", "apg"])
def test_flow_decode_triton_matches(gen, device, needs_triton, method, mode):
    x0 = torch.randn(2, 3, 16, 16, generator=gen).to(device)
    times = []

    def velocity(x, t):
        times.append(t)
        return x * 0.5 + t, x * 0.1 - t

    kw = dict(guidance=3.0, method=method, mode=mode, apg_eta=0.2)
    got = flow_decode(velocity, x0, 4, impl="triton", **kw)
    assert len(times) == (4 if method == "euler" else 8)
    assert times[0] == 1.0 and min(times) == pytest.approx(0.0 if method == "heun" else 0.25)
    assert_close(got, flow_decode(velocity, x0, 4, impl="torch", **kw))


def test_bad_arguments(gen):
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="mode"):
        flow_step(x, x, x, 0.1, 2.0, mode="pag")
    with pytest.raises(ValueError, match="shape"):
        flow_step(x, torch.zeros(2, 4), x, 0.1, 2.0)
    with pytest.raises(ValueError, match="method"):
        flow_decode(lambda x, t: x, x, 4, method="rk4")


@pytest.mark.parametrize("variant", VARIANTS)
def test_numpy_twin_matches_the_reference(variant):
    """tokc.runtimes.flow (numpy, for runtimes without torch) computes the reference's step."""
    from tokc.runtimes import flow

    gen = torch.Generator().manual_seed(3)
    for shape in SHAPES:
        x, vc, vu, xp = tensors(gen, shape, torch.float32, "cpu")
        want = call("torch", x, vc, vu, xp, variant)
        kw = {k: v for k, v in variant.items() if k in ("mode", "apg_eta", "apg_norm_threshold")}
        got = flow.flow_step(x.numpy(), vc.numpy(), None if variant.get("no_uncond") else vu.numpy(), 0.125,
                             4.5, x_pred=xp.numpy() if variant.get("heun") else None, **kw)
        assert got.dtype == x.numpy().dtype
        torch.testing.assert_close(torch.from_numpy(got), want, atol=2e-5, rtol=2e-5)


def test_numpy_twin_decode_matches_flow_decode():
    from tokc.runtimes import flow

    gen = torch.Generator().manual_seed(4)
    a = torch.randn(1, 2, 4, 4, generator=gen)
    x0 = torch.randn(3, 2, 4, 4, generator=gen)
    for method in ("euler", "heun"):
        want = flow_decode(lambda x, t: (x * t + a, 0.5 * x), x0, 5, guidance=2.0, method=method, impl="torch")
        got = flow.flow_decode(lambda x, t: (x * t + a.numpy(), 0.5 * x), x0.numpy(), 5, guidance=2.0,
                               method=method)
        torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-5, rtol=1e-5)
