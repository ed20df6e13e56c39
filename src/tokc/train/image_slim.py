"""Narrow tokc-image-v1's synthesis for decode speed: `python -m tokc.train.image_slim
--out runs/image_slim --width 32 [--pool runs/image_tune] [--minutes M]`, then `--pack FILE`.

g_s spends most of its time in its last hidden layer, at half the output resolution: cutting
that layer's width from 64 to 32 channels takes g_s from 45.7 to 31.9 ms on a 768x512 image
(benchmarks/gs_slim.py). The narrow g_s starts from the shipped one with the `width` channels
of most energy into the output layer kept (their inverse GDN sliced alike), then trains on the
latent pool of tokc.train.image_tune (training crops coded once by the shipped encoder at random
levels; never Kodak; made in --pool on first use). Loss per crop: (MSE to the image +
teacher_weight * MSE to the shipped synthesis) / (the shipped synthesis' MSE on that crop).
Relative, so that every level weighs alike in dB: plain MSE favours the low levels, whose errors
are largest, and lost 0.2 dB at the top level.

--mid-width W narrows the hidden layer before it (at a quarter of the output resolution) as
well, with the same selection; a width the weights' g_s already has is left as it is.

--pack writes a weights file: the shipped one with g_s replaced and config.synthesis_last (and
synthesis_mid) set.
Everything the encoder reads (g_a, h_a, the integer networks, the tables, the gains and the
synthesis energies of the token choice) is unchanged, so the files it makes hold the same
tokens as the shipped weights'. It is a new weights version (a new digest): archive the file it
replaces first (python -m tokc.compress.versions).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from tokc.compress.image import ImageCodec, ImageWeights
from tokc.models import packed
from tokc.models.hyperprior import SimplifiedGDN, Synthesis, deconv
from tokc.train.common import save_atomic
from tokc.train.image import DEFAULT_DATA
from tokc.train.image_tune import crops, pools, validate

LAST, MID = 4, 2  # g_s.layers index of the deconvolution into the last / the second hidden layer


def narrow(g_s: Synthesis, width: int, keep: torch.Tensor | None = None, at: int = LAST) -> Synthesis:
    """A copy of g_s with the hidden layer after layers[at] (LAST: at half the output
    resolution; MID: at a quarter) cut to `width` channels (keep: which; default the first):
    the deconvolution into it, its inverse GDN and the deconvolution out of it are sliced."""
    g = copy.deepcopy(g_s)
    layers = g.layers
    keep = torch.arange(width) if keep is None else keep
    into, gdn, out = layers[at], layers[at + 1], layers[at + 2]
    d_in, g_new, d_out = deconv(into.in_channels, width), SimplifiedGDN(width, True), deconv(width, out.out_channels)
    with torch.no_grad():
        d_in.weight.copy_(into.weight[:, keep])
        d_in.bias.copy_(into.bias[keep])
        g_new.beta_p.copy_(gdn.beta_p[keep])
        g_new.gamma_p.copy_(gdn.gamma_p[keep][:, keep])
        d_out.weight.copy_(out.weight[keep])
        d_out.bias.copy_(out.bias)
    layers[at], layers[at + 1], layers[at + 2] = d_in, g_new, d_out
    return g


@torch.no_grad()
def strongest(g_s: Synthesis, y: torch.Tensor, width: int, at: int = LAST) -> torch.Tensor:
    """The `width` channels of the hidden layer after layers[at] carrying most energy into the
    next deconvolution on y."""
    a = g_s.layers[: at + 2](y)
    energy = a.square().mean((0, 2, 3)) * g_s.layers[at + 2].weight.square().sum((1, 2, 3))
    return torch.argsort(energy, descending=True)[:width].sort().values


def pack_slim(ckpt: Path, weights: ImageWeights, out: Path) -> dict:
    """The weights file of a run: the weights' tensors with g_s replaced (fp16 as there). out
may be the weights' own path (it is written beside, then moved)."""
    state = torch.load(ckpt, weights_only=True, map_location="cpu")
    f = weights.file
    tensors = {k: v for k, v in f.tensors.items() if not k.startswith("g_s.")}
    tensors.update({f"g_s.{k}": v.numpy().astype(np.float16) for k, v in state["g_s"].items()})
    widths = {"synthesis_last": int(state["width"]), "synthesis_mid": int(state.get("mid_width", 0))}
    meta = {**f.meta, "config": {**f.meta["config"], **{k: v for k, v in widths.items() if v}},
            "synthesis": {"narrowed_from_sha256": f.sha256, "steps": int(state["step"]),
                          "teacher_weight": state["teacher_weight"]}}
    tmp = Path(out).with_name(Path(out).name + ".tmp")
    packed.write(tmp, tensors, meta)
    os.replace(tmp, out)
    return meta


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--weights", type=Path, help="packed weights (default: the shipped ones)")
    ap.add_argument("--out", type=Path, default=Path("runs/image_slim"))
    ap.add_argument("--pool", type=Path, help="folder of the latent pool (default: --out); "
                    "an image_tune run of the same weights has one")
    ap.add_argument("--width", type=int, default=32, help="g_s's last hidden width")
    ap.add_argument("--mid-width", type=int, default=0, help="g_s's second hidden width (0: as the weights')")
    ap.add_argument("--pool-size", type=int, default=3000)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--teacher-weight", type=float, default=0.5)
    ap.add_argument("--iters", type=int, default=1_000_000)
    ap.add_argument("--minutes", type=float, default=1e9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--val-every", type=int, default=1000)
    ap.add_argument("--pack", type=Path, metavar="FILE", help="write the run's weights file and exit")
    args = ap.parse_args(argv)
    weights = ImageWeights(args.weights) if args.weights else ImageWeights()
    if args.pack:
        meta = pack_slim(args.out / "ckpt.pt", weights, args.pack)
        print(f"wrote {args.pack} (g_s last width {meta['config']['synthesis_last']}, "
              f"{meta['synthesis']['steps']} steps)", flush=True)
        return

    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    codec = ImageCodec(weights, backend="onnx" if args.weights is None else "auto")
    pool, val = pools(codec, args.pool or args.out, args.data, args.pool_size, args.crop, args.seed)
    teacher = packed.synthesis_model(weights.file).g_s.eval().requires_grad_(False)
    y64 = crops(pool, np.arange(64))[1]
    student = copy.deepcopy(teacher)
    for at, width in ((LAST, args.width), (MID, args.mid_width)):
        if width and width < student.layers[at].out_channels:
            student = narrow(student, width, strongest(student, y64, width, at), at)
    student.requires_grad_(True).train()
    opt = torch.optim.Adam(student.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    log = open(args.out / "log.jsonl", "a")

    def write(rec: dict) -> None:
        print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")
        log.flush()

    step, ckpt = 0, args.out / "ckpt.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        student.load_state_dict(state["g_s"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        step = state["step"]
        print(f"resumed at step {step}", flush=True)
    else:
        write({"step": 0, "width": args.width, "mid_width": args.mid_width, "teacher": validate(teacher, val),
               "student": validate(student, val)})
    for grp in opt.param_groups:
        grp["lr"] = args.lr

    t0, acc, n = time.time(), 0.0, len(pool["level_milli"])
    while step < args.iters and time.time() - t0 < args.minutes * 60:
        idx = torch.randint(n, (args.batch,), generator=gen).numpy()
        x, y = crops(pool, idx)
        x_hat = student(y)
        with torch.no_grad():
            x_t = teacher(y)
            mse0 = (x_t - x).square().mean((1, 2, 3)).clamp_min(1e-6)
        per = (x_hat - x).square().mean((1, 2, 3)) + args.teacher_weight * (x_hat - x_t).square().mean((1, 2, 3))
        loss = (per / mse0).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        acc += loss.item()
        if step % args.ckpt_every == 0:
            rec = {"step": step, "time": time.time(), "loss": acc / args.ckpt_every}
            acc = 0.0
            if step % args.val_every == 0:
                rec["val"] = validate(student, val)
            write(rec)
            save_atomic({"g_s": student.state_dict(), "opt": opt.state_dict(), "step": step,
                         "gen": gen.get_state(), "width": student.layers[LAST].out_channels,
                         "mid_width": student.layers[MID].out_channels,
                         "teacher_weight": args.teacher_weight}, ckpt)
    print(f"stopped at step {step}", flush=True)


if __name__ == "__main__":
    main()
