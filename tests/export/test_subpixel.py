"""The export-time rewrites of transposed convs (sub-pixel, phase) are the same map."""

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from tokc.export.subpixel import (  # noqa: E402
    PhaseConvTranspose2d,
    SubpixelConvTranspose2d,
    deployable,
    rewritable,
)


@pytest.mark.parametrize("k,s,p,op", [(5, 2, 2, 1), (16, 16, 0, 0), (3, 2, 1, 1), (4, 2, 1, 0),
                                      (2, 2, 0, 0), (6, 2, 2, 0), (7, 3, 2, 0), (3, 1, 1, 0)])
@pytest.mark.parametrize("form", [SubpixelConvTranspose2d, PhaseConvTranspose2d])
def test_same_map(k, s, p, op, form):
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(7, 5, k, s, p, op)
    x = torch.randn(2, 7, 9, 13)
    with torch.no_grad():
        ref, out = layer(x), form(layer)(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("layer", [nn.ConvTranspose2d(4, 4, 5, 2, 2), nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=2), nn.Conv2d(4, 4, 3)])
def test_refuses_what_it_cannot_rewrite(layer):
    # (5, 2, 2) without output_padding gives 2H-1 rows: not a sub-pixel conv
    assert not rewritable(layer)
    if isinstance(layer, nn.ConvTranspose2d):
        for form in (SubpixelConvTranspose2d, PhaseConvTranspose2d):
            with pytest.raises(ValueError):
                form(layer)


@pytest.mark.parametrize("last, output_form", [(64, "ConvTranspose2d"), (32, "SubpixelConvTranspose2d")])
def test_deployable_rewrites_nested_layers_and_keeps_the_original(last, output_form):
    from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior

    model = ImageHyperprior(HyperpriorConfig(n=64, m=12, shortcut=True, synthesis_last=last)).eval()
    g_s = deployable(model.g_s)
    kinds = [type(m).__name__ for m in g_s.modules()
             if isinstance(m, (nn.ConvTranspose2d, PhaseConvTranspose2d, SubpixelConvTranspose2d))]
    # wide layers by phase; the 3-channel output layer as it was from 64 channels, sub-pixel
    # from 32; the block shortcut sub-pixel
    assert kinds == ["PhaseConvTranspose2d"] * 3 + [output_form, "SubpixelConvTranspose2d"]
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in model.g_s.modules()) == 5
    y = torch.randn(1, 12, 3, 5)
    with torch.no_grad():
        assert (g_s(y) - model.g_s(y)).abs().max().item() < 1e-5
