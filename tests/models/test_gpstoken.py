"""GPSToken with a tiny random config (there is no official parity fixture)."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from tiny_tokenizers import GPSTOKEN, gpstoken_model  # noqa: E402

from tokc.models import gpstoken, load_pretrained  # noqa: E402
from tokc.models.checkpoints import detect_arch  # noqa: E402

TINY = GPSTOKEN


@pytest.fixture(scope="module")
def model():
    return gpstoken_model()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 16, 16, generator=g) * 2 - 1


def _render_direct(tok: np.ndarray, h: int, w: int, dmax: float) -> np.ndarray:
    """The published renderer written out per pixel and Gaussian (gs.cu's forward loop)."""
    out = np.zeros((h, w, tok.shape[1] - 5))
    for yi in range(h):
        for xi in range(w):
            px, py = 2.0 * xi / (w - 1) - 1.0, 2.0 * yi / (h - 1) - 1.0
            for sx, sy, rho, mx, my, *f in tok:
                dx, dy = px - mx, py - my
                if abs(dx) > dmax * sx or abs(dy) > dmax * sy:
                    continue
                q = dx * dx / (sx * sx) - 2 * rho * dx * dy / (sx * sy) + dy * dy / (sy * sy)
                out[yi, xi] += math.exp(-q / (2 * (1 - rho * rho))) * np.asarray(f)
    return out


def test_official_config_round_trip():
    assert gpstoken.GPSTokenConfig.from_official(TINY.to_official()) == TINY
    m128 = {"model": {  # configs/gpstoken_m128.yaml of the official repository
        "decoderconfig": {"double_z": False, "z_channels": 16, "resolution": 256, "in_channels": 3,
                          "out_ch": 3, "ch": 128, "ch_mult": [1, 2, 4], "num_res_blocks": 2,
                          "attn_resolutions": [], "dropout": 0.0},
        "gpsconfig": {"rois": 8, "gpsenc_n": 30, "gpsenc_c": 512, "gps_c": 16, "gps_num": 128,
                      "gps_dmax": 3, "gps_adaptive_w": 2.5, "gps_rs": [64, 64]}}}
    assert gpstoken.GPSTokenConfig.from_official(m128) == gpstoken.GPSTokenConfig()


def test_shapes_and_ranges(model, images):
    with torch.no_grad():
        tok = model.encode(images)
        img = model.decode(tok)
    assert tok.shape == (2, TINY.num_tokens, 5 + TINY.feature_dim)
    assert ((tok[..., 0:2] > 0) & (tok[..., 0:2] < 1)).all()  # σ through a sigmoid
    assert ((tok[..., 2:5] > -1) & (tok[..., 2:5] < 1)).all()  # ρ, x, y in (−1, 1)
    assert img.shape == (2, 3, 16, 20)  # render (8, 10), two levels -> ×2
    assert torch.isfinite(img).all()
    with torch.no_grad():  # any token count works (variable-length tokenisation)
        assert model.encode(images, num_tokens=9).shape == (2, 9, 9)


def test_renderer_matches_published_formula(model, images):
    with torch.no_grad():
        tok = model.encode(images)
    tok[0, 1, 2] = 0.6  # a strongly correlated Gaussian
    tok[0, 2, 0:2] = torch.tensor([0.02, 0.5])  # and a thin one, to exercise the cut-off
    got = model.render(tok, impl="torch")
    assert got.shape == (2, TINY.feature_dim, 8, 10)
    for b in range(2):
        want = _render_direct(tok[b].double().numpy(), 8, 10, TINY.cutoff)
        np.testing.assert_allclose(got[b].permute(1, 2, 0).numpy(), want, rtol=1e-5, atol=1e-5)


def test_decode_is_differentiable_in_every_token_part(model, images):
    with torch.no_grad():
        tok = model.encode(images[:1])
    tok.requires_grad_(True)
    model.decode(tok).square().mean().backward()
    grad = tok.grad[0]
    assert torch.isfinite(grad).all()
    for part in (slice(0, 2), slice(2, 3), slice(3, 5), slice(5, None)):  # σ, ρ, μ, features
        assert grad[:, part].abs().sum() > 0
    # the default dispatch (CPU: the torch reference) renders the same as the forced reference
    torch.testing.assert_close(model.render(tok.detach()), model.render(tok.detach(), impl="torch"))


def test_initial_layout_follows_partition(model, images):
    init, regions = model.initial_layout(images)
    assert init.shape == (2, TINY.num_tokens, 5) and regions.shape == (2, TINY.num_tokens, 4)
    # each Gaussian sits at its box centre with σ = 2/3 of the box's extent; boxes tile [−1, 1]²
    np.testing.assert_allclose(init[..., 3], (regions[..., 0] + regions[..., 2]) / 2, atol=1e-6)
    np.testing.assert_allclose(init[..., 4], (regions[..., 1] + regions[..., 3]) / 2, atol=1e-6)
    assert (init[..., 2] == 0).all()
    pixels = ((regions[..., 2] - regions[..., 0]) / 2 * 15 + 1) * ((regions[..., 3] - regions[..., 1]) / 2 * 15 + 1)
    np.testing.assert_allclose(pixels.sum(1).numpy(), [256, 256], atol=1e-3)
    # a flat image has equal complexity everywhere: splits follow the size rule, all 4x... boxes
    flat, _ = gpstoken.adaptive_partition(np.zeros((16, 16), np.float32), 4, min_size=2)
    assert sorted(map(tuple, np.round(flat[:, :2] * 16 * 1.5).astype(int))) == [(7, 7)] * 4


def _roi_align_loops(feat, box, out):
    """torchvision's roi_align (aligned=True, sampling_ratio=-1, scale 1) written as loops."""
    _, h, w = feat.shape
    x0, y0, x1, y1 = (float(v) - 0.5 for v in box)
    rh, rw = y1 - y0, x1 - x0
    bh, bw = rh / out, rw / out
    gh, gw = math.ceil(rh / out), math.ceil(rw / out)
    count = max(gh * gw, 1)
    res = np.zeros((feat.shape[0], out, out))
    for ph in range(out):
        for pw in range(out):
            acc = np.zeros(feat.shape[0])
            for iy in range(gh):
                y = y0 + ph * bh + (iy + 0.5) * bh / gh
                for ix in range(gw):
                    x = x0 + pw * bw + (ix + 0.5) * bw / gw
                    if y < -1 or y > h or x < -1 or x > w:
                        continue
                    yy, xx = max(y, 0.0), max(x, 0.0)
                    yl, xl = int(yy), int(xx)
                    if yl >= h - 1:
                        yl = yh = h - 1
                        yy = float(yl)
                    else:
                        yh = yl + 1
                    if xl >= w - 1:
                        xl = xh = w - 1
                        xx = float(xl)
                    else:
                        xh = xl + 1
                    ly, lx = yy - yl, xx - xl
                    acc += ((1 - ly) * (1 - lx) * feat[:, yl, xl] + (1 - ly) * lx * feat[:, yl, xh]
                            + ly * (1 - lx) * feat[:, yh, xl] + ly * lx * feat[:, yh, xh])
            res[:, ph, pw] = acc / count
    return res


def test_roi_align_matches_torchvision_rules():
    g = torch.Generator().manual_seed(2)
    feat = torch.randn(2, 3, 11, 13, generator=g)
    boxes = torch.tensor([[0.0, 0.0, 12.0, 10.0], [3.2, 1.5, 7.9, 9.1], [5.0, 5.0, 5.0, 5.0],
                          [-2.0, 8.0, 14.5, 12.0], [1.0, 2.0, 2.5, 2.2]])
    idx = torch.tensor([0, 1, 0, 1, 1])
    got = gpstoken.roi_align(feat, boxes, idx, 3)
    for r in range(len(boxes)):
        want = _roi_align_loops(feat[idx[r]].double().numpy(), boxes[r].tolist(), 3)
        np.testing.assert_allclose(got[r].numpy(), want, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip(model, images, tmp_path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}
              | {"loss.discriminator.weight": torch.zeros(2)},  # ignored, as the official loader
              str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(TINY.to_official()))
    assert detect_arch(json.loads((tmp_path / "config.json").read_text())) == "gpstoken"
    loaded = load_pretrained(tmp_path)
    assert isinstance(loaded, gpstoken.GPSToken) and loaded.config == TINY
    with torch.no_grad():
        a, b = model.encode(images), loaded.encode(images)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(model.decode(a), loaded.decode(b), rtol=0, atol=0)
    # without config.json the structure comes from the weights (render size etc. from defaults)
    (tmp_path / "config.json").unlink()
    bare = gpstoken.load(tmp_path, render_size=TINY.render_size, num_groups=4, enc_heads=2,
                         num_tokens=6, adaptive_min_size=2, attn_resolutions=(8,), resolution=16)
    assert (bare.config.enc_layers, bare.config.rois, bare.config.ch_mult) == (2, 2, (1, 2))


def test_bad_state_is_one_clear_error(model, tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["to_gps.1.bias"] = torch.zeros(7)  # shape mismatch
    del state["decoder.conv_out.bias"]
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(TINY.to_official()))
    with pytest.raises(ValueError, match=r"(?s)missing keys.*decoder\.conv_out\.bias.*to_gps\.1\.bias"):
        gpstoken.load(tmp_path)


def test_resize_matches_torch_bilinear():
    """The numpy layout's resize is torch's bilinear (half-pixel, no antialias) to fp32 rounding."""
    import torch.nn.functional as F

    from tokc.models.gpstoken_layout import resize_bilinear

    rng = np.random.default_rng(0)
    for shape in [(256, 256), (17, 40), (5, 3), (100, 31)]:
        x = rng.random(shape).astype(np.float32)
        want = F.interpolate(torch.from_numpy(x)[None, None], size=(64, 64), mode="bilinear",
                             align_corners=False)[0, 0].numpy()
        np.testing.assert_allclose(resize_bilinear(x, 64), want, rtol=0, atol=2e-7)


def test_graph_forms_match_the_model(model, images):
    """What the export traces (dense RoIAlign, the batched splat reference) is the model."""
    with torch.no_grad():
        init, regions = model.initial_layout(images)
        tok = model.encode(images, init, regions)
        torch.testing.assert_close(model.encode(images, init, regions, dense_roi=True), tok,
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gpstoken.DecoderGraph(model)(tok), model.decode(tok, impl="torch"),
                                   rtol=1e-4, atol=1e-4)
