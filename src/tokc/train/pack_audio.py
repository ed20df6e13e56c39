"""Pack a tokc-audio-v1 training checkpoint into the shipped weights file.

`python -m tokc.train.pack_audio runs/audio_v2/ckpt.pt -o src/tokc/weights/tokc-audio-v1.safetensors`

The same file layout as tokc-image-v1 (tokc.train.pack_image.pack): h_a in fp16 (the codec runs
it in numpy), h_s and the context networks as integer networks calibrated on training speech
(never the validation speakers), the entropy tables and the fixed gains. The transform (MDCT,
companding, envelope) has no weights: the config in the meta says all of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from tokc.dsp import frames_for, pad_signal
from tokc.models.audio import AudioConfig, AudioModel
from tokc.train.audio import DEFAULT_DATA, read_mono16k, speech_split
from tokc.train.pack_image import pack

CODEC_ID = "tokc-audio-v1"
CALIB_LEVEL_DB = (-38, -26, -16)  # calibration clips at these RMS levels (dBFS)


def load_checkpoint(path: Path) -> AudioModel:
    state = torch.load(path, weights_only=True, map_location="cpu")
    model = AudioModel(AudioConfig(**state["config"]))
    model.load_state_dict(state["model"])
    return model.eval()


def calibration_waves(data: Path, every: int = 12) -> list[np.ndarray]:
    """Every `every`-th training clip (never the validation speakers), at a few levels."""
    train, _ = speech_split(data)
    out = []
    for i, p in enumerate(train[::every]):
        x = read_mono16k(p).astype(np.float64)
        x *= 10 ** (CALIB_LEVEL_DB[i % len(CALIB_LEVEL_DB)] / 20) / (np.sqrt(np.mean(x**2)) + 1e-9)
        out.append(np.clip(x, -1, 1))
    return out


@torch.no_grad()
def pack_model(model: AudioModel, waves: list[np.ndarray], out: Path, extra_meta: dict | None = None) -> dict:
    """Pack a model, its integer networks calibrated on 16 kHz waves."""
    hop = model.config.hop
    frames = [model.analyse_frames(torch.from_numpy(pad_signal(x, hop, frames_for(len(x), hop, 4))).float()[None])
              for x in waves]
    return pack(model, frames, out, extra_meta, codec_id=CODEC_ID, synth_gain=False)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--kappa", type=lambda v: [float(k) for k in v.split(",")],
                    help="the decoder's noise-fill share (default: the checkpoint's): one, or one "
                    "per band from the lowest, e.g. 0,0.25,0.55 (the last repeated to the top band); "
                    "a decoder setting, tuned after training on training clips")
    args = ap.parse_args(argv)
    torch.set_flush_denormal(True)
    state = torch.load(args.checkpoint, weights_only=True, map_location="cpu")
    model = load_checkpoint(args.checkpoint)
    if args.kappa is not None:
        kappa = args.kappa if len(args.kappa) > 1 else args.kappa[0]
        if isinstance(kappa, list):
            kappa = (kappa + kappa[-1:] * model.config.bands)[: model.config.bands]
        model.config = dataclasses.replace(model.config, kappa=kappa)
        model.g_a.config = model.config
    meta = pack_model(model, calibration_waves(args.data), args.out, {"train_steps": state["step"]})
    print(json.dumps({k: meta[k] for k in ("intnet_max_err", "train_steps")}))


if __name__ == "__main__":
    main()
