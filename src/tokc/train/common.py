"""What every tokc training script shares: the optimizer's parameter groups, atomic
checkpoints, and the model-only resume file."""

from __future__ import annotations

import json
import os
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
