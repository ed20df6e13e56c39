"""Experiment (issue 17, item 3): a lighter synthesis for the same tokens, with the last hidden
width of g_s cut from 64 to N3 channels (the layers at the two highest resolutions shrink).

    python benchmarks/gs_slim.py speed                      # g_s in ONNX Runtime, 768x512, N3 = 64/48/32
    python benchmarks/gs_slim.py distill --n3 32 --minutes 40 [--pool runs/image_tune6]

`distill` starts from the shipped g_s with the N3 last-hidden channels of most energy into the
output layer kept (their GDN sliced likewise), then trains on the latent pool of a perceptual
tune run (`python -m tokc.train.image_tune` writes pool.npz / val.npz: training crops coded
once by the shipped encoder; never Kodak) with loss MSE to the image + 0.5 * MSE to the
shipped synthesis. It logs the validation PSNR (13 held-out crops at levels -1 / 1 / 3 / 5,
rounded pixels) of the student beside the shipped g_s. Nothing here is shipped."""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tokc.compress.image import ImageWeights
from tokc.models import packed
from tokc.models.hyperprior import SimplifiedGDN, Synthesis, deconv


def slim(g_s: Synthesis, n3: int, keep: torch.Tensor | None = None) -> Synthesis:
    """g_s with its last hidden width cut to n3 (keep: which channels; default the first)."""
    g = copy.deepcopy(g_s)
    layers = g.layers
    keep = torch.arange(n3) if keep is None else keep
    d4, g5, d6 = deconv(layers[4].in_channels, n3), SimplifiedGDN(n3, True), deconv(n3, 3)
    with torch.no_grad():
        d4.weight.copy_(layers[4].weight[:, keep])
        d4.bias.copy_(layers[4].bias[keep])
        g5.beta_p.copy_(layers[5].beta_p[keep])
        g5.gamma_p.copy_(layers[5].gamma_p[keep][:, keep])
        d6.weight.copy_(layers[6].weight[keep])
        d6.bias.copy_(layers[6].bias)
    layers[4], layers[5], layers[6] = d4, g5, d6
    return g


def speed(widths=(64, 48, 32), rounds: int = 15) -> dict:
    import onnxruntime as ort

    from tokc.export import subpixel
    from tokc.export.onnx import trace

    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n3 in widths:
            g = Synthesis(64, 288, True)
            g = (g if n3 == 64 else slim(g, n3)).eval()
            path = Path(tmp) / f"g_s{n3}.onnx"
            trace(subpixel.deployable(g), "g_s", 288, path, 18)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = 2, 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sessions[n3] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 288, 32, 48)).astype(np.float32)
    times = {n3: [] for n3 in sessions}
    for _ in range(rounds):  # interleaved
        for n3, s in sessions.items():
            time.sleep(0.05)
            t = time.perf_counter()
            s.run(None, {s.get_inputs()[0].name: x})
            times[n3].append(time.perf_counter() - t)
    return {n3: round(1000 * statistics.median(t[2:]), 1) for n3, t in times.items()}


def distill(args) -> None:
    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    pool, val = dict(np.load(args.pool / "pool.npz")), dict(np.load(args.pool / "val.npz"))
    teacher = packed.float_model(ImageWeights().file, parts=("g_s",)).g_s.eval().requires_grad_(False)

    def batch(d, idx):
        return (torch.from_numpy(d["x"][idx]).permute(0, 3, 1, 2).float() / 255,
                torch.from_numpy(d["y"][idx]).float())

    @torch.no_grad()
    def validate(g):
        res = {}
        for lv in sorted(set(val["level_milli"].tolist())):
            x, y = batch(val, val["level_milli"] == lv)
            xh = (g(y).clamp(0, 1) * 255).round() / 255
            mse = (xh - x).square().mean((1, 2, 3)).clamp_min(1e-12)
            res[str(lv)] = float((10 * torch.log10(1 / mse)).mean())
        return res

    with torch.no_grad():  # energy of each last-hidden channel into the output layer
        _, y = batch(pool, np.arange(64))
        a = teacher.layers[:6](y)
        energy = a.square().mean((0, 2, 3)) * teacher.layers[6].weight.square().sum((1, 2, 3))
    keep = torch.argsort(energy, descending=True)[: args.n3].sort().values
    student = slim(teacher, args.n3, keep).requires_grad_(True).train()
    log = open(args.out / "log.jsonl", "a")

    def write(rec):
        print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")
        log.flush()

    write({"step": 0, "n3": args.n3, "teacher": validate(teacher), "student": validate(student)})
    opt = torch.optim.Adam(student.parameters(), lr=args.lr)
    gen = np.random.default_rng(0)
    t0, step, acc = time.time(), 0, 0.0
    while time.time() - t0 < args.minutes * 60:
        x, y = batch(pool, gen.integers(len(pool["level_milli"]), size=args.batch))
        xh = student(y)
        with torch.no_grad():
            xt = teacher(y)
        loss = (xh - x).square().mean() + args.teacher_weight * (xh - xt).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        acc += loss.item()
        if step % 250 == 0:
            rec = {"step": step, "minutes": round((time.time() - t0) / 60, 1), "loss": acc / 250}
            acc = 0.0
            if step % 1000 == 0:
                rec["student"] = validate(student)
                torch.save(student.state_dict(), args.out / "g_s.pt")
            write(rec)
    torch.save(student.state_dict(), args.out / "g_s.pt")
    write({"step": step, "final": True, "student": validate(student)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("speed")
    d = sub.add_parser("distill")
    d.add_argument("--n3", type=int, default=32)
    d.add_argument("--pool", type=Path, default=Path("runs/image_tune6"))
    d.add_argument("--out", type=Path, default=None)
    d.add_argument("--minutes", type=float, default=40)
    d.add_argument("--lr", type=float, default=1e-4)
    d.add_argument("--batch", type=int, default=8)
    d.add_argument("--teacher-weight", type=float, default=0.5)
    args = ap.parse_args()
    if args.cmd == "speed":
        print(json.dumps({"g_s_ms_by_last_width": speed()}))
    else:
        args.out = args.out or Path(f"runs/gs_slim{args.n3}")
        distill(args)


if __name__ == "__main__":
    main()
