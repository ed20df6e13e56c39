"""`tokc compress` / `tokc decompress`: images <-> .tokc files, with cwebp-like habits.

`-` means stdin/stdout; existing outputs are refused without -f; outputs go to a temporary
file that is renamed into place, so a failure never leaves a half-written file; one summary
line on stderr; exit 0 ok, 1 failure, 2 usage.

`-m one-d-piece --checkpoint PATH [--tokens K]` codes the image as a prefix of K One-D-Piece
tokens (codec one-d-piece-v1, tokc.compress.tokens); `tokc decompress FILE --checkpoint PATH`
decodes such a file with the same checkpoint.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import click
import numpy as np

from tokc import format as fmt
from tokc.cli import main
from tokc.cli.errors import Failure, Usage
from tokc.compress import image as image_codec

ERRORS = (image_codec.CodecError, fmt.TokcFormatError, OSError)
TOKEN_MODELS = ("one-d-piece",)


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    p = Path(path)
    if not p.is_file():
        raise Failure(f"{path}: no such file")
    return p.read_bytes()


def _write_output(path: str, data: bytes, force: bool) -> None:
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    p = Path(path)
    if p.exists() and not force:
        raise Failure(f"{path} exists (use -f to overwrite)")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _codec(model: str, backend: str) -> image_codec.ImageCodec:
    if model in ("tokc-image-v1", "default"):
        return image_codec.default_codec(backend)
    if Path(model).is_file():
        return image_codec.ImageCodec(image_codec.ImageWeights(Path(model)), backend)
    raise Failure(f"unknown model {model!r} (tokc-image-v1, or a weights file)")


def _warn(quiet: bool):
    def show(message, category, filename, lineno, file=None, line=None):
        if not quiet:
            click.echo(f"tokc: warning: {message}", err=True)

    warnings.showwarning = show


@main.command()
@click.argument("input", metavar="IN")
@click.option("-o", "--output", metavar="OUT", help="Output file (default: IN with .tokc; - for stdout).")
@click.option("-q", "--quality", type=click.FloatRange(0, 100), default=None,
              help="Quality 0..100 (default 75). 100 is the highest rate, NOT lossless.")
@click.option("--size", type=click.IntRange(1), metavar="BYTES", help="Best quality whose file fits in BYTES.")
@click.option("--psnr", type=float, metavar="DB", help="Smallest file reaching this PSNR (dB).")
@click.option("-e", "--effort", type=click.IntRange(1, 9), default=1, show_default=True,
              help="Encoder effort: higher spends more time for fewer bytes at the same quality.")
@click.option("-m", "--model", default="tokc-image-v1", show_default=True,
              help="tokc-image-v1, a weights file, or one-d-piece (with --checkpoint).")
@click.option("--checkpoint", metavar="PATH", help="-m one-d-piece: the checkpoint folder or weights file.")
@click.option("--tokens", type=int, default=None, metavar="K",
              help="-m one-d-piece: code the first K tokens (default: all of them).")
@click.option("--backend", type=click.Choice(["auto", "onnx", "torch", "tensorrt"]), default="auto", show_default=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No summary line.")
@click.option("-v", "--verbose", is_flag=True, help="Also decode and report PSNR.")
def compress(input, output, quality, size, psnr, effort, model, checkpoint, tokens, backend, force,
             as_json, quiet, verbose):
    """Compress an image (PNG, JPEG, WebP, TIFF, PPM; gray, RGB or RGBA) to a .tokc file."""
    if sum(x is not None for x in (quality, size, psnr)) > 1:
        raise click.UsageError("give at most one of -q, --size, --psnr")
    if model in TOKEN_MODELS:
        if quality is not None or size is not None or psnr is not None or effort != 1:
            raise Usage(f"-m {model} sets the rate with --tokens, not -q/--size/--psnr/-e")
        if checkpoint is None:
            raise Usage(f"-m {model} needs --checkpoint PATH")
        if backend not in ("auto", "torch"):
            raise Usage(f"-m {model} runs on PyTorch (--backend auto or torch)")
        if tokens is not None and tokens < 1:
            raise Usage(f"--tokens {tokens}: must be at least 1")
    elif checkpoint is not None or tokens is not None:
        raise Usage("--checkpoint and --tokens go with -m one-d-piece")
    if output is None:
        output = "-" if input == "-" else str(Path(input).with_suffix(".tokc"))
    if output != "-" and Path(output).exists() and not force:
        raise Failure(f"{output} exists (use -f to overwrite)")
    _warn(quiet)
    if model in TOKEN_MODELS:
        return _compress_tokens(input, output, checkpoint, tokens, force, as_json, quiet, verbose)
    t0 = time.perf_counter()
    try:
        raw = _read_input(input)
        img = image_codec.as_image(image_codec.read_image(io.BytesIO(raw), input))
        codec = _codec(model, backend)
        res = codec.compress(img, quality=75 if quality is None else quality, size=size, psnr=psnr, effort=effort)
        elapsed = time.perf_counter() - t0
        measured = None
        if verbose or psnr is not None:
            from tokc.metrics.image import psnr as psnr_of

            measured = psnr_of(img, codec.decompress(res.data))
        _write_output(output, res.data, force)
    except ERRORS as e:
        raise Failure(str(e)) from None
    summary = {
        "input": input, "output": output, "bytes": len(res.data), "bpp": round(res.bpp, 4),
        "width": res.width, "height": res.height, "quality": round(res.quality, 2),
        "psnr": None if measured is None else round(measured, 3), "seconds": round(elapsed, 3),
    }
    if as_json:
        click.echo(json.dumps(summary), err=output == "-")
    elif not quiet:
        extra = f", PSNR {measured:.2f} dB" if measured is not None else ""
        click.echo(
            f"{input} -> {output}: {len(res.data)} bytes, {res.bpp:.3f} bpp, "
            f"q {res.quality:.1f}{extra}, {elapsed:.2f} s",
            err=True,
        )


@main.command()
@click.argument("input", metavar="IN")
@click.option("-o", "--output", metavar="OUT", help="Output image (default: IN with .png; - for PNG on stdout).")
@click.option("--backend", type=click.Choice(["auto", "onnx", "torch", "tensorrt"]), default="auto", show_default=True)
@click.option("-m", "--model", default="tokc-image-v1", show_default=True)
@click.option("--checkpoint", metavar="PATH", help="The One-D-Piece checkpoint a one-d-piece-v1 file was made with.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--quiet", is_flag=True, help="No summary line.")
def decompress(input, output, backend, model, checkpoint, force, quiet):
    """Decompress a .tokc file to an image (PNG by default; the extension picks the format)."""
    from PIL import Image

    if output is None:
        output = "-" if input == "-" else str(Path(input).with_suffix(".png"))
    if output != "-" and Path(output).exists() and not force:
        raise Failure(f"{output} exists (use -f to overwrite)")
    t0 = time.perf_counter()
    try:
        data = _read_input(input)
        pixels = _token_decompress(data, checkpoint) if _is_token_file(data, checkpoint) \
            else _codec(model, backend).decompress(data)
        buf = io.BytesIO()
        suffix = "png" if output == "-" else Path(output).suffix.lower().lstrip(".")
        kind = {"png": "PNG", "ppm": "PPM", "pgm": "PPM", "pnm": "PPM", "tif": "TIFF",
                "tiff": "TIFF", "bmp": "BMP", "webp": "WEBP"}.get(suffix)
        if kind is None:
            raise Failure(f"cannot write {output}: use .png, .ppm/.pgm, .tif, .bmp or .webp (lossless)")
        opts = {"lossless": True} if kind == "WEBP" else {}
        Image.fromarray(np.ascontiguousarray(pixels)).save(buf, kind, **opts)
        _write_output(output, buf.getvalue(), force)
    except ERRORS as e:
        raise Failure(str(e)) from None
    if not quiet:
        h, w = pixels.shape[:2]
        click.echo(f"{input} -> {output}: {w}x{h}, {time.perf_counter() - t0:.2f} s", err=True)


# -- one-d-piece-v1: a prefix of One-D-Piece tokens (tokc.compress.tokens) -------------------------
def _token_codec(checkpoint: str):
    try:
        import torch  # noqa: F401
    except ImportError:
        raise Failure("-m one-d-piece needs PyTorch: pip install torch==2.13.0 && "
                      "pip install 'tokc-codec[torch]'") from None
    from tokc.compress import tokens as token_codec
    from tokc.models.checkpoints import CheckpointError

    if not Path(checkpoint).exists():
        raise Usage(f"--checkpoint {checkpoint}: no such file or folder")
    try:
        return token_codec.OneDPieceCodec(checkpoint)
    except (CheckpointError, token_codec.TokenCodecError, ValueError, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Failure(f"{checkpoint}: {msg}") from None


def _compress_tokens(input, output, checkpoint, tokens, force, as_json, quiet, verbose) -> None:
    from tokc.compress.tokens import TokenCodecError

    t0 = time.perf_counter()
    codec = _token_codec(checkpoint)
    if tokens is not None and tokens > codec.num_tokens:
        raise Usage(f"--tokens {tokens}: this model codes 1..{codec.num_tokens} tokens")
    try:
        raw = _read_input(input)
        img = image_codec.as_image(image_codec.read_image(io.BytesIO(raw), input))
        res = codec.compress(img, tokens=tokens)
        elapsed = time.perf_counter() - t0
        measured = None
        if verbose:
            from tokc.metrics.image import psnr as psnr_of

            measured = psnr_of(img, codec.decompress(res.data))
        _write_output(output, res.data, force)
    except (*ERRORS, TokenCodecError) as e:
        raise Failure(str(e)) from None
    summary = {
        "input": input, "output": output, "bytes": len(res.data), "bpp": round(res.bpp, 4),
        "width": res.width, "height": res.height, "tokens": res.num_tokens, "bits_per_token": res.bits,
        "psnr": None if measured is None else round(measured, 3), "seconds": round(elapsed, 3),
    }
    if as_json:
        click.echo(json.dumps(summary), err=output == "-")
    elif not quiet:
        extra = f", PSNR {measured:.2f} dB" if measured is not None else ""
        click.echo(f"{input} -> {output}: {len(res.data)} bytes, {res.bpp:.3f} bpp, "
                   f"{res.num_tokens} tokens x {res.bits} bits{extra}, {elapsed:.2f} s", err=True)


def _is_token_file(data: bytes, checkpoint: str | None) -> bool:
    from tokc.compress.tokens import CODEC_ID

    try:
        codec_id = fmt.read_header(data).codec
    except fmt.TokcFormatError:
        codec_id = None  # the image codec reports the error
    if codec_id == CODEC_ID:
        if checkpoint is None:
            raise Usage(f"a {CODEC_ID} file: give --checkpoint PATH (the One-D-Piece "
                                   "checkpoint it was made with)")
        return True
    if checkpoint is not None and codec_id is not None:
        raise Failure(f"--checkpoint is for {CODEC_ID} files; this is a {codec_id} file")
    return False


def _token_decompress(data: bytes, checkpoint: str) -> np.ndarray:
    return _token_codec(checkpoint).decompress(data)
