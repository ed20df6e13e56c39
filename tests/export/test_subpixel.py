"""The export-time rewrite of transposed convs as conv + depth-to-space is the same map."""

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from tokc.export.subpixel import SubpixelConvTranspose2d, deployable, rewritable  # noqa: E402


@pytest.mark.parametrize("k,s,p,op", [(5, 2, 2, 1), (16, 16, 0, 0), (3, 2, 1, 1), (4, 2, 1, 0),
                                      (2, 2, 0, 0), (6, 2, 2, 0), (7, 3, 2, 0), (3, 1, 1, 0)])
def test_same_map(k, s, p, op):
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(7, 5, k, s, p, op)
    x = torch.randn(2, 7, 9, 13)
    with torch.no_grad():
        ref, out = layer(x), SubpixelConvTranspose2d(layer)(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("layer", [nn.ConvTranspose2d(4, 4, 5, 2, 2), nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=2), nn.Conv2d(4, 4, 3)])
def test_refuses_what_it_cannot_rewrite(layer):
    # (5, 2, 2) without output_padding gives 2H-1 rows: not a sub-pixel conv
    assert not rewritable(layer)
    if isinstance(layer, nn.ConvTranspose2d):
        with pytest.raises(ValueError):
            SubpixelConvTranspose2d(layer)


def test_deployable_rewrites_nested_layers_and_keeps_the_original():
    from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior

    model = ImageHyperprior(HyperpriorConfig(n=8, m=12, shortcut=True)).eval()
    g_s = deployable(model.g_s)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in g_s.modules())
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in model.g_s.modules()) == 5
    y = torch.randn(1, 12, 3, 5)
    with torch.no_grad():
        assert (g_s(y) - model.g_s(y)).abs().max().item() < 1e-5
