"""Training throughput of tokc-image-v1 on this machine (issue 17, item 1): iterations per
minute of the training step (forward, backward, Adam) for a few settings, measured one after
the other on the same model and crops. `python benchmarks/train_throughput.py --iters 30`.

Settings: eager (the trainer as it ran), channels_last, torch.compile (inductor CPU), and
the thread count. Random crops of the real training set are not needed to time a step:
crops come from a fixed noise image, and the model from the committed resume file."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior
from tokc.train.common import load_resume

RESUME = Path(__file__).resolve().parents[1] / "checkpoints/tokc-image-v1.step133250.safetensors"


def step_fn(model, opt, x, level):
    out = model(x, level)
    loss = (out["bpp"] + model.lmbda(level) * 255**2 * out["mse"]).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def measure(setting: str, threads: int, iters: int, batch: int, crop: int) -> dict:
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    config, weights, _ = load_resume(RESUME)
    model = ImageHyperprior(HyperpriorConfig(**config))
    model.load_state_dict(weights)
    model.train()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, crop, crop, generator=gen)
    level = torch.rand(batch, generator=gen) * 5
    if setting == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    fwd = model
    if setting == "compile":
        fwd = torch.compile(model)
    t_warm = time.perf_counter()
    for _ in range(3):  # warm-up (and compilation)
        step_fn(fwd, opt, x, level)
    t0 = time.perf_counter()
    for _ in range(iters):
        step_fn(fwd, opt, x, level)
    dt = time.perf_counter() - t0
    return {"setting": setting, "threads": threads, "batch": batch, "crop": crop,
            "iters_per_min": round(60 * iters / dt, 1), "warmup_s": round(t0 - t_warm, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--settings", default="eager,channels_last,compile")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--crop", type=int, default=256)
    args = ap.parse_args()
    for t in map(int, args.threads.split(",")):
        for s in args.settings.split(","):
            print(json.dumps(measure(s, t, args.iters, args.batch, args.crop)), flush=True)


if __name__ == "__main__":
    main()
