"""tokc-audio-v1: a variable-rate transform codec for 16 kHz audio with a learned entropy model.

Signal path (the transform is fixed; what is learned is how to code it):
waveform -> MDCT (hop 320 = 20 ms, sine window; tokc.dsp) -> a log2 band envelope (`bands`
equal bands, 500 Hz each) quantized on a fixed grid of env_step (log2 units), and the
coefficients normalised by the decoded envelope and companded, u = sign(v)|v|^power with
v = X / E^norm (tokc.dsp.analysis): a uniform step on u is a step ~ E^norm |v|^(1-power) on X,
coarser in loud bands and on loud coefficients, as the ear allows, while a band's quiet
coefficients fall to zero and come back as noise. Latents y (m = bands + hop channels, 1, T
frames): the decoded envelope, then the 320 values u.

y is coded exactly like the image codec's latents: a mean-scale hyperprior (h_a downsamples
time by 4, h_s upsamples it back with 1xk convs and depth-to-space by (1, 2), so the codec runs
it in exact integers), a channel-wise context over `ctx_slices` slices (the envelope and the
lowest coefficients first, so every higher slice is coded knowing the envelope) and, inside
each slice, an even/odd-frame context. The rate levels are fixed gains: u's step is 1 / gain
(geometric from gain_min to gain_max); the envelope's gain is 1 / env_step at every level, so
its tokens are the grid's integers less the rounded offset and the decoder gets the grid value
back exactly (what the coefficients were normalised by).

The decoder dequantizes, then fills the coefficients coded as zero with noise at `kappa` of
the band energy they miss against the envelope (tokc.dsp.noise_fill), and inverts the MDCT.

Training: the transform and quantizer being fixed, the distortion at a level is fixed too; the
loss is the rate alone (kbps of the tokens as coded: hard rounding, a discretised Gaussian,
plus the hyper-latent under its factorized prior), so training is density estimation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tokc.dsp import ENV_FLOOR, mdct_basis
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
    bands: int = 16  # envelope bands (equal width)
    m: int = 336  # latent channels per frame: bands + hop
    nz: int = 64  # hyper-latent channels (4 frames each)
    levels: int = 6
    gain_min: float = 3.5  # coefficient gain (1 / step on u, see above) at level 0
    gain_max: float = 64.0  # ... at the last level
    env_step: float = 0.75  # envelope grid, log2 units of the band RMS (4.5 dB)
    norm: float = 0.15  # the coefficients are divided by E^norm (E: decoded band RMS)
    power: float = 0.8  # companding exponent
    kappa: float | list[float] = 0.4  # noise filling: share of the missing band RMS (or per band)
    scale_min: float = 0.11
    ctx_slices: int = 7
    ctx_width: int = 64
    ctx_spatial: bool = True  # even/odd-frame context inside each slice
    ctx_kernel: int = 5

    def to_dict(self) -> dict:
        return asdict(self)


def conv1(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    """A 1xk 'same' convolution over time on (B, C, 1, T)."""
    return nn.Conv2d(cin, cout, (1, k), stride=(1, stride), padding=(0, k // 2))


class Shuffle1d(nn.Module):
    """Depth-to-space by (1, 2): (B, 2C, 1, T) -> (B, C, 1, 2T)."""

    def forward(self, x):
        return pixel_shuffle_2d(x, 1, 2)


def subpixel_up1d(cin: int, cout: int) -> nn.Sequential:
    """1x3 conv to 2*cout channels, then depth-to-space by (1, 2): time doubles."""
    return nn.Sequential(conv1(cin, 2 * cout), Shuffle1d())


class Latents(nn.Module):
    """MDCT frames (B, hop, 1, T) -> y (B, bands + hop, 1, T): the decoded log2 band envelope,
    then the normalised, companded coefficients (tokc.dsp.analysis's torch twin). No
    parameters."""

    def __init__(self, config: AudioConfig):
        super().__init__()
        self.config = config

    def forward(self, x):
        cfg = self.config
        b, hop, _, t = x.shape
        rms = x.reshape(b, cfg.bands, hop // cfg.bands, 1, t).square().mean(2).sqrt()
        env_hat = torch.round(torch.log2(rms + ENV_FLOOR) / cfg.env_step) * cfg.env_step
        v = x / torch.repeat_interleave(torch.exp2(cfg.norm * env_hat), hop // cfg.bands, 1)
        return torch.cat([env_hat, v.sign() * v.abs().pow(cfg.power)], 1)


class Magnitudes(nn.Module):
    """h_a's input: the envelope as it is, the coefficients' magnitudes (their sign says
    nothing of their scale)."""

    def __init__(self, bands: int):
        super().__init__()
        self.bands = bands

    def forward(self, y):
        return torch.cat([y[:, : self.bands], y[:, self.bands:].abs()], 1)


class AudioModel(ImageHyperprior):
    """The hyperprior's coding machinery (levels, code_latents) on (B, C, 1, T) latents."""

    # h_s's depth-to-space, as the integer-network packer writes it
    hs_shuffle = (1, 2)

    def __init__(self, config: AudioConfig = AudioConfig()):
        nn.Module.__init__(self)
        self.config = config
        c, m, nz, L, k = config.hop, config.m, config.nz, config.levels, config.ctx_kernel
        if m != c + config.bands or c % config.bands:
            raise ValueError("m must be bands + hop, and bands must divide hop")
        self.g_a = Latents(config)
        self.g_s = nn.Identity()
        self.h_a = nn.Sequential(
            Magnitudes(config.bands), conv1(m, nz), nn.ReLU(), conv1(nz, nz, 5, 2), nn.ReLU(),
            conv1(nz, nz, 5, 2),
        )
        # only 1xk convs, ReLU and depth-to-space: the codec runs h_s exactly in integers
        self.h_s = nn.Sequential(
            subpixel_up1d(nz, nz), nn.ReLU(), subpixel_up1d(nz, m), nn.ReLU(), conv1(m, 2 * m),
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
        gain = torch.logspace(math.log10(config.gain_min), math.log10(config.gain_max), L)
        log_gain = torch.cat([
            torch.full((L, config.bands), -math.log(config.env_step)),
            gain.log()[:, None].repeat(1, c),
        ], 1)
        self.register_buffer("log_gain", log_gain)
        self.register_buffer("log_igain", -log_gain)
        self.register_buffer("basis", torch.from_numpy(mdct_basis(c)).float(), persistent=False)

    def analyse_frames(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, (T+1)*hop) -> MDCT coefficients (B, hop, 1, T)."""
        coefs = F.conv1d(wave[:, None], self.basis[:, None, :], stride=self.config.hop)
        return coefs[:, :, None]

    def forward(self, wave: torch.Tensor, level: torch.Tensor) -> dict:
        """Training pass: wave (B, (T+1)*hop) in [-1, 1], T a multiple of 4 -> kbps (B,)."""
        y = self.g_a(self.analyse_frames(wave))
        z = self.h_a(y)
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        mean, log_scale = self.entropy_params(round_ste(z))
        c = self.code_latents(y, mean, log_scale, level)
        seconds = y.shape[-1] * self.config.hop / SAMPLE_RATE
        bits_y = -torch.log2(gaussian_likelihood(c["q"], c["scale"])).sum((1, 2, 3))
        bits_z = -torch.log2(self.z_prior.likelihood(z_noisy)).sum((1, 2, 3))
        return {"kbps": (bits_y + bits_z) / seconds / 1000, "kbps_z": bits_z / seconds / 1000}
