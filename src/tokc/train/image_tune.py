"""Tune tokc-image-v1's synthesis for perceptual fidelity: `python -m tokc.train.image_tune
--out runs/image_tune [--minutes M]`.

Only g_s trains; the encoder, the entropy model and the bitstream are the shipped ones, so a
file coded once decodes with either synthesis (`tokc compress --tune perceptual` names the
tune in the header). The latents are computed once, by the shipped codec itself (exact integer
networks, RDOQ, the levels -q 0..100 reach), for a pool of random training crops at random
levels, and kept in the run folder (`pool.npz`); each step then costs only g_s and the loss.

Loss per crop, relative to the shipped synthesis on the same crop (d0, mse0, computed once
with the pool): (100 - SSIMULACRA2) / d0 + mse_weight * MSE / mse0, SSIMULACRA2 from
tokc.train.ssimulacra2 (the benchmark's metric in torch). Relative terms weigh every level
alike in what BD-rate counts: a score point costs more bits at high rates, where the curve is
flat, and there 100 - SSIMULACRA2 is small too. The MSE term keeps colours and PSNR from
drifting. Resumable, logs JSON lines
with validation PSNR and SSIMULACRA2 on crops held out of the training folders (never Kodak).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from tokc.compress.image import ImageCodec, ImageWeights
from tokc.models import packed
from tokc.train.common import save_atomic
from tokc.train.image import DEFAULT_DATA, center_crops, list_images, load
from tokc.train.ssimulacra2 import score

LEVELS_MILLI = (-1000, 5000)  # the range -q 0..100 codes at


def latents_of(codec: ImageCodec, crop: np.ndarray, level_milli: int) -> np.ndarray:
    """y_hat of an (H, W, 3) uint8 crop as the shipped encoder codes it (effort 1)."""
    return codec.latents(codec.code(codec.analyse(crop), level_milli), level_milli)


def make_pool(codec: ImageCodec, images, n: int, crop: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    xs, ys, levels = [], [], []
    t0 = time.time()
    for i in range(n):
        img = images[rng.integers(len(images))]  # (3, H, W) uint8 tensor
        _, h, w = img.shape
        y0, x0 = rng.integers(h - crop + 1), rng.integers(w - crop + 1)
        c = img[:, y0 : y0 + crop, x0 : x0 + crop].permute(1, 2, 0).numpy()
        if rng.random() < 0.5:
            c = c[:, ::-1]
        c = np.ascontiguousarray(c)
        lv = int(rng.integers(LEVELS_MILLI[0], LEVELS_MILLI[1] + 1))
        xs.append(c)
        ys.append(latents_of(codec, c, lv).astype(np.float16))
        levels.append(lv)
        if (i + 1) % 250 == 0:
            print(f"pool {i + 1}/{n} ({time.time() - t0:.0f} s)", flush=True)
    return {"x": np.stack(xs), "y": np.stack(ys), "level_milli": np.array(levels)}


def pools(codec: ImageCodec, out: Path, data: Path, n: int, crop: int, seed: int) -> tuple[dict, dict]:
    """The run folder's training pool (n random crops at random levels) and validation set
    (centre crops of the held-out images at levels -1 / 1 / 3 / 5), made on first use."""
    train_files, val_files = list_images(data)
    pool_path, val_path = out / "pool.npz", out / "val.npz"
    if not pool_path.exists():
        images = [im for im in (load(p) for p in train_files) if min(im.shape[1:]) >= crop]
        np.savez(pool_path, **make_pool(codec, images, n, crop, seed))
    if not val_path.exists():
        crops = [(c[0] * 255).round().byte().permute(1, 2, 0).numpy()
                 for c in center_crops([load(p) for p in val_files], crop)]
        crops = [c for c in crops if c.shape[:2] == (crop, crop)]
        levels = (-1000, 1000, 3000, 5000)
        val = {"x": np.stack([c for c in crops for _ in levels]),
               "y": np.stack([latents_of(codec, c, lv).astype(np.float16) for c in crops for lv in levels]),
               "level_milli": np.array([lv for _ in crops for lv in levels])}
        np.savez(val_path, **val)
    return dict(np.load(pool_path)), dict(np.load(val_path))


def crops(pool: dict, idx) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of a pool (or the validation set) as tensors: images (N, 3, H, W) in 0..1 and
    their latents y_hat (N, M, h, w)."""
    return (torch.from_numpy(pool["x"][idx]).permute(0, 3, 1, 2).float() / 255,
            torch.from_numpy(pool["y"][idx]).float())


def loss_terms(g_s, x: torch.Tensor, y_hat: torch.Tensor, d0: torch.Tensor, mse0: torch.Tensor,
               mse_weight: float):
    x_hat = g_s(y_hat)
    s = score(x, x_hat)
    mse = (x_hat - x).square().mean((1, 2, 3))
    loss = (100 - s) / d0 + mse_weight * mse / mse0
    return loss.mean(), s, mse


@torch.no_grad()
def reference(g_s, pool: dict, batch: int = 8) -> dict[str, np.ndarray]:
    """100 - SSIMULACRA2 and the MSE of the starting synthesis on each pool crop."""
    d0, mse0 = [], []
    for i in range(0, len(pool["level_milli"]), batch):
        x, y = crops(pool, slice(i, i + batch))
        x_hat = g_s(y)
        d0.append((100 - score(x, x_hat)).clamp_min(1.0).numpy())
        mse0.append((x_hat - x).square().mean((1, 2, 3)).clamp_min(1e-6).numpy())
    return {"d0": np.concatenate(d0).astype(np.float32), "mse0": np.concatenate(mse0).astype(np.float32)}


@torch.no_grad()
def validate(g_s, val: dict) -> dict:
    g_s.eval()
    res = {}
    for lv in sorted(set(val["level_milli"].tolist())):
        sel = val["level_milli"] == lv
        x, y = crops(val, sel)
        x_hat = (g_s(y).clamp(0, 1) * 255).round() / 255
        mse = (x_hat - x).square().mean((1, 2, 3)).clamp_min(1e-12)
        res[str(lv)] = {"psnr": float((10 * torch.log10(1 / mse)).mean()),
                        "ssimulacra2": float(score(x, x_hat).mean())}
    g_s.train()
    return res


def pack_tune(ckpt: Path, weights: ImageWeights, out: Path, tune: str = "perceptual") -> dict:
    """The tune file (tokc.compress.image.TuneWeights) of a run's checkpoint: g_s in fp16 as in
    the weights file, its meta naming the weights it decodes for."""
    state = torch.load(ckpt, weights_only=True, map_location="cpu")
    tensors = {f"g_s.{k}": v.numpy().astype(np.float16) for k, v in state["g_s"].items()}
    meta = {"codec": f"{weights.codec_id}.{tune}", "tune": tune, "config": weights.config,
            "base_sha256": weights.sha256,
            "training": {"step": int(state["step"]), "mse_weight": state.get("mse_weight")}}
    packed.write(out, tensors, meta)
    return meta


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--weights", type=Path, help="packed weights (default: the shipped ones)")
    ap.add_argument("--out", type=Path, default=Path("runs/image_tune"))
    ap.add_argument("--pool", type=int, default=3000, help="training crops in the latent pool")
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--mse-weight", type=float, default=0.5)
    ap.add_argument("--iters", type=int, default=1_000_000)
    ap.add_argument("--minutes", type=float, default=1e9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--pack", type=Path, metavar="FILE",
                    help="write the run's synthesis as a tune file (beside the weights: "
                    "tokc-image-v1.perceptual.safetensors) and exit")
    args = ap.parse_args(argv)
    if args.pack:
        weights = ImageWeights(args.weights) if args.weights else ImageWeights()
        meta = pack_tune(args.out / "ckpt.pt", weights, args.pack)
        print(f"wrote {args.pack} (step {meta['training']['step']})", flush=True)
        return

    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "log.jsonl", "a")
    weights = ImageWeights(args.weights) if args.weights else ImageWeights()
    codec = ImageCodec(weights, backend="onnx" if args.weights is None else "auto")

    pool, val = pools(codec, args.out, args.data, args.pool, args.crop, args.seed)
    g_s = packed.float_model(weights.file, parts=("g_s",)).g_s.train()
    ref_path = args.out / "pool_ref.npz"
    if not ref_path.exists():
        np.savez(ref_path, **reference(g_s.eval(), pool))
        g_s.train()
    pool.update(dict(np.load(ref_path)))
    opt = torch.optim.Adam(g_s.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    step = 0
    ckpt = args.out / "ckpt.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        g_s.load_state_dict(state["g_s"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        step = state["step"]
        print(f"resumed at step {step}", flush=True)
    else:
        rec = {"step": 0, "val": validate(g_s, val)}
        log.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)
    for grp in opt.param_groups:
        grp["lr"] = args.lr

    t0 = time.time()
    acc = {"loss": 0.0, "ssimulacra2": 0.0, "psnr": 0.0, "n": 0}
    n = len(pool["level_milli"])
    while step < args.iters and time.time() - t0 < args.minutes * 60:
        idx = torch.randint(n, (args.batch,), generator=gen).numpy()
        x, y = crops(pool, idx)
        d0, mse0 = torch.from_numpy(pool["d0"][idx]), torch.from_numpy(pool["mse0"][idx])
        loss, s, mse = loss_terms(g_s, x, y, d0, mse0, args.mse_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(g_s.parameters(), 10.0)
        opt.step()
        step += 1
        acc["loss"] += loss.item()
        acc["ssimulacra2"] += s.mean().item()
        acc["psnr"] += float((10 * torch.log10(1 / mse.detach().clamp_min(1e-12))).mean())
        acc["n"] += 1
        if step % args.ckpt_every == 0:
            k = acc.pop("n")
            rec = {"step": step, "time": time.time(), **{a: v / k for a, v in acc.items()}}
            acc = {"loss": 0.0, "ssimulacra2": 0.0, "psnr": 0.0, "n": 0}
            if step % args.val_every == 0:
                rec["val"] = validate(g_s, val)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(json.dumps(rec), flush=True)
            save_atomic({"g_s": g_s.state_dict(), "opt": opt.state_dict(), "step": step,
                         "gen": gen.get_state(), "mse_weight": args.mse_weight}, ckpt)
    print(f"stopped at step {step}", flush=True)


if __name__ == "__main__":
    main()
