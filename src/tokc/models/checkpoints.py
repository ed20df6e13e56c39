"""Reading published tokenizer checkpoints safely, and one entry point to load them.

Formats: safetensors files, PyTorchModelHubMixin folders (config.json + model.safetensors or
pytorch_model.bin), Lightning ``.ckpt`` (weights under ``state_dict``), ``pytorch_model.bin``.
Nothing is ever unpickled beyond tensors and plain containers: ``.bin``/``.ckpt``/``.pt`` go
through ``torch.load(weights_only=True)``; a file that needs any other global is refused with
a message naming it. Weight-norm pairs (``weight_g``/``weight_v``) are kept as they are for the
model to fold.
"""

from __future__ import annotations

import importlib
import json
import pickle
import re
from pathlib import Path

__all__ = [
    "ARCHS",
    "CheckpointError",
    "detect_arch",
    "load_pretrained",
    "load_state_dict_into",
    "read_config",
    "read_state_dict",
    "resolve",
    "strip_prefix",
]

# arch name -> "module:function"; the function takes (folder_or_file, arch=None) and returns
# a model in eval mode with encode(x) -> token indices and decode(indices) -> signal.
ARCHS: dict[str, str] = {
    "one-d-piece": "tokc.models.titok:load",
    "titok-vq": "tokc.models.titok:load",
    "wavtokenizer": "tokc.models.wavtokenizer:load",
    "wetok": "tokc.models.wetok:load",
    "gpstoken": "tokc.models.gpstoken:load",
    "flextok": "tokc.models.flextok:load",
}

WEIGHT_NAMES = (
    "model.safetensors",
    "pytorch_model.safetensors",
    "pytorch_model.bin",
    "model.ckpt",
    "last.ckpt",
    "model.pt",
    "model.pth",
)
CONFIG_NAMES = ("config.json",)
_PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth")
# wrappers added by DDP / torch.compile / Lightning around a whole model
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model (one readable message)."""


# -- files ------------------------------------------------------------------------------------
def resolve(path: str | Path) -> tuple[Path | None, Path]:
    """(config.json or None, weights file) for a folder or a weights file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_dir():
        weights = next((path / n for n in WEIGHT_NAMES if (path / n).is_file()), None)
        if weights is None:
            found = sorted(p.name for p in path.glob("*.safetensors")) + sorted(
                p.name for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES
            )
            if len(found) != 1:
                raise CheckpointError(
                    f"{path}: expected one of {', '.join(WEIGHT_NAMES)}"
                    + (f" (found several: {', '.join(found)})" if found else " (no weights found)")
                )
            weights = path / found[0]
        folder = path
    else:
        weights, folder = path, path.parent
    config = next((folder / n for n in CONFIG_NAMES if (folder / n).is_file()), None)
    return config, weights


def read_config(path: str | Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read config: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: config is not a JSON object")
    return data


def strip_prefix(state: dict, prefix: str) -> dict:
    """Keys starting with ``prefix`` with it removed; other keys dropped."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _refused_global(exc: Exception) -> str | None:
    m = re.search(r"GLOBAL\s+([\w.]+)", str(exc))
    return m.group(1) if m else None


def _unpickler_reason(exc: Exception) -> str:
    m = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
    return m.group(1).strip() if m else str(exc).splitlines()[0]


def _read_pickled(path: Path) -> dict:
    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        name = _refused_global(exc)
        if name is None:
            raise CheckpointError(
                f"{path}: not a readable checkpoint ({_unpickler_reason(exc)})"
            ) from None
        raise CheckpointError(
            f"{path}: refused: unpickling it needs the global {name!r}; tokc only loads "
            "tensors and plain containers (torch.load weights_only=True). Convert the "
            "checkpoint to safetensors in an environment you trust."
        ) from None
    except (RuntimeError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}") from None
    return obj


def read_state_dict(path: str | Path, prefix: str | None = None) -> dict:
    """A flat name -> tensor dict from a safetensors / .bin / .ckpt file (never full pickle).

    A Lightning checkpoint's ``state_dict`` (or a hub file's ``model`` / ``state_dict`` entry)
    is taken when present; ``prefix`` (e.g. ``"model."``) is stripped and keys without it
    dropped; DDP ``module.`` / ``_orig_mod.`` wrappers around every key are removed.
    """
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: cannot read safetensors: {exc}") from None
    elif path.suffix in _PICKLE_SUFFIXES:
        state = _read_pickled(path)
        if isinstance(state, dict):
            for key in ("state_dict", "model", "module"):
                inner = state.get(key)
                if isinstance(inner, dict) and any(
                    isinstance(v, torch.Tensor) for v in inner.values()
                ):
                    state = inner
                    break
    else:
        raise CheckpointError(
            f"{path}: unknown checkpoint format (expected .safetensors, .bin, .ckpt, .pt, .pth)"
        )
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{path}: no tensors found")
    for wrapper in _WRAPPER_PREFIXES:
        if all(k.startswith(wrapper) for k in state):
            state = strip_prefix(state, wrapper)
    if prefix:
        stripped = strip_prefix(state, prefix)
        if not stripped:
            raise CheckpointError(f"{path}: no key starts with {prefix!r}")
        state = stripped
    return state


def load_state_dict_into(model, state: dict, source: str = "checkpoint") -> None:
    """Load ``state`` (cast to each parameter's dtype) into ``model`` or raise ONE ValueError
    listing every missing key, unexpected key and shape mismatch."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(own[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or mismatched:

        def block(title: str, items: list[str]) -> str:
            shown = items[:20] + ([f"... and {len(items) - 20} more"] if len(items) > 20 else [])
            return f"\n  {title} ({len(items)}):\n    " + "\n    ".join(shown) if items else ""

        raise CheckpointError(
            f"{source} does not fit {type(model).__name__}:"
            + block("missing keys", missing)
            + block("unexpected keys", unexpected)
            + block("shape mismatches", mismatched)
        )
    model.load_state_dict({k: state[k].to(own[k].dtype) for k in own}, strict=True)


# -- architecture detection and dispatch --------------------------------------------------------
def detect_arch(config: dict) -> str:
    """The arch name for an official config dict (TiTok/One-D-Piece, WavTokenizer, WeTok,
    GPSToken, FlexTok)."""
    if not isinstance(config, dict):
        raise CheckpointError("config is not a JSON object")
    for key in ("tokc_arch", "arch"):
        if isinstance(config.get(key), str) and config[key] in ARCHS:
            return config[key]
    model_section = config.get("model")
    if "gpsconfig" in config or (isinstance(model_section, dict) and "gpsconfig" in model_section):
        return "gpstoken"
    if _looks_like_flextok(config):
        return "flextok"
    text = json.dumps(config).lower()
    if "lfq_inference_config" in config or "lfqgan" in text or "wetok" in text:
        return "wetok"
    if "wavtokenizer" in text or ("feature_extractor" in text and "backbone" in text):
        return "wavtokenizer"
    model = config.get("model", config)
    vq = model.get("vq_model", model) if isinstance(model, dict) else None
    if isinstance(vq, dict) and "vit_enc_model_size" in vq:
        kind = str(model.get("type", "")).lower().replace("-", "_")
        if kind == "one_d_piece" or vq.get("is_legacy", True):
            return "one-d-piece"
        mode = str(vq.get("quantize_mode", "vq")).lower()
        if mode == "vq":
            return "titok-vq"
        raise CheckpointError(f"TiTok quantize_mode {mode!r} is not supported")
    raise CheckpointError(
        "cannot detect the architecture from config.json; pass arch= one of " + ", ".join(ARCHS)
    )


def _looks_like_flextok(config: dict) -> bool:
    """FlexTok's hub config / safetensors metadata: vae, encoder, decoder, regularizer sections,
    or a ``_target_`` naming a flextok class (only read as a string, never imported)."""
    if {"vae", "encoder", "decoder", "regularizer"} <= set(config):
        return True
    target = config.get("_target_")
    return isinstance(target, str) and "flextok" in target.lower()


def load_pretrained(path: str | Path, arch: str | None = None):
    """Load a published tokenizer checkpoint (file or folder with config.json) in eval mode."""
    if arch is None:
        config_path, _ = resolve(path)
        if config_path is None:
            raise CheckpointError(
                f"{path}: no config.json to detect the architecture from; pass arch= one of "
                + ", ".join(ARCHS)
            )
        arch = detect_arch(read_config(config_path))
    if arch not in ARCHS:
        raise CheckpointError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    module_name, func_name = ARCHS[arch].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise CheckpointError(
                f"arch {arch!r} is not available ({module_name} missing)"
            ) from None
        raise
    model = getattr(module, func_name)(path, arch=arch)
    return model.eval()
