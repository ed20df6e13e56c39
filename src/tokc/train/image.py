"""Train tokc-image-v1: `python -m tokc.train.image --out runs/image_v1 [--minutes M]`.

Resumable (the checkpoint holds model, optimizer, iteration and RNG states), deterministic
seeds, logs JSON lines (loss / bpp / PSNR on a validation set held out of the training folders,
never Kodak). Runs on CPU, or on CUDA with bf16 autocast when a GPU is present.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior, gaussian_likelihood
from tokc.train.common import export_resume, load_resume, make_optimizer, save_atomic
from tokc.train.surgery import (
    add_context,
    add_spatial_context,
    klt_init,
    recalibrate_scales,
    upgrade_state_dict,
    widen_latents,
)

TRAIN_DIRS = ("wikipedia_photos", "urban100", "sun_hays80", "debian_wallpapers")
DEFAULT_DATA = Path(__file__).resolve().parents[3].parent / "shared/data/images/train"


def list_images(root: Path) -> tuple[list[Path], list[Path]]:
    """Every 20th file (sorted) is held out for validation."""
    files = sorted(p for d in TRAIN_DIRS for p in (root / d).iterdir() if p.is_file())
    val = files[::20]
    train = [p for p in files if p not in set(val)]
    return train, val


def load(path: Path) -> torch.Tensor:
    img = np.asarray(Image.open(path).convert("RGB"))
    return torch.from_numpy(img.copy()).permute(2, 0, 1).contiguous()  # uint8 (3, H, W)


def random_batch(images, batch: int, crop: int, gen: torch.Generator) -> torch.Tensor:
    out = torch.empty(batch, 3, crop, crop)
    for i in range(batch):
        img = images[torch.randint(len(images), (1,), generator=gen).item()]
        _, h, w = img.shape
        y = torch.randint(h - crop + 1, (1,), generator=gen).item()
        x = torch.randint(w - crop + 1, (1,), generator=gen).item()
        c = img[:, y : y + crop, x : x + crop]
        if torch.rand(1, generator=gen).item() < 0.5:
            c = c.flip(2)
        out[i] = c.float() / 255
    return out


def center_crops(images, size: int = 256) -> torch.Tensor:
    crops = []
    for img in images:
        _, h, w = img.shape
        s = min(size, h, w) // 64 * 64
        y, x = (h - s) // 2, (w - s) // 2
        crops.append(img[:, y : y + s, x : x + s].float()[None] / 255)
    return crops


@torch.no_grad()
def validate(model: ImageHyperprior, crops, levels=(0.0, 2.5, 5.0)) -> dict:
    model.eval()
    res = {}
    for lv in levels:
        bpp, psnr = [], []
        for x in crops:
            y = model.g_a(x)
            z_hat = torch.round(model.h_a(y))
            mean, log_scale = model.entropy_params(z_hat)
            c = model.code_latents(y, mean, log_scale, torch.tensor([lv], device=x.device))
            bits = -torch.log2(gaussian_likelihood(c["q"], c["scale"])).sum()
            bits += -torch.log2(model.z_prior.likelihood(z_hat)).sum()
            x_hat = model.g_s((c["q"] + c["offset"]) * c["ilg"].exp()).clamp(0, 1)
            mse = ((x_hat * 255).round() / 255 - x).square().mean().item()
            bpp.append(bits.item() / (x.shape[2] * x.shape[3]))
            psnr.append(10 * math.log10(1 / max(mse, 1e-12)))
        res[f"{lv:g}"] = {"bpp": float(np.mean(bpp)), "psnr": float(np.mean(psnr))}
    model.train()
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path("runs/image_v1"))
    ap.add_argument("--iters", type=int, default=1_000_000, help="stop at this iteration")
    ap.add_argument("--minutes", type=float, default=1e9, help="stop after this wall time")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--gain-lr-scale", type=float, default=10.0)
    ap.add_argument("--clip", type=float, default=50.0, help="gradient norm clipping")
    ap.add_argument("--shortcut", action=argparse.BooleanOptionalAction, default=True,
                    help="linear block-transform shortcut beside g_a/g_s (new runs only)")
    ap.add_argument("--n", type=int, default=64, help="transform width (new runs only)")
    ap.add_argument("--m", type=int, default=96, help="latent channels (new runs only)")
    ap.add_argument("--init-from", type=Path, help="model-only .safetensors to start from "
                    "(python -m tokc.train.image --export-resume writes one)")
    ap.add_argument("--widen-m", type=int, metavar="M",
                    help="with --init-from: grow the latent channels to M (widen_latents)")
    ap.add_argument("--ctx-slices", type=int, metavar="S",
                    help="with --init-from: add a channel-wise context model of S slices "
                    "(add_context; it starts at zero, so the codec starts where it was)")
    ap.add_argument("--ctx-width", type=int, default=64)
    ap.add_argument("--recalibrate-scales", action="store_true",
                    help="with --init-from: shift each channel's predicted log-scale to the "
                    "value that codes training crops in the fewest bits (recalibrate_scales)")
    ap.add_argument("--ctx-spatial", action="store_true",
                    help="with --init-from: add a checkerboard context inside each slice "
                    "(add_spatial_context; it starts at zero too)")
    ap.add_argument("--ctx-lr-scale", type=float, default=3.0)
    ap.add_argument("--export-resume", type=Path, metavar="FILE",
                    help="write the run's model (fp32) and step to FILE and exit")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--val-every", type=int, default=1000)
    args = ap.parse_args(argv)

    torch.set_flush_denormal(True)  # denormals slow CPU training fourfold after ~1k iterations
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "log.jsonl", "a")

    train_files, val_files = list_images(args.data)
    images = [load(p) for p in train_files]
    images = [im for im in images if min(im.shape[1:]) >= args.crop]
    val = [c.to(device) for c in center_crops([load(p) for p in val_files])]

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    step = 0
    ckpt = args.out / "ckpt.pt"
    state = torch.load(ckpt, weights_only=True, map_location="cpu") if ckpt.exists() else None
    if state is not None:
        model = ImageHyperprior(HyperpriorConfig(**state["config"]))
        model.load_state_dict(upgrade_state_dict(state["model"]))
    elif args.init_from:  # a committed model-only checkpoint: weights and step, fresh Adam
        config, weights, step = load_resume(args.init_from)
        model = ImageHyperprior(HyperpriorConfig(**config))
        model.load_state_dict(weights)
        print(f"initialised from {args.init_from} (step {step})", flush=True)
        if args.widen_m:
            model = widen_latents(model, args.widen_m, images)
            print(f"widened the latents to {args.widen_m} channels", flush=True)
        if args.ctx_slices:
            model = add_context(model, args.ctx_slices, args.ctx_width)
            print(f"added a channel-wise context of {args.ctx_slices} slices", flush=True)
        if args.ctx_spatial:
            model = add_spatial_context(model)
            print("added a checkerboard context inside each slice", flush=True)
        if args.recalibrate_scales:
            model.eval()
            res = recalibrate_scales(model, center_crops([load(p) for p in train_files[3::12]]))
            model.train()
            moved = int((res["shift"] != 0).sum())
            print(f"recalibrated the log-scales: {moved} channels moved, estimated bits "
                  f"{100 * res['bits_change']:+.1f} %", flush=True)
    else:
        model = ImageHyperprior(HyperpriorConfig(n=args.n, m=args.m, shortcut=args.shortcut))
        klt_init(model, images)
    model.to(device)  # before the optimizer, so that its state lives on the same device
    opt = make_optimizer(model, args)
    if state is not None:
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        torch.set_rng_state(state["rng"])
        step = state["step"]
        print(f"resumed at step {step}", flush=True)
    for grp in opt.param_groups:
        grp["lr"] = args.lr * grp.get("lr_scale", 1.0)
    if args.export_resume:
        export_resume(model, step, args.export_resume)
        return

    levels = model.config.levels
    t0 = time.time()
    acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
    while step < args.iters and (time.time() - t0) < args.minutes * 60:
        x = random_batch(images, args.batch, args.crop, gen).to(device)
        level = torch.rand(args.batch, generator=gen) * (levels - 1)
        with torch.autocast("cuda", torch.bfloat16, enabled=device == "cuda"):
            out = model(x, level.to(device))
        lam = model.lmbda(level.to(device))
        loss = (out["bpp"] + lam * 255**2 * out["mse"]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        step += 1
        acc["loss"] += loss.item()
        acc["bpp"] += out["bpp"].mean().item()
        acc["mse"] += out["mse"].mean().item()
        acc["n"] += 1
        if step % args.ckpt_every == 0:
            n = acc.pop("n")
            rec = {"step": step, "time": time.time(), **{k: v / n for k, v in acc.items()}}
            acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
            if step % args.val_every == 0:
                rec["val"] = validate(model, val)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(json.dumps(rec), flush=True)
            state = {
                "model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "gen": gen.get_state(), "rng": torch.get_rng_state(),
                "config": model.config.to_dict(),
            }
            save_atomic(state, ckpt)
    print(f"stopped at step {step}", flush=True)


if __name__ == "__main__":
    main()
