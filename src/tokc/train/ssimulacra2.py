"""SSIMULACRA2 in differentiable torch: the loss of the perceptual tune (tokc.train.image_tune).

The metric as the benchmark computes it (the `ssimulacra2` package behind
tokc.metrics.image.ssimulacra2, a port of libjxl's tools/ssimulacra2.cc): sRGB -> linear ->
XYB (made positive), six scales (2x2 means in linear light between them), and at each scale
and XYB channel the mean and 4-norm of a 1 - SSIM map and of two edge maps (artifacts: edges
the original does not have; detail lost: edges it has and the copy does not), Gaussian blur
sigma 1.5, weighted by 108 fixed weights, then a cubic and a power law to a 0..100 score.
Written here from the metric's definition; tests/unit/test_ssimulacra2_torch.py checks the
score against the package's on real images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OPSIN = (
    (0.30, 0.622, 0.078),
    (0.23, 0.692, 0.078),
    (0.24342268924547819, 0.20476744424496821, 1.0 - 0.24342268924547819 - 0.20476744424496821),
)
OPSIN_BIAS = 0.0037930732552754493
C2 = 0.0009
SCALES = 6
SIGMA = 1.5
RADIUS = 5  # the blur's truncation (scipy's truncate 3.33 at sigma 1.5)
# weights of (channel X/Y/B, scale, norm 1/4, [1 - SSIM, artifact, detail lost]) in that
# order, flattened; the other 56 of the 108 are zero
WEIGHTS = {
    1: 0.0007376606707406586, 4: 0.0007793481682867309, 7: 0.0004371155730107379,
    9: 1.1041726426657346, 10: 0.00066284834129271, 11: 0.00015231632783718752,
    13: 0.0016406437456599754, 15: 1.8422455520539298, 16: 11.441172603757666,
    18: 0.0007989109436015163, 19: 0.000176816438078653, 21: 1.8787594979546387,
    22: 10.94906990605142, 24: 0.0007289346991508072, 25: 0.9677937080626833,
    27: 0.00014003424285435884, 28: 0.9981766977854967, 29: 0.00031949755934435053,
    30: 0.0004550992113792063, 33: 0.0013648766163243398, 39: 7.466890328078848,
    41: 17.445833984131262, 42: 0.0006235601634041466, 45: 6.683678146179332,
    46: 0.00037724407979611296, 47: 1.027889937768264, 48: 225.20515300849274,
    51: 19.213238186143016, 52: 0.0011401524586618361, 53: 0.001237755635509985,
    54: 176.39317598450694, 57: 24.43300999870476, 58: 0.28520802612117757,
    59: 0.0004485436923833408, 63: 34.77906344483772, 64: 44.835625328877896,
    73: 0.0008680556573291698, 79: 0.0005313191874358747, 81: 0.00016533814161379112,
    87: 0.0004179171803251336, 88: 0.0017290828234722833, 90: 0.0020827005846636437,
    93: 8.826982764996862, 94: 23.19243343998926, 96: 95.1080498811086, 97: 0.9863978034400682,
    98: 0.9834382792465353, 99: 0.0012286405048278493, 100: 171.2667255897307,
    101: 0.9807858872435379, 105: 0.0005130064588990679, 107: 0.00010854057858411537,
}


def _weights(device, dtype) -> torch.Tensor:
    w = torch.zeros(108, dtype=dtype, device=device)
    for i, v in WEIGHTS.items():
        w[i] = v
    return w


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)


def positive_xyb(linear: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) linear RGB -> XYB, shifted and scaled to positive values as the metric does."""
    m = torch.tensor(OPSIN, dtype=linear.dtype, device=linear.device)
    mixed = torch.einsum("ij,bjhw->bihw", m, linear) + OPSIN_BIAS
    cbrt = mixed.clamp_min(OPSIN_BIAS).pow(1 / 3) - OPSIN_BIAS ** (1 / 3)
    x = 0.5 * (cbrt[:, 0] - cbrt[:, 1])
    y = 0.5 * (cbrt[:, 0] + cbrt[:, 1])
    b = cbrt[:, 2]
    return torch.stack([14.0 * x + 0.42, y + 0.01, b - y + 0.55], 1)


def _kernel(device, dtype) -> torch.Tensor:
    t = torch.arange(-RADIUS, RADIUS + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (t / SIGMA) ** 2)
    return k / k.sum()


def blur(x: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian; edges as the package treats them: mirrored (edge sample repeated)
    above and below, zeros left and right. (The package blurs a transposed image with zeros
    above and below and mirrors at the sides, which is this.)"""
    b, c, h, w = x.shape
    k = _kernel(x.device, x.dtype)
    if h > RADIUS:
        xp = torch.cat([x[:, :, :RADIUS].flip(2), x, x[:, :, -RADIUS:].flip(2)], 2)
    else:
        xp = F.pad(x, (0, 0, RADIUS, RADIUS), mode="replicate")
    flat = xp.reshape(b * c, 1, h + 2 * RADIUS, w)
    flat = F.conv2d(flat, k.view(1, 1, -1, 1))
    flat = F.conv2d(F.pad(flat, (RADIUS, RADIUS, 0, 0)), k.view(1, 1, 1, -1))
    return flat.view(b, c, h, w)


def _norms(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and channel: the mean and the 4-norm mean of a map (B, 3, H, W)."""
    m4 = d.pow(4).mean((2, 3))
    tiny = torch.finfo(d.dtype).tiny  # 0 stays 0, without an infinite gradient there
    return d.mean((2, 3)), torch.where(m4 > 0, m4.clamp_min(tiny).pow(0.25), 0.0)


def raw_distance(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """The weighted sum before the final mapping, per image (B,): 0 for identical images.
    ref, dist: (B, 3, H, W) sRGB in [0, 1]. An image under 8 px a side after a halving ends the
    scales there, and the weights are then taken in order for the scales there are (as the
    metric does: images under 256 px use other weights than their slots)."""
    lin1, lin2 = srgb_to_linear(ref.clamp(0, 1)), srgb_to_linear(dist.clamp(0, 1))
    per_scale = []  # (B, channel, norm, kind) per scale
    for s in range(SCALES):
        if s:
            lin1 = F.avg_pool2d(lin1, 2, ceil_mode=True, count_include_pad=False)
            lin2 = F.avg_pool2d(lin2, 2, ceil_mode=True, count_include_pad=False)
        if min(lin1.shape[2:]) < 8:
            break
        i1, i2 = positive_xyb(lin1), positive_xyb(lin2)
        mu1, mu2 = blur(i1), blur(i2)
        s11, s22, s12 = blur(i1 * i1), blur(i2 * i2), blur(i1 * i2)
        num_m = 1.0 - (mu1 - mu2).square()
        num_s = 2.0 * (s12 - mu1 * mu2) + C2
        den_s = (s11 - mu1 * mu1) + (s22 - mu2 * mu2) + C2
        ssim = (1.0 - num_m * num_s / den_s).clamp_min(0)
        ratio = (1.0 + (i2 - mu2).abs()) / (1.0 + (i1 - mu1).abs()) - 1.0
        maps = (ssim, ratio.clamp_min(0), (-ratio).clamp_min(0))
        norms = [torch.stack(_norms(d), -1) for d in maps]  # each (B, channel, norm)
        per_scale.append(torch.stack(norms, -1))
    v = torch.stack(per_scale, 2).flatten(1)  # (B, channel * scales * norm * kind)
    return v @ _weights(v.device, v.dtype)[: v.shape[1]]


def score(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """SSIMULACRA2 per image (B,): 100 for identical images, lower is worse."""
    d = raw_distance(ref, dist) * 0.9562382616834844
    d = 2.326765642916932 * d - 0.020884521182843837 * d**2 + 6.248496625763138e-05 * d**3
    return torch.where(d > 0, 100.0 - 10.0 * d.clamp_min(1e-12).pow(0.6276336467831387),
                       torch.full_like(d, 100.0))


__all__ = ["raw_distance", "score", "positive_xyb", "srgb_to_linear"]
