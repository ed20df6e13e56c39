"""The learned pitch post-filter of tokc-audio-v1's decoder, in torch for training
(`python -m tokc.train.audio_postfilter`); `tokc.dsp.LearnedPostfilter` runs the same
computation in numpy, streaming, and is what the codec uses.

Per 10 ms frame (20 ms periodic Hann windows) of the decoded 16 kHz signal: the pitch (lag,
correlation, ahead flag: `tokc.dsp.pitch_frames`, computed once in numpy, not learned) and
log energies (per bin, or per band) feed a 1-D convolutional network over the frames, which
gives a comb weight and gains (per bin, or per band); the frame is combed at its pitch lag, its
spectrum scaled by the gains, and the frames overlap-added. Shipped: post-filter 1, 16 bands,
64 channels (28 k parameters); per bin with 128 channels was tried (the audio model card).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tokc import dsp

WINDOW, HOP = dsp.LearnedPostfilter.WINDOW, dsp.LearnedPostfilter.HOP
MAX_LAG = dsp.LearnedPostfilter.MAX_LAG
PAD = MAX_LAG + WINDOW  # zeros before and after a signal (and more after: see pitch)


def pitch(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A decoded signal -> (padded signal, lags, r, ahead) for its frames 0..(n + HOP) // HOP
    (frame f starts at sample f·HOP − HOP; the padded signal has PAD zeros in front)."""
    n = len(y)
    padded = np.concatenate([np.zeros(PAD), np.asarray(y, np.float64), np.zeros(PAD + WINDOW)])
    frames = np.arange((n + HOP) // HOP + 1)
    lags, r, ahead = dsp.pitch_frames(padded, PAD + frames * HOP - HOP)
    return padded, lags, r, ahead


class PostfilterNet(nn.Module):
    def __init__(self, bands: int = 16, hidden: int = 64, kernel: int = 5):
        """bands: log energies in and gains out per band of equal width (16), or per bin
        (WINDOW // 2 + 1 = 161)."""
        super().__init__()
        self.conv0 = nn.Conv1d(bands + 4, hidden, kernel, padding=kernel // 2)
        self.conv1 = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(hidden, 1 + bands, 1)
        nn.init.zeros_(self.conv2.weight)  # starts as a comb at sigmoid(-1)·r, gains 1
        nn.init.zeros_(self.conv2.bias)
        bins = WINDOW // 2 + 1
        self.register_buffer("window", torch.from_numpy(np.hanning(WINDOW + 1)[:-1]).float())
        self.register_buffer("bsum", torch.from_numpy(dsp.band_sum_matrix(bins, bands)).float())
        self.register_buffer("interp", torch.from_numpy(dsp.band_interp_matrix(bins, bands)).float())

    def forward(self, padded: torch.Tensor, lags: torch.Tensor, r: torch.Tensor,
                ahead: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """padded (B, L) with PAD zeros (or signal) before frame 0's start + HOP; lags, r,
        ahead (B, F) for frames 0..F-1; level (B,). Returns the overlap-added output (B,
        (F + 1)·HOP), starting at frame 0's start; samples [HOP, F·HOP) are covered twice."""
        b, nf = lags.shape
        idx = (PAD - HOP + HOP * torch.arange(nf, device=padded.device))[None, :, None] \
            + torch.arange(WINDOW, device=padded.device)
        idx = idx.expand(b, -1, -1)

        def take(i):
            return torch.gather(padded, 1, i.reshape(b, -1)).view(b, nf, WINDOW)

        seg = take(idx)
        back, fwd = take(idx - lags[..., None]), take(idx + lags[..., None])
        a = ahead[..., None]
        comb = a * 0.5 * (back + fwd) + (1 - a) * back
        energy = torch.fft.rfft(seg * self.window, dim=-1).abs() ** 2 @ self.bsum
        feats = torch.cat([torch.log(energy + 1e-7) / 5, r[..., None], a,
                           lags[..., None].float() / MAX_LAG, (level / 5)[:, None, None].expand(b, nf, 1)], -1)
        h = F.relu(self.conv0(feats.transpose(1, 2)))
        h = F.relu(self.conv1(h))
        o = self.conv2(h).transpose(1, 2)
        alpha = torch.sigmoid(o[..., :1] - 1.0) * r[..., None]
        gains = torch.exp(o[..., 1:].clamp(-2.0, 2.0)) @ self.interp
        spec = torch.fft.rfft((seg + alpha * comb) / (1 + alpha) * self.window, dim=-1) * gains
        frames = torch.fft.irfft(spec, n=WINDOW, dim=-1)
        return F.fold(frames.transpose(1, 2), (1, (nf + 1) * HOP), (1, WINDOW),
                      stride=(1, HOP)).view(b, -1)

    def params(self) -> dict[str, np.ndarray]:
        """The weights `tokc.dsp.LearnedPostfilter` takes."""
        return {f"conv{i}.{k}": getattr(self, f"conv{i}").state_dict()[k].detach().cpu().numpy()
                for i in range(3) for k in ("weight", "bias")}
