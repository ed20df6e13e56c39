"""Train tokc-audio-v1's learned noise fill (tokc.models.audio_fill):
`python -m tokc.train.audio_fill --out runs/audio_fill1`, then `--pack FILE` writes the weights
the codec ships (src/tokc/weights/tokc-audio-v1.fill1.safetensors).

Data: every clip of the train split of ../shared/data/audio/speech (the validation speakers are
never read), coded by the shipped encoder at --per-clip rate levels drawn uniformly from
--levels; per segment the decoder's features (tokc.dsp.fill_features) and, for each coefficient
coded as zero, its true value in units of a zero token's cap (cached in OUT/data.npz). Loss: the
Gaussian negative log-likelihood of those values under the predicted mean square (so the
prediction is the conditional mean square: the fill keeps the energy). Batch of 32-frame crops,
Adam with cosine decay; checkpoints resume (OUT/ckpt.pt), JSON-lines log.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from tokc import dsp
from tokc.compress import audio
from tokc.models.audio_fill import FillNet
from tokc.train.audio import DEFAULT_DATA, read_mono16k, speech_split
from tokc.train.common import pack_decoder_weights, resume, run_steps

CROP = 32  # frames per training crop


def segment_examples(codec: audio.AudioCodec, x: np.ndarray, level_milli: int) -> list:
    """x coded at a level -> per segment (features float16, target r² float32, zero mask)."""
    w = codec.weights
    y = codec.latents(x)
    out = []
    for (s, n), (ys, _, mean, log_scale_q) in zip(audio.segments(y.shape[1]), codec.analyse(y), strict=True):
        if not ys[w.bands:].any():
            continue
        c = codec.latent.code(ys, mean, log_scale_q, level_milli, codec.weight_at(level_milli), codec.grid)
        env_hat, q, u_hat, cap = codec.fill_inputs(c, level_milli)
        feats = dsp.fill_features(q, env_hat, u_hat, cap, level_milli / 1000, w.power, w.norm)
        r2 = (y[w.bands:, s : s + n] / cap) ** 2
        out.append((feats.astype(np.float16), r2.astype(np.float32), q == 0))
    return out


def make_data(data: Path, per_clip: int, levels: tuple[float, float], seed: int) -> list:
    codec = audio.open_codec()
    gen = np.random.default_rng(seed)
    train_files, _ = speech_split(data)
    examples = []
    for i, path in enumerate(train_files):
        x = read_mono16k(path).astype(np.float64)
        for _ in range(per_clip):
            examples += segment_examples(codec, x, int(gen.uniform(*levels) * 1000))
        if i % 50 == 0:
            print(f"data: {i}/{len(train_files)} clips", flush=True)
    return examples


def save_data(path: Path, examples: list) -> None:
    arrays = {}
    for i, (f, r2, m) in enumerate(examples):
        arrays[f"f{i}"], arrays[f"r{i}"], arrays[f"m{i}"] = f, r2, m
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, n=np.array(len(examples)), **arrays)
    tmp.replace(path)


def load_data(path: Path) -> list:
    z = np.load(path)
    return [(z[f"f{i}"], z[f"r{i}"], z[f"m{i}"]) for i in range(int(z["n"]))]


def batch(examples: list, n: int, gen: np.random.Generator):
    feats, r2, mask = [], [], []
    for _ in range(n):
        f, r, m = examples[gen.integers(len(examples))]
        t = f.shape[2]
        s = int(gen.integers(0, max(1, t - CROP + 1)))
        pad = ((0, 0), (0, max(0, CROP - t)))
        feats.append(np.pad(f[:, :, s : s + CROP].astype(np.float32), ((0, 0),) + pad))
        r2.append(np.pad(r[:, s : s + CROP], pad))
        mask.append(np.pad(m[:, s : s + CROP], pad))
    return torch.from_numpy(np.stack(feats)), torch.from_numpy(np.stack(r2)), torch.from_numpy(np.stack(mask))


def nll(log_ms: torch.Tensor, r2: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Gaussian NLL (up to constants) of the zeros' true values under mean square exp(log_ms)."""
    per = log_ms + r2 * torch.exp(-log_ms)
    return (per * mask).sum() / mask.sum().clamp(min=1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path("runs/audio_fill1"))
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--lr-final", type=float, default=2e-4, help="cosine decay to this")
    ap.add_argument("--per-clip", type=int, default=2, help="coded copies of each clip")
    ap.add_argument("--levels", type=float, nargs=2, default=(-1.0, 5.0))
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pack", type=Path, metavar="FILE", help="write the weights and exit")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    model = FillNet(hidden=args.hidden)
    opt = torch.optim.Adam(model.parameters(), args.lr)
    ckpt = args.out / "ckpt.pt"
    step = resume(model, opt, ckpt)
    if args.pack:
        pack_decoder_weights(model.params(), args.pack, "tokc_fill", step, args)
        return
    cache = args.out / "data.npz"
    if cache.exists():
        examples = load_data(cache)
    else:
        examples = make_data(args.data, args.per_clip, tuple(args.levels), args.seed)
        save_data(cache, examples)
    gen = np.random.default_rng(args.seed + step)

    def loss_step():
        feats, r2, mask = batch(examples, args.batch, gen)
        # beside it in the log, a flat fill: the best single mean square for the batch
        return nll(model(feats), r2, mask), lambda: {
            "flat": nll(torch.log((r2 * mask).sum() / mask.sum()).expand_as(r2), r2, mask).item()}

    run_steps(model, opt, args, step, ckpt, loss_step)

if __name__ == "__main__":
    main()
