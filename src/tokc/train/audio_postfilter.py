"""Train tokc-audio-v1's learned post-filter (tokc.models.audio_postfilter):
`python -m tokc.train.audio_postfilter --out runs/audio_pf1`, then `--pack FILE` writes the
weights the codec ships (src/tokc/weights/tokc-audio-v1.postfilter1.safetensors).

Data: every clip of the train split of ../shared/data/audio/speech (the validation speakers are
never read), each coded by the shipped codec at --per-clip rate levels drawn uniformly from
--levels and decoded without a post-filter at the default noise fill (header `nf`), or with
the learned fill N (`--learned-fill N`, header `lnf`; with `--fill-shape N`, header `fsh`,
also its shape, and with `--fill-signs N`, header `fsg`, its signs), as the codec decodes before
the post-filter runs; pairs cached in OUT/pairs.npz. Loss against the original:
multi-resolution STFT log-magnitude L1 + spectral convergence (256/512/1024-point) + 0.5 ×
the normalised waveform MSE. Batch 16 × 1 s crops, Adam; checkpoints resume (OUT/ckpt.pt),
JSON-lines log with the loss of the unfiltered decode beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from tokc import format as fmt
from tokc.compress import audio
from tokc.models.audio_postfilter import HOP, PAD, WINDOW, PostfilterNet, pitch
from tokc.train.audio import DEFAULT_DATA, read_mono16k, speech_split
from tokc.train.common import pack_decoder_weights, resume, run_steps

CROP_FRAMES = 101  # 1 s of output per crop


def decoded(codec: audio.AudioCodec, x: np.ndarray, level_milli: int, learned_fill: int = 0,
            fill_shape: int = 0, fill_signs: int = 0) -> np.ndarray:
    """x coded at a level and decoded as the codec does before its post-filter: with the
    learned fill of that number (and the fill shape `fill_shape` and signs `fill_signs` where
    the encoder writes them), or (0) the noise fill at header `nf`."""
    codec = codec.with_low_band_boost(audio.LOW_BAND_BOOST)  # the tokens the encoder writes
    sound = audio.Sound(x[:, None].astype(np.float32), audio.SAMPLE_RATE)
    header = codec.header(sound, level_milli, postfilter=False)
    fill = (("lnf", learned_fill),) if learned_fill else (("nf", audio.NOISE_FILL_MILLI),)
    shaped = bool(fill_shape) and audio.writes_fill_shape(level_milli)  # as the encoder writes it
    signed = shaped and bool(fill_signs)
    if shaped:
        fill += (("fsh", fill_shape),)
    if signed:
        fill += (("fsg", fill_signs),)
    header = dataclasses.replace(header, rate=header.rate + fill)
    chunks = codec.segment_chunks([codec.analyse(codec.latents(x))], level_milli, shape=shaped,
                                  signs=signed)
    data = fmt.pack(header, chunks)
    return codec.decompress(data).samples[:, 0].astype(np.float64)


def make_pairs(data: Path, per_clip: int, levels: tuple[float, float], seed: int,
               learned_fill: int = 0, fill_shape: int = 0, fill_signs: int = 0) -> list:
    codec = audio.open_codec()
    gen = np.random.default_rng(seed)
    train_files, _ = speech_split(data)
    pairs = []
    for i, path in enumerate(train_files):
        x = read_mono16k(path).astype(np.float64)
        for _ in range(per_clip):
            level = int(gen.uniform(*levels) * 1000)
            pairs.append((x, decoded(codec, x, level, learned_fill, fill_shape, fill_signs), level / 1000))
        if i % 50 == 0:
            print(f"pairs: {i}/{len(train_files)} clips", flush=True)
    return pairs


def load_pairs(path: Path) -> list:
    z = np.load(path)
    return [(z[f"x{i}"], z[f"y{i}"], float(z["levels"][i])) for i in range(len(z["levels"]))]


def save_pairs(path: Path, pairs: list) -> None:
    arrays = {"levels": np.array([p[2] for p in pairs])}
    for i, (x, y, _) in enumerate(pairs):
        arrays[f"x{i}"], arrays[f"y{i}"] = x.astype(np.float32), y.astype(np.float32)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


class Batches:
    """Random 1 s crops: the decoded signal around them, their frames' pitch, the original."""

    def __init__(self, pairs: list, gen: np.random.Generator):
        self.items = []
        for x, y, level in pairs:
            padded, lags, r, ahead = pitch(y)
            self.items.append((x, padded, lags, r, ahead, level))
        self.gen = gen

    def __call__(self, n: int):
        out = [[] for _ in range(6)]
        span = 2 * PAD + (CROP_FRAMES + 2) * HOP + WINDOW
        for _ in range(n):
            x, padded, lags, r, ahead, level = self.items[self.gen.integers(len(self.items))]
            f0 = int(self.gen.integers(1, max(2, len(lags) - CROP_FRAMES)))
            # local frame k is the clip's frame f0 - 1 + k: the padded clip from index s
            s = f0 * HOP - HOP
            local = padded[s : s + span]
            fr = slice(f0 - 1, f0 - 1 + CROP_FRAMES + 1)
            target = x[f0 * HOP - HOP : f0 * HOP - HOP + CROP_FRAMES * HOP]
            for lst, v, size in ((out[0], target, CROP_FRAMES * HOP), (out[1], local, span),
                                 (out[2], lags[fr], CROP_FRAMES + 1), (out[3], r[fr], CROP_FRAMES + 1),
                                 (out[4], ahead[fr], CROP_FRAMES + 1)):
                lst.append(np.pad(v, (0, size - len(v))))
            out[5].append(level)
        x, padded, lags, r, ahead, level = out
        f = torch.tensor
        return (f(np.stack(x), dtype=torch.float32), f(np.stack(padded), dtype=torch.float32),
                f(np.stack(lags).clip(1), dtype=torch.int64), f(np.stack(r), dtype=torch.float32),
                f(np.stack(ahead), dtype=torch.float32), f(level, dtype=torch.float32))


def spectral_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    loss = y.new_zeros(())
    for n in (256, 512, 1024):
        w = torch.hann_window(n, device=y.device)
        sy = torch.stft(y, n, n // 4, window=w, return_complex=True).abs()
        sx = torch.stft(x, n, n // 4, window=w, return_complex=True).abs()
        loss = loss + (torch.log(sy + 1e-5) - torch.log(sx + 1e-5)).abs().mean()
        loss = loss + torch.linalg.norm(sy - sx) / (torch.linalg.norm(sx) + 1e-8)
    return loss


def loss_fn(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return spectral_loss(y, x) + 0.5 * ((y - x) ** 2).mean() / ((x**2).mean() + 1e-8)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path("runs/audio_pf1"))
    ap.add_argument("--iters", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-final", type=float, default=2e-4, help="cosine decay to this")
    ap.add_argument("--per-clip", type=int, default=3, help="coded copies of each clip")
    ap.add_argument("--levels", type=float, nargs=2, default=(-1.0, 5.0))
    ap.add_argument("--bands", type=int, default=16,
                    help="log energies in and gains out: per bin (161) or per band of equal width (16)")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--learned-fill", type=int, default=0, metavar="N",
                    help="train on decodes with learned fill N (header lnf) instead of the noise fill")
    ap.add_argument("--fill-shape", type=int, default=0, metavar="N",
                    help="with --learned-fill: decodes with fill shape N (header fsh) too")
    ap.add_argument("--fill-signs", type=int, default=0, metavar="N",
                    help="with --fill-shape: decodes with fill signs N (header fsg) too")
    ap.add_argument("--pack", type=Path, metavar="FILE", help="write the weights and exit")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    model = PostfilterNet(bands=args.bands, hidden=args.hidden)
    opt = torch.optim.Adam(model.parameters(), args.lr)
    ckpt = args.out / "ckpt.pt"
    step = resume(model, opt, ckpt)
    if args.pack:
        pack_decoder_weights(model.params(), args.pack, "tokc_postfilter", step, args)
        return
    cache = args.out / "pairs.npz"
    if cache.exists():
        pairs = load_pairs(cache)
    else:
        pairs = make_pairs(args.data, args.per_clip, tuple(args.levels), args.seed, args.learned_fill,
                           args.fill_shape, args.fill_signs)
        save_pairs(cache, pairs)
    batches = Batches(pairs, np.random.default_rng(args.seed + step))

    def loss_step():
        x, padded, lags, r, ahead, level = batches(args.batch)
        y = model(padded, lags, r, ahead, level)[:, HOP : HOP + x.shape[1]]
        return loss_fn(y, x), lambda: {"unfiltered": loss_fn(padded[:, PAD : PAD + x.shape[1]], x).item()}

    run_steps(model, opt, args, step, ckpt, loss_step)

if __name__ == "__main__":
    main()
