"""`tokc export MODEL -o DIR [--precision fp32|fp16|int8] [--opset N]`: ONNX graphs of a
model's float parts plus a JSON sidecar, each part validated against PyTorch at a new shape.

`tokc export --arch {one-d-piece,titok-vq,wavtokenizer,wetok,gpstoken,flextok} --checkpoint PATH -o DIR`:
the encoder and decoder graphs of a published tokenizer checkpoint (tokc.export.tokenizers)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from tokc.cli import main
from tokc.cli.errors import Failure, Usage

PRECISIONS = ("fp32", "fp16", "int8")


class OneLineCommand(click.Command):
    """click's own usage errors (bad --precision, missing argument) as one line too."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:
            if isinstance(e, Usage):
                raise
            raise Usage(e.format_message(), e.ctx) from None


def _need_torch() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        raise Failure(f"export needs PyTorch, onnx and onnxscript ({e.name} is missing): "
                      "pip install torch==2.13.0 && pip install 'tokc-codec[torch]'") from None


def resolve_weights(model: str) -> Path:
    from tokc.compress.image import CODEC_ID, WEIGHTS

    if model == CODEC_ID:
        return WEIGHTS
    if Path(model).is_file():
        return Path(model)
    raise Usage(f"unknown model {model!r} ({CODEC_ID}, or a weights file)")


TOKENIZER_ARCHS = ("one-d-piece", "titok-vq", "wavtokenizer", "wetok", "gpstoken", "flextok")


@main.command("export", cls=OneLineCommand)
@click.argument("model", required=False)
@click.option("--arch", type=click.Choice(TOKENIZER_ARCHS), default=None,
              help="Export a published tokenizer checkpoint (with --checkpoint) instead of MODEL.")
@click.option("--checkpoint", metavar="PATH", help="--arch: checkpoint folder (config.json + weights) or weights file.")
@click.option("--token-axis", type=click.Choice(["dynamic", "masked"]), default="dynamic", show_default=True,
              help="one-d-piece decoder: a dynamic token axis, or N slots plus num_tokens (static shape).")
@click.option("-o", "--output", "out_dir", metavar="DIR", help="Folder for the graphs and the sidecar (required).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True)
@click.option("--opset", type=click.IntRange(min=18), default=18, show_default=True,
              help="ONNX opset (the dynamo exporter needs 18 or later).")
@click.option("--calib", metavar="DIR", help="int8: folder of training images to calibrate on (never Kodak).")
@click.option("--int8-scheme", type=click.Choice(["u8s8", "s8s8"]), default="u8s8", show_default=True,
              help="int8: u8s8 is fast on ONNX Runtime CPU; s8s8 (symmetric) is what TensorRT needs.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing files.")
@click.option("--json", "as_json", is_flag=True, help="Print the sidecar on stdout.")
@click.option("--quiet", is_flag=True, help="No summary line.")
def export_cmd(model, arch, checkpoint, token_axis, out_dir, precision, opset, calib, int8_scheme,
               force, as_json, quiet):
    """Export MODEL (tokc-image-v1 or a weights file), or --arch ARCH --checkpoint PATH, to ONNX in DIR."""
    if model is None and arch is None and checkpoint is None:
        raise Usage("Missing argument 'MODEL' (tokc-image-v1 or a weights file), or --arch with --checkpoint.")
    if out_dir is None:
        raise Usage("Missing option '-o' / '--output'.")
    if arch is not None or checkpoint is not None:
        if model is not None:
            raise Usage("give either MODEL or --arch with --checkpoint, not both")
        if arch is None or checkpoint is None:
            raise Usage("--arch and --checkpoint go together")
        if precision != "fp32" or calib:
            raise Usage("--arch exports fp32 only (no --precision / --calib)")
        if token_axis != "dynamic" and arch != "one-d-piece":
            raise Usage("--token-axis applies to --arch one-d-piece only")
        return export_tokenizer(arch, checkpoint, token_axis, out_dir, opset, force, as_json, quiet)
    weights = resolve_weights(model)
    if precision == "int8" and not calib:
        raise Usage("--precision int8 needs --calib DIR (training images to calibrate on)")
    if calib and not Path(calib).is_dir():
        raise Usage(f"--calib {calib}: no such directory")
    _need_torch()
    from tokc.compress.image import CODEC_ID
    from tokc.export import onnx as onnx_export
    from tokc.runtimes.base import part_file_name, sidecar_name

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise Usage(f"{out} is not a directory")
    names = [part_file_name(CODEC_ID, p, precision) for p in onnx_export.PARTS]
    names.append(sidecar_name(CODEC_ID, precision))
    if not force:
        for name in names:
            if (out / name).exists():
                raise Failure(f"{out / name} exists (use -f to overwrite)")
    try:
        side = onnx_export.export_image(weights, out, opset, precision,
                                        Path(calib) if calib else None, int8_scheme)
    except onnx_export.ExportError as e:
        raise Failure(f"{type(e).__name__}: {e}") from None
    except Exception as e:  # the exporter or a bad weights file: one line, no traceback
        if os.environ.get("TOKC_DEBUG"):
            raise
        raise Failure(f"{type(e).__name__}: {e}") from None
    if as_json:
        click.echo(json.dumps(side, indent=1))
    if not quiet:
        errs = ", ".join(f"{p} {v['max_abs_err']:.2g}" for p, v in side["parts"].items())
        click.echo(f"tokc: {CODEC_ID} {precision} -> {out}/ (max abs error vs PyTorch at new "
                   f"shapes: {errs})", err=True)


def export_tokenizer(arch, checkpoint, token_axis, out_dir, opset, force, as_json, quiet) -> None:
    """`tokc export --arch ARCH --checkpoint PATH -o DIR`: see tokc.export.tokenizers."""
    if not Path(checkpoint).exists():
        raise Usage(f"--checkpoint {checkpoint}: no such file or folder")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise Usage(f"{out} is not a directory")
    _need_torch()
    from tokc.export import tokenizers
    from tokc.models.checkpoints import CheckpointError

    if not force:
        for name in tokenizers.file_names(arch):
            if (out / name).exists():
                raise Failure(f"{out / name} exists (use -f to overwrite)")
    try:
        side = tokenizers.export_tokenizer(arch, checkpoint, out, opset, token_axis)
    except (tokenizers.TokenizerExportError, CheckpointError) as e:
        raise Failure(f"{type(e).__name__}: {e}") from None
    except Exception as e:  # the exporter or a checkpoint of another arch: one line, no traceback
        if os.environ.get("TOKC_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise Failure(f"{type(e).__name__}: {msg}") from None
    if as_json:
        click.echo(json.dumps(side, indent=1))
    if not quiet:
        errs = ", ".join(f"{k} {v:.2g}" for k, v in tokenizers.max_errors(side).items())
        click.echo(f"tokc: {arch} -> {out}/ (tokens equal; max abs error vs PyTorch at new "
                   f"shapes: {errs})", err=True)
