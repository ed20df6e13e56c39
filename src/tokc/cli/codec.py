"""`tokc compress` / `tokc decompress`: media files <-> .tokc files, with cwebp-like habits.

The codec comes from the registry (tokc.compress.registry): compress picks it from the input's
modality and -m (a codec id, an alias such as `one-d-piece`, or a weights file of the default
codec); decompress from the file's header. No codec has a branch here: each takes the options
its registry entry names (`-m one-d-piece --checkpoint PATH [--tokens K]` codes an image as a
prefix of K One-D-Piece tokens; `tokc decompress FILE --checkpoint PATH` decodes it).

`-` means stdin/stdout; existing outputs are refused without -f; outputs go to a temporary
file that is renamed into place, so a failure never leaves a half-written file; one summary
line on stderr; exit 0 ok, 1 failure, 2 usage.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import click

from tokc import format as fmt
from tokc.cli import main
from tokc.cli.errors import Failure, Usage
from tokc.compress import registry
from tokc.compress.base import MAX_PIXELS, CodecError, CodecUsageError, check_pixels

ERRORS = (CodecError, fmt.TokcFormatError, OSError)
FLAGS = {"quality": "-q", "kbps": "-b", "size": "--size", "psnr": "--psnr", "effort": "-e", "tune": "--tune", "tokens": "--tokens",
         "postfilter": "--postfilter",
         "checkpoint": "--checkpoint", "weights": "-m", "backend": "--backend"}


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    _check_input(path)
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise Failure(_about(path, e)) from None


def _check_input(path: str) -> None:
    if path == "-":
        return
    p = Path(path)
    if p.is_dir():
        raise Failure(f"{path}: is a directory")
    if not p.exists():
        raise Failure(f"{path}: no such file")


def _about(name: str, e: BaseException) -> str:
    """One line for an error about a file: `name: what`, the name once."""
    if isinstance(e, OSError) and e.strerror:
        what = e.strerror[:1].lower() + e.strerror[1:]
    else:
        what = str(e)
    return what if what.startswith(f"{name}: ") else f"{name}: {what}"


def _new_file_mode(path: Path) -> int:
    """The mode a plain open() would leave: the existing file's, else 0666 less the umask
    (mkstemp's 0600 would otherwise survive the rename)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _write_output(path: str, data: bytes, force: bool) -> None:
    _write_with(path, lambda f: f.write(data), force)


def _write_with(path: str, write, force: bool) -> None:
    """write(fileobj) into the output: stdout as it comes, or a temporary file renamed into
    place only once write returned (a failure leaves no output behind)."""
    if path == "-":
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    _refuse_existing(path, force)
    p = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent or ".")
    except OSError as e:
        raise Failure(_about(path, e)) from None
    try:
        os.fchmod(fd, _new_file_mode(p))
        with os.fdopen(fd, "wb") as f:
            write(f)
        try:
            os.replace(tmp, p)
        except OSError as e:
            raise Failure(_about(path, e)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _Recording:
    """A binary input that keeps what was read through it (the header, read before the codec
    is known), so that a codec without streaming still gets the whole file."""

    def __init__(self, f):
        self.f, self.seen = f, bytearray()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.seen += data
        return data

    def rest(self) -> bytes:
        return bytes(self.seen) + self.f.read()


def _refuse_existing(output: str, force: bool) -> None:
    """Refuse an output that cannot or may not be written: data to a terminal (as gzip does),
    a directory, a missing directory, an existing file without -f."""
    if output == "-":
        if sys.stdout.isatty():
            raise Failure("refusing to write binary data to a terminal (use -o FILE or redirect "
                          "stdout)")
        return
    p = Path(output)
    if p.is_dir():
        raise Failure(f"{output}: is a directory")
    if not p.parent.is_dir():
        raise Failure(f"{output}: no such directory {p.parent}")
    if p.exists() and not force:
        raise Failure(f"{output}: exists (use -f to overwrite)")


def _positive_db(ctx, param, value):
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"a PSNR target is a positive number of dB, not {value}")
    return value


def _warn(quiet: bool):
    def show(message, category, filename, lineno, file=None, line=None):
        if not quiet:
            click.echo(f"tokc: warning: {message}", err=True)

    warnings.showwarning = show


def _flags(names) -> str:
    return ", ".join(FLAGS.get(n, f"--{n}") for n in names)


def _takers(option: str) -> str:
    """The -m names of the codecs that take an option."""
    return " or ".join(e.name for e in registry.entries() if option in e.rate_options + e.load_options)


def _open(entry: registry.Entry, options: dict):
    try:
        return entry.open(**options)
    except CodecUsageError as e:
        raise Usage(str(e)) from None
    except ERRORS as e:
        raise Failure(str(e)) from None


def _choose(model: str, modality: str) -> tuple[registry.Entry, dict]:
    """-m: a codec id or alias, `default`, or a weights file of the modality's default codec."""
    if model == "default":
        return registry.default_for(modality), {}
    try:
        return registry.entry(model), {}
    except CodecError:
        pass
    if Path(model).is_file():
        return registry.default_for(modality), {"weights": model}
    ids = ", ".join(e.codec_id for e in registry.entries() if e.modality == modality)
    raise Failure(f"unknown model {model!r} ({ids}, or a weights file)")


@main.command()
@click.argument("input", metavar="IN")
@click.option("-o", "--output", metavar="OUT", help="Output file (default: IN with .tokc; - for stdout).")
@click.option("-q", "--quality", type=click.FloatRange(0, 100), default=None,
              help="Quality 0..100 (default 75). 100 is the highest rate, NOT lossless.")
@click.option("-b", "--kbps", type=click.FloatRange(0, min_open=True), default=None, metavar="KBPS",
              help="Audio: the best quality whose average bitrate is at most KBPS.")
@click.option("--size", type=click.IntRange(1), metavar="BYTES", help="Best quality whose file fits in BYTES.")
@click.option("--psnr", type=float, callback=_positive_db, metavar="DB",
              help="Smallest file reaching this PSNR (dB, > 0).")
@click.option("-e", "--effort", type=click.IntRange(1, 9), default=None,
              help="Encoder effort 1..9 (default 1): higher spends more time for fewer bytes at the "
                   "same quality.")
@click.option("--tune", type=click.Choice(["psnr", "perceptual"]), default=None,
              help="Images: the synthesis the file asks its decoder for: psnr (default: the "
                   "closest pixels) or perceptual (keeps texture; SSIMULACRA2). Same tokens and "
                   "size either way.")
@click.option("--postfilter/--no-postfilter", default=None,
              help="Audio: ask the decoder for the learned fill and the learned post-filter "
                   "trained on it (on by default; off: the noise fill alone).")
@click.option("-m", "--model", default="default", show_default=True,
              help="default (tokc-image-v1 for images, tokc-audio-v1 for audio by the input's "
                   "suffix), a codec id, a weights file, or one-d-piece (with --checkpoint).")
@click.option("--checkpoint", metavar="PATH", help="-m one-d-piece: the checkpoint folder or weights file.")
@click.option("--tokens", type=int, default=None, metavar="K",
              help="-m one-d-piece: code the first K tokens (default: all of them).")
@click.option("--backend", type=click.Choice(["auto", "onnx", "torch", "tensorrt"]), default="auto", show_default=True)
@click.option("--strip", is_flag=True,
              help="Images: drop the ICC profile, EXIF (orientation) and PNG sRGB/gAMA/cHRM, which "
                   "are kept by default and written back on decompress.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No summary line.")
@click.option("-v", "--verbose", is_flag=True, help="Also decode and report PSNR.")
def compress(input, output, quality, kbps, size, psnr, effort, tune, postfilter, model, checkpoint,
             tokens, backend, strip, force, as_json, quiet, verbose):
    """Compress an image (PNG, JPEG, WebP, TIFF, PPM; gray, gray + alpha, RGB or RGBA; of an
    animation, the first frame) or audio (WAV, FLAC, OGG, MP3; mono or stereo) to a .tokc file."""
    if sum(x is not None for x in (quality, kbps, size, psnr)) > 1:
        raise click.UsageError("give at most one of -q, -b, --size, --psnr")
    rate = {k: v for k, v in {"quality": quality, "kbps": kbps, "size": size, "psnr": psnr,
                              "effort": effort, "tune": tune, "tokens": tokens,
                              "postfilter": postfilter}.items()
            if v is not None}
    entry, load = _choose(model, registry.modality_of(input))
    if checkpoint is not None:
        load["checkpoint"] = checkpoint
    foreign = [o for o in [*rate, *load] if o not in entry.rate_options + entry.load_options]
    if foreign:
        raise Usage(f"options {_flags(foreign)} go with -m {_takers(foreign[0])}, not -m {model} "
                    f"(it takes {_flags(entry.rate_options + entry.load_options)})")
    if output is None:
        output = "-" if input == "-" else str(Path(input).with_suffix(".tokc"))
    _check_input(input)
    _refuse_existing(output, force)
    _warn(quiet)
    media = registry.media(entry.modality)
    t0 = time.perf_counter()
    codec = _open(entry, {"backend": backend, **load})
    try:
        raw = _read_input(input)
        original = media.read(raw, input)
        kept = {}  # images, with a codec that keeps metadata
        if hasattr(media, "keeps_metadata") and media.keeps_metadata(codec):
            kept["metadata"] = False if strip else media.metadata_of(io.BytesIO(raw), input)
        res = codec.compress(original, **rate, **kept)
        elapsed = time.perf_counter() - t0
        measured = None
        key, name, unit = media.MEASURE
        if verbose or key in rate:
            measured = media.measure(original, codec.decompress(res.data))
        _write_output(output, res.data, force)
    except CodecUsageError as e:
        raise Usage(str(e)) from None
    except ERRORS as e:
        raise Failure(_about(input, e)) from None
    size_fields, size_text = media.summary(res)
    codec_fields, codec_text = codec.summary(res)
    summary = {"input": input, "output": output, "bytes": len(res.data), **size_fields,
               **codec_fields, key: None if measured is None else round(measured, 3),
               "seconds": round(elapsed, 3)}
    if as_json:
        click.echo(json.dumps(summary), err=output == "-")
    elif not quiet:
        extra = f", {name} {measured:.2f} {unit}" if measured is not None else ""
        click.echo(f"{input} -> {output}: {len(res.data)} bytes, {size_text}, {codec_text}{extra}, "
                   f"{elapsed:.2f} s", err=True)


@main.command()
@click.argument("input", metavar="IN")
@click.option("-o", "--output", metavar="OUT",
              help="Output file (default: IN with .png for images, .wav for audio; - for stdout). "
                   "The extension picks the format.")
@click.option("--backend", type=click.Choice(["auto", "onnx", "torch", "tensorrt"]), default="auto", show_default=True)
@click.option("-m", "--model", default="default", show_default=True,
              help="A weights file to decode with (default: the shipped weights of the file's codec).")
@click.option("--checkpoint", metavar="PATH", help="The One-D-Piece checkpoint a one-d-piece-v1 file was made with.")
@click.option("--max-pixels", type=click.IntRange(0), default=MAX_PIXELS, show_default=True, metavar="N",
              help="Refuse an image whose header claims more than N pixels, before decoding "
                   "(a guard against small files that decode to huge images; 0: no limit).")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--quiet", is_flag=True, help="No summary line.")
def decompress(input, output, backend, model, checkpoint, max_pixels, force, quiet):
    """Decompress a .tokc file: images to PNG (or .ppm, .pgm as grey, .tif, .bmp, .webp; ICC
    profile and EXIF as kept at compress in PNG, TIFF and WebP), audio to 16-bit WAV (or
    .flac), decoded as the file is read."""
    if output is not None:
        _refuse_existing(output, force)
    _warn(quiet)
    t0 = time.perf_counter()
    try:
        _check_input(input)
        with (open(input, "rb") if input != "-" else nullcontext(sys.stdin.buffer)) as src:
            src = _Recording(src)
            reader = fmt.Reader(src)
            header = reader.header
            check_pixels(header, max_pixels, flag="--max-pixels ")
            entry = registry.entry_for(header)
            load = {**_choose(model, header.modality)[1], "checkpoint": checkpoint}
            load = {k: v for k, v in load.items() if v is not None}
            for option in load:
                if option not in entry.load_options:
                    raise Failure(f"{FLAGS[option]} is for {_takers(option)} files; this is a "
                                  f"{header.codec} file")
            media = registry.media(header.modality)
            if output is None:
                output = "-" if input == "-" else str(Path(input).with_suffix(media.SUFFIX))
                _refuse_existing(output, force)
            codec = _open(entry, {"backend": backend, **load})
            if hasattr(codec, "decompress_stream") and hasattr(media, "write_stream"):
                _write_with(output, lambda f: media.write_stream(
                    codec.decompress_stream(reader), header, f, output), force)
                described = media.describe_header(header)
            else:
                data = src.rest()
                decoded = codec.decompress(data)
                kept = ((media.stored_metadata(data),) if hasattr(media, "stored_metadata")
                        else ())
                _write_output(output, media.write(decoded, output, *kept), force)
                described = media.describe(decoded)
    except CodecUsageError as e:
        raise Usage(str(e)) from None
    except ERRORS as e:
        raise Failure(_about(input, e)) from None
    if not quiet:
        click.echo(f"{input} -> {output}: {described}, {time.perf_counter() - t0:.2f} s", err=True)
