"""Train tokc-audio-v1: `python -m tokc.train.audio --out runs/audio_v1 [--minutes M]`.

Data: the train split of ../shared/data/audio/speech (speech/index.tsv; the validation speakers
are never read for training) and, with probability --music, a crop of ../shared/data/audio/music
downmixed and resampled to 16 kHz. Augmentation: random level (RMS -38..-16 dBFS), speed
0.9..1.1 (soxr), light white noise, a span of digital silence (--silence of the crops). Resumable (model, optimizer, iteration, RNG states in
ckpt.pt), deterministic seeds, JSON-lines log with kbps / PESQ-WB on the validation split at
levels 0, 2.5 and 5. CPU first; CUDA with bf16 autocast when a GPU is present.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from tokc.dsp import decode_frames, frames_for, imdct, pad_signal
from tokc.models.audio import SAMPLE_RATE, AudioConfig, AudioModel
from tokc.models.hyperprior import gaussian_likelihood
from tokc.train.common import export_resume, load_resume, make_optimizer, save_atomic

DEFAULT_DATA = Path(__file__).resolve().parents[3].parent / "shared/data/audio"


def read_mono16k(path: Path) -> np.ndarray:
    import soxr

    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(1)
    if rate != SAMPLE_RATE:
        x = soxr.resample(x, rate, SAMPLE_RATE).astype(np.float32)
    return x


def speech_split(root: Path) -> tuple[list[Path], list[Path]]:
    with open(root / "speech/index.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    train = [root / "speech" / r["path"] for r in rows if r["split"] == "train"]
    val = [root / "speech" / r["path"] for r in rows if r["split"] == "val"]
    return train, val


def music_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "music").rglob("*.flac"))


class Crops:
    """Random augmented crops of (T + 1) * hop samples."""

    def __init__(self, speech: list[np.ndarray], music: list[np.ndarray], p_music: float,
                 length: int, gen: np.random.Generator, p_silence: float = 0.0):
        self.speech, self.music, self.p_music, self.p_silence = speech, music, p_music, p_silence
        self.length, self.gen = length, gen

    def one(self) -> np.ndarray:
        import soxr

        g = self.gen
        pool = self.music if self.music and g.random() < self.p_music else self.speech
        clip = pool[g.integers(len(pool))]
        speed = g.uniform(0.9, 1.1) if g.random() < 0.5 else 1.0
        need = int(math.ceil(self.length * speed)) + 16
        if len(clip) < need:
            clip = np.pad(clip, (0, need - len(clip)))
        s = g.integers(len(clip) - need + 1)
        x = clip[s : s + need].astype(np.float64)
        if speed != 1.0:
            x = soxr.resample(x, round(SAMPLE_RATE * speed), SAMPLE_RATE)
        x = x[: self.length]
        x = np.pad(x, (0, self.length - len(x)))
        rms = np.sqrt(np.mean(x**2)) + 1e-9
        x *= 10 ** (g.uniform(-38, -16) / 20) / rms
        if g.random() < 0.2:
            x += g.standard_normal(len(x)) * 10 ** (g.uniform(-75, -50) / 20)
        if g.random() < self.p_silence:  # digital silence over a span (pauses, gated input)
            a = g.integers(len(x))
            x[a : a + g.integers(len(x) // 4, len(x) + 1)] = 0.0
        peak = np.abs(x).max()
        if peak > 0.99:
            x *= 0.99 / peak
        return x.astype(np.float32)

    def batch(self, n: int) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.one() for _ in range(n)]))


@torch.no_grad()
def validate(model: AudioModel, clips: list[np.ndarray], levels=(0.0, 2.5, 5.0)) -> dict:
    """kbps of the tokens (ideal entropy coding of the coded tokens) and PESQ-WB of the
    noise-filled decode, means over the validation clips."""
    from pesq import pesq

    model.eval()
    cfg = model.config
    hop = cfg.hop
    res = {}
    for lv in levels:
        kbps, scores = [], []
        for i, clip in enumerate(clips):
            t = frames_for(len(clip), hop, 4)
            wave = torch.from_numpy(pad_signal(clip, hop, t)).float()[None]
            y = model.g_a(model.analyse_frames(wave))
            z_hat = torch.round(model.h_a(y))
            mean, log_scale = model.entropy_params(z_hat)
            c = model.code_latents(y, mean, log_scale, torch.tensor([lv]))
            bits = -torch.log2(gaussian_likelihood(c["q"], c["scale"])).sum()
            bits += -torch.log2(model.z_prior.likelihood(z_hat)).sum()
            u_hat = ((c["q"] + c["offset"]) * c["ilg"].exp())[0, cfg.bands :, 0].numpy()
            zero = c["q"][0, cfg.bands :, 0].numpy() == 0
            cap = 0.5 * c["ilg"][0, cfg.bands :, 0].exp().numpy()
            env_hat = y[0, : cfg.bands, 0].numpy()  # the grid values the decoder gets back
            coefs = decode_frames(env_hat, u_hat, zero, cap, cfg.kappa, cfg.power, cfg.norm,
                                  np.random.default_rng(i))
            out = imdct(coefs, hop)[hop : hop + len(clip)].clip(-1, 1)
            kbps.append(bits.item() / (len(clip) / SAMPLE_RATE) / 1000)
            try:
                scores.append(pesq(SAMPLE_RATE, clip.astype(np.float64), out, "wb"))
            except Exception:  # pesq refuses clips without detectable speech
                pass
        res[f"{lv:g}"] = {"kbps": float(np.mean(kbps)), "pesq": float(np.mean(scores))}
    model.train()
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path("runs/audio_v1"))
    ap.add_argument("--iters", type=int, default=1_000_000)
    ap.add_argument("--minutes", type=float, default=1e9)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=48, help="frames per crop (multiple of 4)")
    ap.add_argument("--music", type=float, default=0.15, help="share of music crops")
    ap.add_argument("--silence", type=float, default=0.1,
                    help="share of crops with a span of digital silence")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--gain-lr-scale", type=float, default=10.0)
    ap.add_argument("--ctx-lr-scale", type=float, default=3.0)
    ap.add_argument("--clip", type=float, default=50.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--val-every", type=int, default=1000)
    ap.add_argument("--val-clips", type=int, default=12)
    ap.add_argument("--init-from", type=Path, metavar="FILE",
                    help="model-only .safetensors (--export-resume's file, e.g. checkpoints/"
                    "tokc-audio-v1.resume.safetensors) to start from: weights and step, fresh Adam")
    ap.add_argument("--export-resume", type=Path, metavar="FILE",
                    help="write the run's model (fp32) and step to FILE and exit")
    args = ap.parse_args(argv)

    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "log.jsonl", "a")

    train_files, val_files = speech_split(args.data)
    speech = [read_mono16k(p) for p in train_files]
    music = [read_mono16k(p) for p in music_files(args.data)] if args.music > 0 else []
    val = [read_mono16k(p) for p in val_files]
    val = val[:: max(1, len(val) // args.val_clips)][: args.val_clips]

    torch.manual_seed(args.seed)
    gen = np.random.default_rng(args.seed)
    step = 0
    ckpt = args.out / "ckpt.pt"
    state = torch.load(ckpt, weights_only=True, map_location="cpu") if ckpt.exists() else None
    if state is not None:
        model = AudioModel(AudioConfig(**state["config"]))
        model.load_state_dict(state["model"])
    elif args.init_from:
        config, weights, step = load_resume(args.init_from)
        model = AudioModel(AudioConfig(**config))
        model.load_state_dict(weights)
        print(f"initialised from {args.init_from} (step {step})", flush=True)
    else:
        model = AudioModel(AudioConfig())
    model.to(device)
    opt = make_optimizer(model, args)
    if state is not None:
        opt.load_state_dict(state["opt"])
        gen.bit_generator.state = json.loads(state["gen"])
        torch.set_rng_state(state["rng"])
        step = state["step"]
        print(f"resumed at step {step}", flush=True)
    for grp in opt.param_groups:
        grp["lr"] = args.lr * grp.get("lr_scale", 1.0)
    if args.export_resume:
        export_resume(model, step, args.export_resume)
        return

    crops = Crops(speech, music, args.music, (args.frames + 1) * model.config.hop, gen,
                  args.silence)
    levels = model.config.levels
    t0 = time.time()
    keys = ("kbps", "kbps_z")
    acc = dict.fromkeys(keys, 0.0) | {"n": 0}
    while step < args.iters and (time.time() - t0) < args.minutes * 60:
        wave = crops.batch(args.batch).to(device)
        level = torch.from_numpy(gen.random(args.batch) * (levels - 1)).float().to(device)
        with torch.autocast("cuda", torch.bfloat16, enabled=device == "cuda"):
            out = model(wave, level)
        loss = out["kbps"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        step += 1
        for k in keys:
            acc[k] += out[k].mean().item()
        acc["n"] += 1
        if step % args.ckpt_every == 0:
            n = acc.pop("n")
            rec = {"step": step, "time": time.time(), **{k: v / n for k, v in acc.items()}}
            acc = dict.fromkeys(keys, 0.0) | {"n": 0}
            if step % args.val_every == 0:
                rec["val"] = validate(model, val)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(json.dumps(rec), flush=True)
            save_atomic({
                "model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "gen": json.dumps(gen.bit_generator.state), "rng": torch.get_rng_state(),
                "config": model.config.to_dict(),
            }, ckpt)
    print(f"stopped at step {step}", flush=True)


if __name__ == "__main__":
    main()
