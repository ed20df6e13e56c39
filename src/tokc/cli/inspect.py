"""`tokc inspect CHECKPOINT`: architecture, main sizes and parameter count of a published
tokenizer checkpoint, read from its config and the tensor shapes.

Safetensors files are read header-only (no tensor data, no torch); ``.bin``/``.ckpt``/``.pt``
go through ``torch.load(weights_only=True)``. Configs (config.json, or safetensors metadata
for FlexTok) are read as data: a ``_target_`` class path is printed, never imported. Errors
are one line ``tokc: error: ...``: exit 2 for usage (no such path, unknown ``--arch``),
1 for checkpoints that cannot be read or recognised.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import click

from tokc.cli import main
from tokc.cli.errors import Failure, Usage


# -- reading ----------------------------------------------------------------------------------
def _shapes(weights: Path) -> tuple[str, dict[str, tuple[int, ...]], dict[str, str], dict]:
    """(format, name -> shape, name -> dtype, raw safetensors metadata)."""
    from tokc.models.checkpoints import CheckpointError, read_state_dict
    from tokc.models.metadata import read_safetensors_header

    if weights.suffix == ".safetensors":
        h = read_safetensors_header(weights)
        return ("safetensors", {k: t.shape for k, t in h.tensors.items()},
                {k: t.dtype for k, t in h.tensors.items()}, h.metadata)
    if weights.suffix not in (".bin", ".ckpt", ".pt", ".pth"):
        raise CheckpointError(f"{weights}: unknown checkpoint format "
                              "(expected .safetensors, .bin, .ckpt, .pt, .pth)")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise Failure(f"{weights}: reading {weights.suffix} checkpoints needs PyTorch "
                     "(pip install 'tokc-codec[torch]'); safetensors files do not") from None
    state = read_state_dict(weights)
    return ("torch (weights_only)", {k: tuple(v.shape) for k, v in state.items()},
            {k: str(v.dtype).removeprefix("torch.") for k, v in state.items()}, {})


def _count(shapes, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in shapes if (m := rx.match(k))})


def _walk_dicts(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk_dicts(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            yield from _walk_dicts(v)


def _find(config, key):
    """The first value of ``key`` anywhere in a nested config (None if absent)."""
    return next((d[key] for d in _walk_dicts(config) if key in d), None)


# -- per-architecture sizes (config + shapes only; no model is built) -------------------------
def _titok(config: dict, s: dict) -> dict:
    vq = _find(config, "vq_model") or config.get("model", config)
    out = {}
    for part in ("encoder", "decoder"):
        width = s.get(f"{part}.ln_pre.weight", (None,))[0]
        layers = _count(s, rf"{part}\.transformer\.(\d+)\.")
        size = vq.get(f"vit_{part[:3]}_model_size")
        patch = s[f"{part}.patch_embed.weight"][-1] if f"{part}.patch_embed.weight" in s else \
            vq.get(f"vit_{part[:3]}_patch_size")
        out[part] = {"vit": size, "width": width, "layers": layers, "patch": patch}
    cb = s.get("quantize.embedding.weight")
    out["codebook_size"], out["codebook_dim"] = (cb[0], cb[1]) if cb else (None, None)
    out["tokens"] = s["latent_tokens"][0] if "latent_tokens" in s else vq.get("num_latent_tokens")
    crop = _find(config, "crop_size")
    out["image_size"] = crop
    if "pixel_quantize.embedding.weight" in s:
        pc = s["pixel_quantize.embedding.weight"]
        out["pixel_codebook"] = f"{pc[0]} x {pc[1]}"
    return out


def _wavtokenizer(config: dict, s: dict) -> dict:
    fe = "feature_extractor.encodec."
    emb = s.get(fe + "quantizer.vq.layers.0._codebook.embed")
    ratios = _find(config, "dowmsamples")
    hop = _find(config, "hop_length") or (math.prod(ratios) if ratios else None)
    sr = _find(config, "sample_rate")
    return {
        "codebook_size": emb[0] if emb else None,
        "codebook_dim": emb[1] if emb else None,
        "codebooks": _count(s, re.escape(fe) + r"quantizer\.vq\.layers\.(\d+)\._codebook\.embed$"),
        "encoder_ratios": list(ratios) if ratios else None,
        "backbone": {"width": s.get("backbone.embed.weight", (None,))[0],
                     "layers": _count(s, r"backbone\.convnext\.(\d+)\."),
                     "intermediate": s.get("backbone.convnext.0.pwconv1.weight", (None,))[0]},
        "n_fft": s.get("head.istft.window", (_find(config, "n_fft"),))[0],
        "hop": hop,
        "sample_rate": sr,
        "tokens_per_second": (sr / hop) if sr and hop else None,
    }


def _wetok(config: dict, s: dict) -> dict:
    dd = _find(config, "ddconfig") or {}
    n_embed, groups = _find(config, "n_embed"), _find(config, "num_codebooks") or 1
    levels = _count(s, r"encoder\.down\.(\d+)\.")
    res = dd.get("resolution")
    return {
        "ch": s.get("encoder.conv_in.weight", (None,))[0],
        "ch_mult": dd.get("ch_mult"),
        "levels": levels,
        "z_channels": s.get("encoder.conv_out.weight", (dd.get("z_channels"),))[0],
        "codebook_size": n_embed,
        "codebook_groups": groups,
        "bits_per_group": int(math.log2(n_embed)) if n_embed else None,
        "token_grid": f"{res // 2 ** (levels - 1)} x {res // 2 ** (levels - 1)}"
        if res and levels else None,
        "image_size": res,
    }


def _gpstoken(config: dict, s: dict) -> dict:
    from types import SimpleNamespace

    from tokc.models import gpstoken

    base = gpstoken.GPSTokenConfig()
    if "gpsconfig" in config.get("model", config):
        base = gpstoken.GPSTokenConfig.from_official(config)
    c = gpstoken.config_from_state({k: SimpleNamespace(shape=v) for k, v in s.items()}, base)
    return {
        "tokens": c.num_tokens,
        "token_dim": gpstoken.PARAMS + c.feature_dim,
        "encoder": {"width": c.enc_width, "layers": c.enc_layers, "rois": c.rois},
        "render_size": f"{c.render_size[0]} x {c.render_size[1]}",
        "decoder": {"ch": c.ch, "ch_mult": list(c.ch_mult), "res_blocks": c.num_res_blocks},
        "codebook_size": None,  # continuous tokens
    }


def _flextok(config: dict, s: dict) -> dict:
    from tokc.models import flextok

    c = flextok.config_from_dict(config)
    return {
        "fsq_levels": list(c.levels),
        "codebook_size": c.codebook_size,
        "codebook_dim": c.code_dim,
        "tokens": c.max_tokens,
        "encoder": {"width": c.encoder_dim, "layers": c.encoder_depth},
        "decoder": {"width": c.decoder_dim, "layers": c.decoder_depth},
        "vae_latent_channels": c.vae_latent_channels,
        "classes_named": len(c.targets),  # _target_ strings, never imported
    }


SIZES = {
    "one-d-piece": _titok,
    "titok-vq": _titok,
    "wavtokenizer": _wavtokenizer,
    "wetok": _wetok,
    "gpstoken": _gpstoken,
    "flextok": _flextok,
}


def describe(path: str, arch: str | None = None) -> dict:
    from tokc.models.checkpoints import ARCHS, CheckpointError, detect_arch, read_config, resolve
    from tokc.models.metadata import parse_metadata

    if arch is not None and arch not in ARCHS:
        raise Usage(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    if not Path(path).exists():
        raise Usage(f"{path}: no such file or folder")
    try:
        config_path, weights = resolve(path)
        fmt, shapes, dtypes, metadata = _shapes(weights)
        config = read_config(config_path) if config_path is not None else {}
        if not config and metadata:
            config = parse_metadata(metadata)
        if arch is None:
            if not config:
                raise CheckpointError(f"{path}: no config.json or metadata to detect the "
                                      f"architecture from; pass --arch ({', '.join(ARCHS)})")
            arch = detect_arch(config)
        try:
            sizes = SIZES[arch](config, shapes)
        except ImportError as exc:
            raise CheckpointError(f"describing {arch} needs {exc.name or 'an extra'} "
                                  "(pip install 'tokc-codec[torch]')") from None
        except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
            raise CheckpointError(f"{path}: does not look like a {arch} checkpoint ({exc})") from None
    except CheckpointError as exc:
        raise Failure(str(exc)) from None
    return {
        "checkpoint": str(path),
        "weights": str(weights),
        "config": str(config_path) if config_path else None,
        "arch": arch,
        "format": fmt,
        "tensors": len(shapes),
        "dtypes": dict(Counter(dtypes.values()).most_common()),
        "parameters": sum(math.prod(v) for v in shapes.values()),
        "sizes": sizes,
    }


def _fmt(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items() if x is not None)
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def _text(d: dict) -> str:
    dtypes = ", ".join(f"{k} x{n}" for k, n in d["dtypes"].items())
    rows = [
        ("checkpoint", d["checkpoint"]),
        ("arch", d["arch"]),
        ("weights", f"{d['weights']} ({d['format']}, {d['tensors']} tensors: {dtypes})"),
        ("config", d["config"] or "-"),
        ("parameters", f"{d['parameters']} ({_human(d['parameters'])}, all tensors in the file)"),
    ]
    for k, v in d["sizes"].items():
        if v is None and k == "codebook_size" and d["arch"] == "gpstoken":
            v = "- (continuous tokens)"
        if v is not None:
            rows.append((k.replace("_", " "), _fmt(v)))
    pad = max(len(k) for k, _ in rows) + 2
    return "\n".join(f"{k:<{pad}}{v}" for k, v in rows)


@main.command()
@click.argument("checkpoint")
@click.option("--arch", default=None, metavar="ARCH",
              help="Architecture, when the config does not tell (e.g. wetok, gpstoken).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def inspect(checkpoint: str, arch: str | None, as_json: bool) -> None:
    """Show the architecture, sizes and parameter count of a tokenizer CHECKPOINT
    (a folder with config.json + weights, or a weights file)."""
    d = describe(checkpoint, arch)
    click.echo(json.dumps(d) if as_json else _text(d))
