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

    from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior, widen_latents

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


def test_add_context_starts_as_the_same_codec_and_learns():
    import torch

    from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior, add_context

    torch.manual_seed(0)
    model = ImageHyperprior(HyperpriorConfig(n=8, m=12)).eval()
    ctx = add_context(model, 3, 8).eval()
    assert ctx.config.ctx_slices == 3 and len(ctx.ctx) == 2
    x, level = torch.rand(2, 3, 64, 64), torch.tensor([0.5, 4.0])
    torch.manual_seed(1)
    a = model(x, level)
    torch.manual_seed(1)
    b = ctx(x, level)
    assert torch.equal(a["bpp"], b["bpp"]) and torch.equal(a["x_hat"], b["x_hat"])
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

    from tokc.models.hyperprior import (
        HyperpriorConfig,
        ImageHyperprior,
        add_context,
        widen_latents,
    )

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
