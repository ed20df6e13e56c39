"""`tokc batch compress|decompress SRC -o DST`: whole folder trees (tokc.batch)."""

from __future__ import annotations

import json
import sys

import click

from tokc import batch as runner
from tokc.cli import main
from tokc.cli.errors import Failure, Usage


@main.group()
def batch() -> None:
    """Compress or decompress whole folders on a process pool (or a Ray cluster). Outputs
    mirror SRC's tree under DST; a rerun skips outputs that exist and verify; DST/manifest.jsonl
    records every item. Exit 1 if any item failed."""


def _common(fn):
    fn = click.option("--quiet", is_flag=True, help="No progress bar or summary.")(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")(fn)
    fn = click.option("-f", "--force", is_flag=True, help="Redo items whose outputs exist.")(fn)
    fn = click.option("--ray", "ray", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
                      help="Run on Ray: a cluster's address, or alone a local Ray instance.")(fn)
    fn = click.option("--workers", type=click.IntRange(1), default=None,
                      help="Worker processes (default: the machine's cores).")(fn)
    fn = click.option("--backend", type=click.Choice(["auto", "onnx", "torch", "tensorrt"]),
                      default="auto", show_default=True)(fn)
    fn = click.option("-o", "--output", "dst", required=True, metavar="DST", help="Output folder.")(fn)
    return click.argument("src", metavar="SRC")(fn)


@batch.command("compress")
@_common
@click.option("-q", "--quality", type=click.FloatRange(0, 100), default=None)
@click.option("-b", "--kbps", type=click.FloatRange(0, min_open=True), default=None, metavar="KBPS")
@click.option("--size", type=click.IntRange(1), default=None, metavar="BYTES")
@click.option("-e", "--effort", type=click.IntRange(1, 9), default=None)
@click.option("--tune", type=click.Choice(["psnr", "perceptual"]), default=None)
def compress(src, dst, backend, workers, ray, force, as_json, quiet, quality, kbps, size, effort, tune):
    """Every image and sound file under SRC (a folder, a glob, or a .txt list of paths) to .tokc."""
    if sum(v is not None for v in (quality, kbps, size)) > 1:
        raise Usage("give at most one of -q, -b, --size")
    options = {"backend": backend, "quality": quality, "kbps": kbps, "size": size,
               "effort": effort, "tune": tune}
    _run(runner.Job("compress", src, dst, {k: v for k, v in options.items() if v is not None}, force),
         workers, ray, as_json, quiet)


@batch.command("decompress")
@_common
def decompress(src, dst, backend, workers, ray, force, as_json, quiet):
    """Every .tokc file under SRC back to .png (images) or .wav (audio)."""
    _run(runner.Job("decompress", src, dst, {"backend": backend}, force), workers, ray, as_json, quiet)


@batch.command("tokenize")
@click.argument("src", metavar="SRC")
@click.option("-o", "--output", "dst", required=True, metavar="DST", help="Output folder (Parquet shards).")
@click.option("-m", "--arch", required=True, type=click.Choice(sorted(runner.TOKENIZE_ARCHS)))
@click.option("--checkpoint", required=True, metavar="PATH", help="The tokenizer's checkpoint.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--shard-size", type=click.IntRange(1), default=256, show_default=True,
              help="Inputs per Parquet file (and per task).")
@click.option("--image-size", type=click.IntRange(16), default=256, show_default=True,
              help="WeTok: images are resized to this square (One-D-Piece/TiTok: their own size).")
@click.option("--workers", type=click.IntRange(1), default=None)
@click.option("--ray", "ray", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]")
@click.option("-f", "--force", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", is_flag=True)
def tokenize(src, dst, arch, checkpoint, batch_size, shard_size, image_size, workers, ray, force,
             as_json, quiet):
    """Every image (or sound, for wavtokenizer) under SRC to token arrays with a published
    tokenizer: DST/tokens-NNNNN.parquet (id, tokens, shape; the tokenizer and its weights'
    sha256 in the metadata), for data loaders. Needs torch and pyarrow."""
    try:
        records = runner.run_tokenize(src, dst, arch, checkpoint, workers,
                                      None if ray is None else (True if ray == "local" else ray),
                                      batch_size, shard_size, image_size, force)
    except ImportError as e:
        raise Failure(f"tokenize needs torch and pyarrow, --ray needs ray ({e})") from None
    except (OSError, ValueError) as e:
        raise Failure(str(e).splitlines()[0]) from None
    _report(records, dst, as_json, quiet)


def _run(job, workers, ray, as_json, quiet) -> None:
    try:
        items = runner.plan(job)
    except OSError as e:
        raise Failure(str(e)) from None
    bar = None
    if not quiet and sys.stderr.isatty():
        bar = click.progressbar(length=len(items), label="tokc batch", file=sys.stderr, show_pos=True)
        bar.__enter__()
    try:
        records = runner.run(job, workers, None if ray is None else (True if ray == "local" else ray),
                             on_record=(lambda rec: bar.update(1)) if bar else None)
    except ImportError as e:
        raise Failure(f"--ray needs Ray: pip install 'tokc-codec[batch]' ({e})") from None
    finally:
        if bar:
            bar.__exit__(None, None, None)
    _report(records, job.dst, as_json, quiet)


def _report(records, dst, as_json, quiet) -> None:
    summary = runner.summarize(records)
    if as_json:
        click.echo(json.dumps(summary))
    elif not quiet:
        rate = (f", mean {summary['mean_bpp']} bpp" if "mean_bpp" in summary else "") + \
            (f", mean {summary['mean_kbps']} kbps" if "mean_kbps" in summary else "")
        click.echo(f"{summary['items']} items: {summary['ok']} done, {summary['skipped']} skipped, "
                   f"{summary['failed']} failed; {summary['bytes_in']} -> {summary['bytes_out']} bytes"
                   f"{rate}; manifest {dst}/{runner.MANIFEST}", err=True)
    for rec in records:
        if rec["status"] == "failed" and not quiet:
            click.echo(f"tokc: error: {rec['input']}: {rec['error']}", err=True)
    if summary["failed"]:
        raise SystemExit(1)
