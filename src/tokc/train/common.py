"""What every tokc training script shares: the optimizer's parameter groups, atomic
checkpoints and resuming from them, the model-only resume file, the learning-rate decay, and
the files of learned decoder parts."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch


def make_optimizer(model, args) -> torch.optim.Optimizer:
    """Adam over a hyperprior-style model (log_gain / log_igain, optional ctx / spatial nets)."""
    gain_params = [p for p in (model.log_gain, model.log_igain) if isinstance(p, torch.nn.Parameter)]
    ctx_params = [p for net in (model.ctx, model.spatial) if net is not None for p in net.parameters()]
    special = {id(p) for p in gain_params + ctx_params}
    others = [p for p in model.parameters() if id(p) not in special]
    # the per-level gains get a larger step: they must travel far (log units) and are few;
    # the context networks too: they start from scratch beside a trained model
    groups = [{"params": others}]
    if gain_params:  # fixed (buffers) in a model whose levels are not learned
        groups.append({"params": gain_params, "lr_scale": args.gain_lr_scale})
    if ctx_params:
        groups.append({"params": ctx_params, "lr_scale": args.ctx_lr_scale})
    return torch.optim.Adam(groups, lr=args.lr)


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def export_resume(model, step: int, path: Path) -> None:
    """The model (fp32) and its step as .safetensors, config in the metadata (--init-from)."""
    from safetensors.torch import save_file

    meta = {"config": model.config.to_dict(), "step": step}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"tokc_train": json.dumps(meta)})
    print(f"wrote {path} (step {step})", flush=True)


def load_resume(path: Path) -> tuple[dict, dict, int]:
    """export_resume's file -> (config dict, state dict, step): what --init-from starts from."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["tokc_train"])
    return meta["config"], load_file(str(path)), int(meta["step"])


def resume(model, opt, ckpt: Path) -> int:
    """Model, optimizer and step from an atomic checkpoint when there is one; -> the step (0)."""
    if not ckpt.exists():
        return 0
    state = torch.load(ckpt, weights_only=True, map_location="cpu")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    return int(state["step"])


def cosine_lr(step: int, iters: int, lr: float, lr_final: float) -> float:
    """A cosine decay from lr at step 0 to lr_final at iters."""
    return float(lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi * step / iters)))


def pack_decoder_weights(params: dict, path: Path, key: str, step: int, args) -> None:
    """A learned decoder part (post-filter, fill) as the codec ships it: float32 arrays in a
    .safetensors file, the training step and arguments as JSON under metadata `key`."""
    import numpy as np
    from safetensors.numpy import save_file

    if not step:
        raise SystemExit(f"no trained checkpoint in {args.out}")
    train = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()} | {"pack": None}
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in params.items()}, str(path),
              metadata={key: json.dumps({"step": step, "train": train})})
    print(f"wrote {path} (step {step})")


def run_steps(model, opt, args, step: int, ckpt: Path, loss_step) -> None:
    """Adam from `step` to args.iters with the cosine decay from args.lr to args.lr_final.
    loss_step() -> (loss, extra): the batch's loss and a function giving more fields for the
    log; every 100 steps a JSON line (step, loss, extra, lr, seconds) goes to stdout and
    OUT/log.jsonl; a checkpoint every 500 steps and at the end."""
    log = open(args.out / "log.jsonl", "a")
    t0 = time.time()
    while step < args.iters:
        lr = cosine_lr(step, args.iters, args.lr, args.lr_final)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, extra = loss_step()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            with torch.no_grad():
                rec = {"step": step, "loss": loss.item(), **extra(), "lr": lr,
                       "seconds": round(time.time() - t0, 1)}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if step % 500 == 0 or step == args.iters:
            save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt)
