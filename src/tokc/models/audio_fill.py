"""The learned noise fill of tokc-audio-v1's decoder, in torch for training
(`python -m tokc.train.audio_fill`); `tokc.dsp.learned_fill` runs the same network in numpy and
is what the codec uses.

The MDCT coefficients coded as zero are not silent in the original: their magnitudes follow the
voice's harmonics and formants. The noise fill gives each band's zeros the same level; this
network predicts, for each coefficient coded as zero, the mean square of its true value (in
units of a zero token's largest magnitude) from what the decoder has: the decoded tokens, the
envelope, what each band's decoded coefficients miss against it, the level and the frequency
(`tokc.dsp.fill_features`). A 2-D convolutional network over (frequency, frame), dilated along
frequency so that it spans a few harmonics; the decoder gives each zero that RMS with a random
sign.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tokc import dsp

DILATIONS = (1, 2, 4, 8)  # along frequency, one per hidden layer


class FillNet(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        chans = [dsp.FILL_FEATURES] + [hidden] * len(DILATIONS)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=(d, 1), dilation=(d, 1))
                                   for a, b, d in zip(chans[:-1], chans[1:], DILATIONS, strict=True))
        self.out = nn.Conv2d(hidden, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, -2.0)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats (B, FILL_FEATURES, hop, frames) -> log mean square (B, hop, frames), clipped
        as the decoder clips it."""
        h = feats
        for conv in self.convs:
            h = F.relu(conv(h))
        return self.out(h)[:, 0].clamp(*dsp.FILL_LOG_RANGE)

    def params(self) -> dict[str, np.ndarray]:
        """The weights `tokc.dsp.learned_fill` takes: conv{i}.weight / .bias, out.weight / .bias."""
        out = {}
        for i, conv in enumerate(self.convs):
            out[f"conv{i}.weight"] = conv.weight.detach().cpu().numpy()
            out[f"conv{i}.bias"] = conv.bias.detach().cpu().numpy()
        out["out.weight"] = self.out.weight.detach().cpu().numpy()
        out["out.bias"] = self.out.bias.detach().cpu().numpy()
        return out
