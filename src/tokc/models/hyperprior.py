"""tokc-image-v1: a variable-rate mean-scale hyperprior (Ballé 2018 / Minnen 2018) with
asymmetric gain vectors (Cui et al. 2021) on the latent channels and, optionally, a channel-wise
context model (Minnen & Singh 2020): the latents are coded in `ctx_slices` groups of channels,
and each group's mean and scale are corrected by a small network of the tokens already coded.
No spatial autoregression: every slice decodes in parallel over the image.

Model layer only: tensors <-> latents. The codec (tokc.compress.image) turns latents into
bytes, and runs the hyper-synthesis and the context networks in exact integer arithmetic
(tokc.compress.intnet) so the probability tables are bit-identical on every machine.

The rate is a continuous `level` in [0, levels-1]: gains and lambdas are interpolated
log-linearly between the trained levels, and training samples levels continuously, so every
point of the range is a trained operating point.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class HyperpriorConfig:
    n: int = 64  # transform width
    m: int = 96  # latent channels (the tokens' channels)
    levels: int = 6  # trained rate levels
    lambda_min: float = 0.0018  # lambda of level 0 (MSE on 0..255 scale)
    lambda_max: float = 0.0932  # lambda of the last level
    scale_min: float = 0.11  # lower bound of the Gaussian scale
    shortcut: bool = False  # a linear 16x16 block transform beside g_a / g_s (see Analysis)
    ctx_slices: int = 0  # channel-wise context: latents coded in this many slices (0: none)
    ctx_width: int = 64  # hidden width of each slice's context network
    ctx_spatial: bool = False  # checkerboard context inside each slice (see code_latents)
    synthesis_last: int = 0  # g_s's last hidden width (0: n); tokc.train.image_slim narrows it
    synthesis_mid: int = 0  # g_s's second hidden width (0: n); likewise

    def to_dict(self) -> dict:
        return asdict(self)


class SimplifiedGDN(nn.Module):
    """y = x / (beta + gamma |x|) (Johnston et al. 2019); inverse multiplies instead."""

    def __init__(self, ch: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.beta_p = nn.Parameter(torch.ones(ch))
        self.gamma_p = nn.Parameter(math.sqrt(0.1) * torch.eye(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta_p.square() + 1e-6
        gamma = self.gamma_p.square()
        norm = F.conv2d(x.abs(), gamma[:, :, None, None], beta)
        return x * norm if self.inverse else x / norm


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride, padding=k // 2, output_padding=stride - 1)


class SubpixelUp(nn.Sequential):
    """3x3 conv to 4*cout channels, then depth-to-space by 2: easy to run in integers."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, 4 * cout, 3, padding=1), nn.PixelShuffle(2))


class Analysis(nn.Module):
    """g_a: four 5x5 stride-2 convs with simplified GDN; optionally plus a linear 16x16
    stride-16 block transform of the pixels (the shortcut), initialised from a KLT. With the
    last conv of the nonlinear path zero-initialised, the untrained model starts as a block
    KLT codec and the convs learn what a block transform cannot do."""

    def __init__(self, n: int, m: int, shortcut: bool):
        super().__init__()
        self.layers = nn.Sequential(
            conv(3, n), SimplifiedGDN(n), conv(n, n), SimplifiedGDN(n),
            conv(n, n), SimplifiedGDN(n), conv(n, m),
        )
        self.block = nn.Conv2d(3, m, 16, stride=16) if shortcut else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return y if self.block is None else y + self.block(x)


class Synthesis(nn.Module):
    """g_s: the mirror of Analysis (transposed convs, inverse GDN, optional block shortcut).
    last: the width of the last hidden layer, at half the output resolution, where g_s spends
    most of its time, mid: of the one before, at a quarter (0: n)."""

    def __init__(self, n: int, m: int, shortcut: bool, last: int = 0, mid: int = 0):
        super().__init__()
        last, mid = last or n, mid or n
        self.layers = nn.Sequential(
            deconv(m, n), SimplifiedGDN(n, True), deconv(n, mid), SimplifiedGDN(mid, True),
            deconv(mid, last), SimplifiedGDN(last, True), deconv(last, 3),
        )
        self.block = nn.ConvTranspose2d(m, 3, 16, stride=16) if shortcut else None

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = self.layers(y)
        return x if self.block is None else x + self.block(y)


class FactorizedPrior(nn.Module):
    """Per-channel learned density for the hyper-latent z (Ballé 2018, appendix 6.1)."""

    def __init__(self, ch: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((ch, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(ch, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(ch, dims[i + 1], 1)))

    def logits_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """x: (C, 1, K) -> logits of the CDF at x, (C, 1, K)."""
        for i, (mat, bias) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(mat), x) + bias
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lo = self.logits_cdf(v - 0.5)
        hi = self.logits_cdf(v + 0.5)
        sign = -torch.sign(lo + hi).detach()
        p = (torch.sigmoid(sign * hi) - torch.sigmoid(sign * lo)).abs()
        return lower_bound(p.reshape(c, b, h, w).permute(1, 0, 2, 3), 1e-9)

    @torch.no_grad()
    def pmf(self, radius: int) -> torch.Tensor:
        """Probabilities of the integers -radius..radius per channel, (C, 2*radius+1)."""
        c = self.matrices[0].shape[0]
        v = torch.arange(-radius, radius + 1, dtype=torch.float32).repeat(c, 1, 1)
        lo, hi = self.logits_cdf(v - 0.5), self.logits_cdf(v + 0.5)
        sign = -torch.sign(lo + hi)
        return (torch.sigmoid(sign * hi) - torch.sigmoid(sign * lo)).abs()[:, 0, :]


def context_net(cin: int, width: int, cout: int, kernel: tuple[int, int] = (3, 3)) -> nn.Sequential:
    """Tokens of the slices already coded -> (mean shift, log-scale shift) of the next slice.
    Only 'same' convs (3x3 for images, 1xk for audio's (C, 1, T) latents) and ReLU, so that
    the codec runs it exactly in integers; the last conv starts at zero, so a model given a
    context starts as the same codec without one."""
    pad = (kernel[0] // 2, kernel[1] // 2)
    net = nn.Sequential(
        nn.Conv2d(cin, width, kernel, padding=pad), nn.ReLU(),
        nn.Conv2d(width, width, kernel, padding=pad), nn.ReLU(),
        nn.Conv2d(width, 2 * cout, kernel, padding=pad),
    )
    nn.init.zeros_(net[4].weight)
    nn.init.zeros_(net[4].bias)
    return net


def gaussian_likelihood(r: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """P(round(r) | zero-mean Gaussian of `scale`) evaluated at the (noisy) residual r."""
    r = r.abs()
    upper = torch.special.ndtr((0.5 - r) / scale)
    lower = torch.special.ndtr((-0.5 - r) / scale)
    return lower_bound(upper - lower, 1e-9)


class _LowerBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * ((x >= ctx.bound) | (grad < 0)), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """max(x, bound), with the gradient kept where it would raise x. A plain clamp gives no
    gradient below the bound, so a scale predicted under it could never come back up: the
    channels added by widen_latents went there and coded their tokens as near-certain zeros
    (at the top level, 40 % of them were not)."""
    return _LowerBound.apply(x, bound)


def checkerboard(h: int, w: int, device=None) -> torch.Tensor:
    """(h, w) bool: the anchors of the spatial context, where row + column is even."""
    rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
    return (rows[:, None] + cols[None, :]) % 2 == 0


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class ImageHyperprior(nn.Module):
    def __init__(self, config: HyperpriorConfig = HyperpriorConfig()):
        super().__init__()
        self.config = config
        n, m, L = config.n, config.m, config.levels
        self.g_a = Analysis(n, m, config.shortcut)
        self.g_s = Synthesis(n, m, config.shortcut, config.synthesis_last, config.synthesis_mid)
        self.h_a = nn.Sequential(
            conv(m, n, 3, 1), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n),
        )
        # Hyper-synthesis: only 3x3 convs, ReLU and depth-to-space, so that the codec can run
        # it exactly in integers (tokc.compress.intnet).
        self.h_s = nn.Sequential(
            SubpixelUp(n, n), nn.ReLU(), SubpixelUp(n, m), nn.ReLU(),
            nn.Conv2d(m, 2 * m, 3, padding=1),
        )
        self.z_prior = FactorizedPrior(n)
        self.ctx = self.spatial = None
        slices = max(config.ctx_slices, 1)
        if m % slices:
            raise ValueError("ctx_slices must divide the latent channels")
        cs = m // slices
        if config.ctx_slices > 1:
            self.ctx = nn.ModuleList(
                context_net(cs * s, config.ctx_width, cs) for s in range(1, config.ctx_slices)
            )
        if config.ctx_spatial:  # one per slice: anchor tokens of the slice -> the others' shift
            self.spatial = nn.ModuleList(
                context_net(cs, config.ctx_width, cs) for _ in range(slices)
            )
        # log gains: encoder side (applied to y) and decoder side (applied to y_hat). Start
        # them spread as the MSE-optimal step sizes would be (step ~ 1/sqrt(lambda)), so that
        # the levels differ from the first iteration instead of drifting apart slowly.
        spread = 0.5 * math.log(config.lambda_max / config.lambda_min)
        init = torch.linspace(0.0, spread, L)[:, None].repeat(1, m)
        self.log_gain = nn.Parameter(init.clone())
        self.log_igain = nn.Parameter(-init.clone())
        lam = torch.logspace(math.log10(config.lambda_min), math.log10(config.lambda_max), L)
        self.register_buffer("lambdas", lam, persistent=False)

    # -- rate parameter ---------------------------------------------------------------------
    def _interp(self, table: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """Linear interpolation of rows of `table` (L, ...) at continuous levels (B,)."""
        level = level.clamp(0, self.config.levels - 1)
        lo = level.floor().long().clamp(max=self.config.levels - 2)
        t = (level - lo).view(-1, *([1] * (table.dim() - 1)))
        return table[lo] * (1 - t) + table[lo + 1] * t

    def gains(self, level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lg = self._interp(self.log_gain, level)[:, :, None, None]
        lig = self._interp(self.log_igain, level)[:, :, None, None]
        return lg, lig

    def lmbda(self, level: torch.Tensor) -> torch.Tensor:
        return self._interp(self.lambdas.log(), level).exp()

    # -- entropy parameters -----------------------------------------------------------------
    def entropy_params(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mean and log-scale of y (ungained), from the integer hyper-latent."""
        mean, log_scale = self.h_s(z_hat).chunk(2, dim=1)
        return mean, log_scale

    def code_latents(self, y: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                     level: torch.Tensor) -> dict:
        """The tokens of y at `level`, slice by slice: q = round(y*g - offset), where offset
        is the hyperprior mean (gained) plus the context's shift. With the channel-wise
        context, a slice's shift comes from the tokens of the slices before it; with the
        spatial one, each slice is coded in two halves of a checkerboard (anchors where
        row + column is even, then the rest), and the second half's shift also comes from the
        slice's anchor tokens. Rounding is straight-through; `residual` (y*g - offset,
        unrounded) and `scale` give the rate."""
        lg, lig = self.gains(level)
        g = lg.exp()
        yg, offset, ls = y * g, mean * g, log_scale + lg
        slices = max(self.config.ctx_slices, 1)
        if self.spatial is not None:
            anchor = checkerboard(*y.shape[2:], device=y.device).to(y.dtype)
        qs, offs, lss = [], [], []
        chunks = zip(yg.chunk(slices, 1), offset.chunk(slices, 1), ls.chunk(slices, 1))
        for s, (yg_s, off_s, ls_s) in enumerate(chunks):
            if s:
                dm, dls = self.ctx[s - 1](torch.cat(qs, 1)).chunk(2, 1)
                off_s, ls_s = off_s + dm, ls_s + dls
            q_s = round_ste(yg_s - off_s)
            if self.spatial is not None:  # the anchors' tokens stand; the others move
                dm, dls = self.spatial[s](q_s * anchor).chunk(2, 1)
                off_s, ls_s = off_s + dm * (1 - anchor), ls_s + dls * (1 - anchor)
                q_s = round_ste(yg_s - off_s)
            qs.append(q_s)
            offs.append(off_s)
            lss.append(ls_s)
        offset, ls, q = torch.cat(offs, 1), torch.cat(lss, 1), torch.cat(qs, 1)
        return {
            "q": q, "residual": yg - offset, "offset": offset, "ilg": lig, "log_scale": ls,
            "scale": lower_bound(ls.exp(), self.config.scale_min),
        }

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> dict:
        """Training pass: x in [0, 1], (B, 3, H, W) with H, W multiples of 64."""
        y = self.g_a(x)
        z = self.h_a(y)
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        z_hat = round_ste(z)
        mean, log_scale = self.entropy_params(z_hat)
        c = self.code_latents(y, mean, log_scale, level)
        # rate on the noisy residual, distortion through the rounded one (Minnen & Singh 2020)
        r_noisy = c["residual"] + torch.empty_like(y).uniform_(-0.5, 0.5)
        y_hat = (c["q"] + c["offset"]) * c["ilg"].exp()
        x_hat = self.g_s(y_hat)
        num_pixels = x.shape[2] * x.shape[3]
        bits_y = -torch.log2(gaussian_likelihood(r_noisy, c["scale"])).sum((1, 2, 3))
        bits_z = -torch.log2(self.z_prior.likelihood(z_noisy)).sum((1, 2, 3))
        mse = (x_hat - x).square().mean((1, 2, 3))
        return {
            "x_hat": x_hat,
            "bpp": (bits_y + bits_z) / num_pixels,
            "bpp_z": bits_z / num_pixels,
            "mse": mse,
        }
