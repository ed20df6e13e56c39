"""tokc-audio-v1: a variable-rate learned transform codec for 16 kHz audio.

Signal path: waveform -> MDCT (hop 320 = 20 ms, sine window; tokc.dsp) -> companded
coefficients sign(X)|X|^power, a (320, 1, T) "image" one row high -> g_a (1xk convs,
residual, plus a linear shortcut initialised from a PCA of training frames) -> latents
(m, 1, T), coded exactly like the image codec's: a mean-scale hyperprior (h_a downsamples
time by 4, h_s upsamples it back with 1xk convs and depth-to-space by (1, 2), so the codec runs
it in exact integers), gain vectors per rate level, a channel-wise context over `ctx_slices`
slices and, inside each slice, an even/odd-frame context (the image codec's checkerboard on a
one-row grid). g_s maps the decoded latents to companded coefficients `mean` plus a noise
amplitude: the decoder adds that much seeded Gaussian noise (noise filling: coefficients the
rate could not pay for come back as noise of the right level instead of silence), then
expands and inverts the MDCT.

Training loss: kbps + lambda * (MSE of the mean in the companded domain + beta * multi-resolution
STFT log-magnitude distance of the noise-filled waveform). The MSE trains the mean as an
estimate; only the spectral term sees the noise, so the noise amplitude learns the missing level.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tokc.dsp import mdct_basis
from tokc.models.hyperprior import (
    FactorizedPrior,
    ImageHyperprior,
    context_net,
    gaussian_likelihood,
    round_ste,
)
from tokc.models.layers import pixel_shuffle_2d

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class AudioConfig:
    hop: int = 320  # MDCT hop (coefficients per frame)
    n: int = 256  # transform width
    m: int = 128  # latent channels per frame
    nz: int = 64  # hyper-latent channels (4 frames each)
    levels: int = 6
    lambda_min: float = 600.0
    lambda_max: float = 40000.0
    scale_min: float = 0.11
    ctx_slices: int = 4
    ctx_width: int = 64
    ctx_spatial: bool = True  # even/odd-frame context inside each slice
    ctx_kernel: int = 5
    power: float = 0.5  # companding exponent
    beta: float = 1e-3  # weight of the spectral term against the companded MSE

    def to_dict(self) -> dict:
        return asdict(self)


def conv1(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    """A 1xk 'same' convolution over time on (B, C, 1, T)."""
    return nn.Conv2d(cin, cout, (1, k), stride=(1, stride), padding=(0, k // 2))


class SubpixelUp1d(nn.Module):
    """1x3 conv to 2*cout channels, then depth-to-space by (1, 2): time doubles."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = conv1(cin, 2 * cout)

    def forward(self, x):
        return pixel_shuffle_2d(self.conv(x), 1, 2)


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.a, self.b = conv1(ch, ch), conv1(ch, ch)

    def forward(self, x):
        return x + self.b(F.gelu(self.a(F.gelu(x))))


class Transform(nn.Module):
    """cin -> cout channels per frame: 1x3 conv, two residual blocks, 1x3 conv (receptive
    field +-6 frames), plus a linear 1x1 shortcut of the first `short` outputs."""

    def __init__(self, cin: int, n: int, cout: int, short: int):
        super().__init__()
        self.layers = nn.Sequential(conv1(cin, n), ResBlock(n), ResBlock(n), nn.GELU(), conv1(n, cout))
        self.short = nn.Conv2d(cin, short, 1)

    def forward(self, x):
        y = self.layers(x)
        s = self.short(x)
        return torch.cat([y[:, : s.shape[1]] + s, y[:, s.shape[1]:]], 1)


class AudioModel(ImageHyperprior):
    """The hyperprior's rate machinery (gains, levels, code_latents) on (B, C, 1, T) latents."""

    def __init__(self, config: AudioConfig = AudioConfig()):
        nn.Module.__init__(self)
        self.config = config
        c, n, m, nz, L, k = config.hop, config.n, config.m, config.nz, config.levels, config.ctx_kernel
        self.g_a = Transform(c, n, m, m)
        self.g_s = Transform(m, n, 2 * c, c)  # companded mean, then raw noise amplitude
        self.h_a = nn.Sequential(conv1(m, nz), nn.ReLU(), conv1(nz, nz, 5, 2), nn.ReLU(), conv1(nz, nz, 5, 2))
        # only 1xk convs, ReLU and depth-to-space: the codec runs h_s exactly in integers
        self.h_s = nn.Sequential(
            SubpixelUp1d(nz, nz), nn.ReLU(), SubpixelUp1d(nz, m), nn.ReLU(), conv1(m, 2 * m),
        )
        self.z_prior = FactorizedPrior(nz)
        if m % config.ctx_slices:
            raise ValueError("ctx_slices must divide the latent channels")
        cs = m // config.ctx_slices
        kernel = (1, k)
        self.ctx = nn.ModuleList(
            context_net(cs * s, config.ctx_width, cs, kernel) for s in range(1, config.ctx_slices)
        ) if config.ctx_slices > 1 else None
        self.spatial = nn.ModuleList(
            context_net(cs, config.ctx_width, cs, kernel) for _ in range(config.ctx_slices)
        ) if config.ctx_spatial else None
        lam = torch.logspace(math.log10(config.lambda_min), math.log10(config.lambda_max), L)
        # start each level at the step a uniform quantizer would take at its lambda (rate in
        # kbps over 16,000 companded coefficients a second: step ~ sqrt(96 / ln 2 / lambda))
        init = (0.5 * (lam / (96 / math.log(2))).log())[:, None].repeat(1, m)
        self.log_gain = nn.Parameter(init.clone())
        self.log_igain = nn.Parameter(-init.clone())
        self.register_buffer("lambdas", lam, persistent=False)
        self.register_buffer("basis", torch.from_numpy(mdct_basis(c)).float(), persistent=False)

    # -- fixed transforms ---------------------------------------------------------------------
    def analyse_frames(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, (T+1)*hop) -> companded MDCT coefficients (B, hop, 1, T)."""
        hop = self.config.hop
        coefs = F.conv1d(wave[:, None], self.basis[:, None, :], stride=hop)
        return (coefs.sign() * coefs.abs().pow(self.config.power))[:, :, None]

    def synthesise_frames(self, companded: torch.Tensor) -> torch.Tensor:
        """(B, hop, 1, T) companded coefficients -> (B, (T+1)*hop) waveform."""
        coefs = companded[:, :, 0]
        coefs = coefs.sign() * coefs.abs().pow(1 / self.config.power)
        return F.conv_transpose1d(coefs, self.basis[:, None, :], stride=self.config.hop)[:, 0]

    def decode_coefs(self, y_hat: torch.Tensor, noise: torch.Tensor | None) -> tuple:
        """y_hat -> (companded mean, noise amplitude, noise-filled companded coefficients)."""
        out = self.g_s(y_hat)
        hop = self.config.hop
        mean, amp = out[:, :hop], F.softplus(out[:, hop:] - 5.0)
        filled = mean if noise is None else mean + amp * noise
        return mean, amp, filled

    def forward(self, wave: torch.Tensor, level: torch.Tensor) -> dict:
        """Training pass: wave (B, (T+1)*hop) in [-1, 1], T a multiple of 4."""
        xc = self.analyse_frames(wave)
        y = self.g_a(xc)
        z = self.h_a(y)
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        mean, log_scale = self.entropy_params(round_ste(z))
        c = self.code_latents(y, mean, log_scale, level)
        r_noisy = c["residual"] + torch.empty_like(y).uniform_(-0.5, 0.5)
        y_hat = (c["q"] + c["offset"]) * c["ilg"].exp()
        mu, _, filled = self.decode_coefs(y_hat, torch.randn_like(xc))
        wave_hat = self.synthesise_frames(filled)
        seconds = xc.shape[-1] * self.config.hop / SAMPLE_RATE
        bits_y = -torch.log2(gaussian_likelihood(r_noisy, c["scale"])).sum((1, 2, 3))
        bits_z = -torch.log2(self.z_prior.likelihood(z_noisy)).sum((1, 2, 3))
        hop = self.config.hop
        return {
            "kbps": (bits_y + bits_z) / seconds / 1000,
            "mse": (mu - xc).square().mean((1, 2, 3)),
            "spec": spectral_distance(wave[:, hop:-hop], wave_hat[:, hop:-hop]),
            "wave_hat": wave_hat,
        }


def spectral_distance(x: torch.Tensor, x_hat: torch.Tensor, ffts=(256, 512, 1024),
                      floor: float = 1e-3) -> torch.Tensor:
    """Multi-resolution STFT log-magnitude L1 distance per item, (B,)."""
    total = 0
    for n in ffts:
        win = torch.hann_window(n, device=x.device)
        s = torch.stft(x, n, n // 4, window=win, return_complex=True).abs()
        s_hat = torch.stft(x_hat, n, n // 4, window=win, return_complex=True).abs()
        total = total + ((s + floor).log() - (s_hat + floor).log()).abs().mean((1, 2))
    return total / len(ffts)


@torch.no_grad()
def pca_init(model: AudioModel, waves: list[np.ndarray], frames: int = 40000) -> None:
    """The shortcuts start as the PCA of companded MDCT frames: g_a's projects on the leading
    m components, g_s's maps them back; the nonlinear paths' last convs start at zero."""
    hop, m = model.config.hop, model.config.m
    gen = np.random.default_rng(0)
    rows = []
    for w in waves:
        t = len(w) // hop - 1
        if t < 1:
            continue
        xc = model.analyse_frames(torch.from_numpy(w[: (t + 1) * hop]).float()[None])[0, :, 0]
        rows.append(xc.T)
    data = torch.cat(rows)
    data = data[torch.from_numpy(gen.choice(len(data), min(frames, len(data)), replace=False))]
    mu = data.mean(0)
    evals, evecs = torch.linalg.eigh(torch.cov((data - mu).T.double()))
    basis = evecs[:, evals.argsort(descending=True)].T.float()[:m]  # (m, hop)
    model.g_a.short.weight.copy_(basis[:, :, None, None])
    model.g_a.short.bias.copy_(-(basis @ mu))
    model.g_s.short.weight.copy_(basis.T[:, :, None, None])
    model.g_s.short.bias.copy_(mu)
    for layer in (model.g_a.layers[-1], model.g_s.layers[-1]):
        layer.weight.zero_()
        layer.bias.zero_()
