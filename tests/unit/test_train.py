"""The training entry point runs, checkpoints and resumes (tiny model, tiny synthetic data)."""

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")


def test_train_resumes_from_its_checkpoint(tmp_path):
    from tokc.train.image import TRAIN_DIRS, main

    rng = np.random.default_rng(0)
    for d in TRAIN_DIRS:
        (tmp_path / "data" / d).mkdir(parents=True)
        for i in range(3):
            img = rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / "data" / d / f"{i}.png")
    out = tmp_path / "run"
    common = ["--data", str(tmp_path / "data"), "--out", str(out), "--n", "8", "--m", "12",
              "--batch", "2", "--crop", "64", "--threads", "1", "--ckpt-every", "2",
              "--val-every", "2"]
    main([*common, "--iters", "2"])
    main([*common, "--iters", "4"])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]
    assert all(np.isfinite(r["loss"]) and "val" in r for r in log)
    assert (out / "ckpt.pt").exists() and not (out / "ckpt.tmp").exists()


def test_widen_latents_keeps_the_trained_channels():
    import torch

    from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior
    from tokc.train.surgery import widen_latents

    torch.manual_seed(0)
    model = ImageHyperprior(HyperpriorConfig(n=8, m=12, shortcut=True)).eval()
    for p in model.parameters():  # a "trained" model: no zero weights anywhere
        p.data.add_(0.01 * torch.randn_like(p))
    images = [torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8) for _ in range(4)]
    wide = widen_latents(model, 20, images, patches=2000).eval()
    assert wide.config.m == 20 and model.config.m == 12
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y, y_w = model.g_a(x), wide.g_a(x)
        assert torch.allclose(y_w[:, :12], y, atol=1e-6)
        z = torch.round(model.h_a(y))
        assert torch.equal(torch.round(wide.h_a(y_w)), z)  # new channels enter h_a with zero weight
        (mean, ls), (mean_w, ls_w) = model.entropy_params(z), wide.entropy_params(z)
        assert torch.allclose(mean_w[:, :12], mean, atol=1e-6)
        assert torch.allclose(ls_w[:, :12], ls, atol=1e-6)
        assert torch.all(mean_w[:, 12:] == 0)
        y_hat = torch.cat([y, torch.zeros(1, 8, 4, 4)], 1)  # new channels at zero: the old image
        assert torch.allclose(wide.g_s(y_hat), model.g_s(y), atol=1e-5)
        # the new block rows are orthonormal and orthogonal to the old ones
        rows = wide.g_a.block.weight.reshape(20, -1)
        gram = rows[12:] @ rows[12:].T
        assert torch.allclose(gram, torch.eye(8), atol=1e-4)
        assert (rows[12:] @ rows[:12].T).abs().max() < 1e-4
    with pytest.raises(ValueError):
        widen_latents(model, 12, images)


def assert_same_codec(a, b, x, level):
    """Two models give the same rate and reconstruction (same noise)."""
    import torch

    torch.manual_seed(1)
    out_a = a(x, level)
    torch.manual_seed(1)
    out_b = b(x, level)
    assert torch.equal(out_a["bpp"], out_b["bpp"]) and torch.equal(out_a["x_hat"], out_b["x_hat"])


def test_add_context_starts_as_the_same_codec_and_learns():
    import torch

    from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior
    from tokc.train.surgery import add_context

    torch.manual_seed(0)
    model = ImageHyperprior(HyperpriorConfig(n=8, m=12)).eval()
    ctx = add_context(model, 3, 8).eval()
    assert ctx.config.ctx_slices == 3 and len(ctx.ctx) == 2
    x, level = torch.rand(2, 3, 64, 64), torch.tensor([0.5, 4.0])
    assert_same_codec(model, ctx, x, level)
    # the context sees only slices already coded: slice s's shift ignores slices >= s
    y = model.g_a(x)
    mean, ls = model.entropy_params(torch.round(model.h_a(y)))
    with torch.no_grad():
        for net in ctx.ctx:
            net[4].weight.normal_(0, 0.1)
    c1 = ctx.code_latents(y, mean, ls, level)
    y2 = y.clone()
    y2[:, 4:8] += 5.0  # change only slice 1
    c2 = ctx.code_latents(y2, mean, ls, level)
    assert torch.equal(c1["offset"][:, :8], c2["offset"][:, :8])  # slices 0, 1: unchanged
    assert not torch.equal(c1["offset"][:, 8:], c2["offset"][:, 8:])  # slice 2 sees slice 1
    ctx.train()
    out = ctx(x, level)
    (out["bpp"].mean() + out["mse"].mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ctx.ctx.parameters())
    with pytest.raises(ValueError):
        add_context(ctx, 3)


def test_widen_latents_keeps_the_context_of_the_old_slices():
    import torch

    from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior
    from tokc.train.surgery import add_context, widen_latents

    torch.manual_seed(0)
    base = ImageHyperprior(HyperpriorConfig(n=8, m=12, shortcut=True))
    model = add_context(base, 3, 8).eval()
    for p in model.parameters():
        p.data.add_(0.01 * torch.randn_like(p))
    images = [torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8) for _ in range(4)]
    wide = widen_latents(model, 20, images, patches=2000).eval()
    assert wide.config.m == 20 and wide.config.ctx_slices == 5 and len(wide.ctx) == 4
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y, y_w = model.g_a(x), wide.g_a(x)
        assert torch.allclose(y_w[:, :12], y, atol=1e-6)
        mean, ls = model.entropy_params(torch.round(model.h_a(y)))
        mean_w, ls_w = wide.entropy_params(torch.round(wide.h_a(y_w)))
        lv = torch.tensor([2.0])
        c, c_w = model.code_latents(y, mean, ls, lv), wide.code_latents(y_w, mean_w, ls_w, lv)
        assert torch.allclose(c_w["offset"][:, :12], c["offset"], atol=1e-5)  # old slices: same context
        assert torch.allclose(c_w["scale"][:, :12], c["scale"], atol=1e-5)
    with pytest.raises(ValueError):
        widen_latents(model, 14, images)  # not a multiple of the slice width


def test_spatial_context_starts_as_the_same_codec_and_reads_only_anchors():
    import torch

    from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior
    from tokc.train.surgery import add_spatial_context

    torch.manual_seed(0)
    model = ImageHyperprior(HyperpriorConfig(n=8, m=12, ctx_slices=3, ctx_width=8)).eval()
    sp = add_spatial_context(model).eval()
    assert sp.config.ctx_spatial and len(sp.spatial) == 3
    x, level = torch.rand(2, 3, 64, 64), torch.tensor([0.5, 4.0])
    assert_same_codec(model, sp, x, level)
    y = model.g_a(x)
    mean, ls = model.entropy_params(torch.round(model.h_a(y)))
    with torch.no_grad():
        for net in sp.spatial:
            net[4].weight.normal_(0, 0.1)
            net[4].bias.normal_(0, 0.1)
        c1 = sp.code_latents(y, mean, ls, level)
        anchor = (torch.arange(4)[:, None] + torch.arange(4)[None, :]) % 2 == 0
        # a non-anchor token of slice 0 changes: no offset of slice 0 moves (slices 1, 2 read it)
        y2 = y.clone()
        y2[:, 0, 0, 1] += 7.0
        c2 = sp.code_latents(y2, mean, ls, level)
        assert torch.equal(c1["offset"][:, :4], c2["offset"][:, :4])
        # an anchor token of slice 0 changes: only the non-anchors of slice 0 move in it
        y3 = y.clone()
        y3[:, 0, 1, 1] += 7.0
        c3 = sp.code_latents(y3, mean, ls, level)
        moved = (c1["offset"][:, :4] != c3["offset"][:, :4]).any(1).any(0)
        assert moved.any() and not (moved & anchor).any()
    sp.train()
    out = sp(x, level)
    (out["bpp"].mean() + out["mse"].mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sp.spatial.parameters())
    with pytest.raises(ValueError):
        add_spatial_context(sp)


def test_a_scale_below_the_bound_still_learns_to_rise():
    import torch

    from tokc.models.hyperprior import gaussian_likelihood, lower_bound

    log_scale = torch.tensor([-5.0, 0.0], requires_grad=True)  # the first under scale_min 0.11
    scale = lower_bound(log_scale.exp(), 0.11)
    assert torch.equal(scale.detach(), torch.tensor([0.11, 1.0]))
    bits = -torch.log2(gaussian_likelihood(torch.tensor([1.0, 1.0]), scale)).sum()
    bits.backward()
    assert log_scale.grad[0] < 0  # descent raises it (a plain clamp gives 0 here)
    x = torch.tensor([0.05], requires_grad=True)
    (lower_bound(x, 0.11) * 1.0).sum().backward()  # a gradient that would lower x: stopped
    assert x.grad[0] == 0


def test_recalibrate_scales_revives_a_sunken_channel():
    import torch

    from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior
    from tokc.train.surgery import recalibrate_scales

    torch.manual_seed(0)
    model = ImageHyperprior(HyperpriorConfig(n=8, m=12, shortcut=True)).eval()
    with torch.no_grad():
        model.g_a.block.weight.normal_(0, 0.5)  # latents of a few units, so tokens are nonzero
        model.h_s[4].bias[12 + 3] -= 6.0  # channel 3's scale far under scale_min
    crops = [torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    res = recalibrate_scales(model, crops)
    assert res["shift"][3] >= 4.0 and res["bits_change"] < -0.05
    again = recalibrate_scales(model, crops)  # a recalibrated model stays where it is
    assert again["bits_change"] > -0.01
