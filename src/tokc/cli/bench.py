"""`tokc bench`: benchmarks. `tokc bench rd` draws rate-distortion curves for registered codecs."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click

from tokc.cli import main

DEFAULT_CODECS = {"image": "tokc,jpeg,webp,avif,jxl", "audio": "tokc,opus-voip,mp3"}


class _Fail(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _parse_grids(values: tuple[str, ...], codecs: list[str], what: str) -> dict[str, list[float]]:
    """'Q1,Q2,...' sets the grid of every codec; 'CODEC=Q1,Q2,...' of one codec."""
    grids: dict[str, list[float]] = {}
    for value in values:
        codec, sep, numbers = value.rpartition("=")
        targets = [codec] if sep else codecs
        if sep and codec not in codecs:
            raise _Fail(f"--{what} names {codec!r}, which is not in --codecs", 2)
        try:
            grid = [float(x) for x in numbers.split(",") if x.strip()]
        except ValueError:
            raise _Fail(f"--{what} {value!r}: expected numbers separated by commas", 2) from None
        if not grid:
            raise _Fail(f"--{what} {value!r} gives no values", 2)
        for c in targets:
            grids[c] = grid
    return grids


@main.group()
def bench() -> None:
    """Benchmarks."""


@bench.command("rd")
@click.option(
    "--images",
    "images_dir",
    type=click.Path(path_type=Path),
    help="Folder of images (png, jpg, ...) to benchmark.",
)
@click.option(
    "--audio",
    "audio_dir",
    type=click.Path(path_type=Path),
    help="Folder of audio clips (wav, flac, ogg; subfolders included) to benchmark as speech.",
)
@click.option(
    "--codecs",
    help="Comma-separated registered codecs, e.g. jpeg,webp,avif,jxl or opus,mp3 "
    f"(default: {DEFAULT_CODECS['image']} for images, {DEFAULT_CODECS['audio']} for audio).",
)
@click.option(
    "--split",
    metavar="NAME",
    help="Audio: only the files of this split of DIR/index.tsv (columns path, split), e.g. val.",
)
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    help="Audio: the weights file the codec 'tokc' runs (default: $TOKC_AUDIO_WEIGHTS, else "
    "the shipped tokc-audio-v1), to benchmark a checkpoint before it is shipped.",
)
@click.option(
    "--music",
    "music_dir",
    type=click.Path(path_type=Path),
    help="Audio: also a music table from this folder (ViSQOL audio mode at 48 kHz; "
    "--music-codecs at 24, 32, 48 kbps), written as <name>_music.*.",
)
@click.option(
    "--music-codecs",
    default="tokc,opus",
    show_default=True,
    help="Codecs of the music table.",
)
@click.option(
    "--music-limit", type=click.IntRange(min=1), help="Use only the first N music files."
)
@click.option(
    "--music-seconds",
    type=click.FloatRange(min=1),
    default=10.0,
    show_default=True,
    help="Crop each music clip to its first N seconds (ViSQOL audio mode is slow).",
)
@click.option(
    "--no-visqol", is_flag=True, help="Audio: skip ViSQOL (it runs at about 1x real time)."
)
@click.option(
    "--qualities",
    multiple=True,
    metavar="[CODEC=]Q1,Q2,...",
    help="Image quality grid, for all codecs or one (repeatable); default per codec.",
)
@click.option(
    "--bitrates",
    multiple=True,
    metavar="[CODEC=]KBPS1,KBPS2,...",
    help="Audio bitrate grid in kbps, for all codecs or one (repeatable).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N files.")
@click.option("--name", help="Report name (default: <folder>_<codecs>).")
@click.option("--anchor", help="Reference codec of the BD-rate table (default: the first).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("benchmarks/results"),
    show_default=True,
    help="Folder for <name>.json, <name>.md, <name>.png.",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing report.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary line.")
def rd(**options: object) -> None:
    """Rate-distortion curves and BD-rate tables.

    Runs registered codecs over a folder of images (--images) or audio clips (--audio)
    and writes <name>.json, <name>.md and <name>.png under --out.

    Audio (speech): PESQ-WB, STOI, ViSQOL speech, log-mel distance, SI-SDR and encode/decode
    speed on one thread; BD-rates against Opus voip, also over 6-16 kbps and Opus's wideband
    points (pchip), and issue 15's bar. E.g.
    tokc bench rd --audio ../shared/data/audio/speech --split val --music
    ../shared/data/audio/music --name speech_val
    """
    try:
        _rd(**options)  # type: ignore[arg-type]
    except _Fail as e:
        click.echo(f"tokc: error: {e}", err=True)
        sys.exit(e.code)
    except Exception as e:  # a codec or metric failed: one line, no traceback
        if os.environ.get("TOKC_DEBUG"):
            raise
        click.echo(f"tokc: error: {type(e).__name__}: {e}", err=True)
        sys.exit(1)


def _rd(
    images_dir: Path | None,
    audio_dir: Path | None,
    codecs: str | None,
    split: str | None,
    weights: Path | None,
    music_dir: Path | None,
    music_codecs: str,
    music_limit: int | None,
    music_seconds: float,
    no_visqol: bool,
    qualities: tuple[str, ...],
    bitrates: tuple[str, ...],
    limit: int | None,
    name: str | None,
    anchor: str | None,
    out: Path,
    force: bool,
    quiet: bool,
) -> None:
    from tokc.bench import rd as rdlib

    if (images_dir is None) == (audio_dir is None):
        raise _Fail("give exactly one of --images DIR or --audio DIR", 2)
    kind = "image" if images_dir is not None else "audio"
    noun = "images" if kind == "image" else "clips"
    folder = images_dir if images_dir is not None else audio_dir
    assert folder is not None
    if not folder.is_dir():
        raise _Fail(f"no such directory: {folder}", 2)
    if kind == "image" and (split or weights or music_dir or no_visqol):
        raise _Fail("--split, --weights, --music and --no-visqol are for --audio", 2)
    if music_dir is not None and not music_dir.is_dir():
        raise _Fail(f"no such directory: {music_dir}", 2)

    names = _codec_names(codecs if codecs is not None else DEFAULT_CODECS[kind], kind)
    music = _codec_names(music_codecs, "audio") if music_dir is not None else []
    if kind == "audio" and "tokc" in names + music:
        from tokc.baselines.learned import audio_weights_path

        path = audio_weights_path(weights)
        if not path.is_file():
            raise _Fail(f"tokc-audio-v1 weights not found: {path} (give --weights PATH or set "
                        "$TOKC_AUDIO_WEIGHTS, or leave tokc out of --codecs)", 2)
    if anchor is not None and anchor not in names:
        raise _Fail(f"--anchor {anchor!r} is not in --codecs", 2)
    if (kind == "image" and bitrates) or (kind == "audio" and qualities):
        raise _Fail("--qualities is for --images, --bitrates for --audio", 2)
    grids = _parse_grids(qualities or bitrates, names, "qualities" if qualities else "bitrates")

    suffixes = rdlib.IMAGE_SUFFIXES if kind == "image" else rdlib.AUDIO_SUFFIXES
    if split:
        try:
            files = rdlib.split_files(folder, split, limit)
        except ValueError as e:
            raise _Fail(str(e), 2) from None
    else:
        files = rdlib.list_files(folder, suffixes, limit, recursive=kind == "audio")
    if not files:
        raise _Fail(f"no {kind} files ({', '.join(suffixes)}) in {folder}", 1)
    name = name or f"{folder.resolve().name}_{'_'.join(names)}"
    jobs = [(files, names, grids, name, "speech" if kind == "audio" else "", anchor)]
    if music_dir is not None:
        mfiles = rdlib.list_files(music_dir, rdlib.AUDIO_SUFFIXES, music_limit, recursive=True)
        if not mfiles:
            raise _Fail(f"no audio files in {music_dir}", 1)
        jobs.append((mfiles, music, {}, f"{name}_music", "music", None))
    if not force:
        for *_, job_name, _, _ in jobs:
            for suffix in (".json", ".md", ".png"):
                if (out / f"{job_name}{suffix}").exists():
                    raise _Fail(f"{out / (job_name + suffix)} exists (use -f to overwrite)", 1)

    if kind == "audio" and "tokc" in names + music:
        from tokc.baselines.audio import audio_codec
        from tokc.baselines.learned import register_tokc_audio

        shipped = audio_codec("tokc")
        register_tokc_audio(weights, replace=True, digest=True)
        try:
            _run_jobs(rdlib, kind, noun, jobs, out, force, quiet, no_visqol, music_seconds)
        finally:  # the registry is process-wide: leave "tokc" as it was
            _restore_audio_codec(shipped)
    else:
        _run_jobs(rdlib, kind, noun, jobs, out, force, quiet, no_visqol, music_seconds)


def _restore_audio_codec(codec) -> None:
    from tokc.baselines.audio import register_audio_codec

    register_audio_codec(codec.name, codec.encode, decode=codec.decode, bitrates=codec.bitrates,
                         bitrate_choices=codec.bitrate_choices, settings=codec.settings,
                         replace=True)


def _run_jobs(rdlib, kind: str, noun: str, jobs: list, out: Path, force: bool, quiet: bool,
              no_visqol: bool, music_seconds: float) -> None:
    for job_files, job_codecs, job_grids, job_name, profile, job_anchor in jobs:
        if kind == "image":
            job_grids = rdlib.image_grids(job_codecs, job_grids)
        else:
            import soundfile

            rate = soundfile.info(str(job_files[0])).samplerate
            job_grids = rdlib.audio_grids(job_codecs, rate, job_grids, profile)
        total = len(job_files) * sum(len(g) for g in job_grids.values())
        show_bar = not quiet and sys.stderr.isatty()
        bar = (
            click.progressbar(length=total, label=f"rd {profile or kind}", file=sys.stderr)
            if show_bar
            else contextlib.nullcontext()
        )
        with bar as b:
            progress = b.update if show_bar else None
            if kind == "image":
                result = rdlib.run_image_rd(job_files, job_codecs, job_grids, progress)
            else:
                result = rdlib.run_audio_rd(
                    job_files, job_codecs, job_grids, progress, profile=profile,
                    visqol=not no_visqol,
                    max_seconds=music_seconds if profile == "music" else None,
                )
        paths = rdlib.write_report(result, out, job_name, job_anchor, overwrite=force)
        if not quiet:
            for note in result.notes:
                click.echo(f"tokc: note: {note}", err=True)
            click.echo(
                f"tokc: {len(job_files)} {noun} x {len(job_codecs)} codecs in "
                f"{result.runtime_s / 60:.1f} min -> {paths.json}, {paths.md.name}, "
                f"{paths.png.name}",
                err=True,
            )


def _codec_names(codecs: str, kind: str) -> list[str]:
    names = list(dict.fromkeys(c.strip() for c in codecs.split(",") if c.strip()))
    if not names:
        raise _Fail("--codecs is empty", 2)
    if kind == "image":
        from tokc.baselines.image import image_codec as lookup
    else:
        from tokc.baselines.audio import audio_codec as lookup
    for c in names:
        try:
            lookup(c)
        except ValueError as e:
            raise _Fail(str(e), 2) from None
    return names


@bench.command("compare")
@click.argument("image", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("-q", "--quality", type=click.FloatRange(0, 100), default=75, show_default=True,
              help="tokc's quality (an image).")
@click.option("-b", "--kbps", type=click.FloatRange(0, min_open=True), default=12,
              show_default=True, help="The bitrate of both codecs (a sound).")
@click.option("--codecs", default=None,
              help="Classic codecs to compare: given tokc's byte budget (images, default "
                   "jpeg,webp) or the same bitrate (audio, default opus-voip).")
@click.option("--backend", type=click.Choice(["auto", "onnx", "torch"]), default="auto", show_default=True)
def compare_cmd(image: str, quality: float, kbps: float, codecs: str | None, backend: str) -> None:
    """One image: tokc at -q, then each classic codec at the same size; or one sound (.wav,
    .flac, ...): tokc at -b, then Opus at the same bitrate (the README demo)."""
    from tokc.compress import registry

    if registry.modality_of(image) == "audio":
        from tokc.bench.compare import compare_audio, format_audio_rows
        from tokc.compress.audio import CodecError, as_sound

        try:
            sound = as_sound(image)
            rows = compare_audio(sound, kbps, [c for c in (codecs or "opus-voip").split(",") if c])
        except (CodecError, ValueError, OSError) as e:
            raise click.ClickException(str(e)) from None
        click.echo(f"{image}: {sound.seconds:.2f} s, {sound.sample_rate} Hz, {sound.channels} "
                   "channel(s); both codecs asked for the same bitrate")
        click.echo(format_audio_rows(rows))
        return
    from tokc.bench.compare import compare, format_rows
    from tokc.compress.image import CodecError, as_image, split_alpha_gray

    try:
        rgb = split_alpha_gray(as_image(image))[0]
        rows = compare(rgb, quality, [c for c in (codecs or "jpeg,webp").split(",") if c], backend)
    except (CodecError, ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    h, w = rgb.shape[:2]
    click.echo(f"{image}: {w}x{h}; classic codecs get the byte budget of the tokc file")
    click.echo(format_rows(rows))


@bench.command("latency")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--backends", "variants", default=None,
              help="Comma-separated variants (default on cpu: torch,onnx-fp32,onnx-fp16,onnx-int8,"
                   "compressai; on cuda: torch,torch-fp16,onnx-fp32,tensorrt-fp32,tensorrt-fp16,"
                   "tensorrt-int8,compressai).")
@click.option("-m", "--model", default="tokc-image-v1", show_default=True,
              help="tokc-image-v1 or a weights file.")
@click.option("--onnx-dir", type=click.Path(path_type=Path),
              help="Folder of the exports (tokc export ... --precision P); default: beside the weights.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("-q", "--quality", type=click.FloatRange(0, 100), default=75, show_default=True)
@click.option("--name", help="Report name (default: latency_<device>).")
@click.option("--note", default="", help="A sentence for the report (e.g. what else ran on the machine).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/results"), show_default=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing report.")
@click.option("--whole-process/--no-whole-process", "whole", default=True, show_default=True,
              help="Also time whole `tokc compress`/`decompress` commands (beside cwebp/dwebp when "
              "on PATH) and split a decode into import, model load, decode and PNG write.")
@click.option("--quiet", is_flag=True, help="No progress or summary lines.")
def latency_cmd(**options: object) -> None:
    """Encode/decode latency and MP/s per backend and precision, CompressAI beside (one run).

    Writes <name>.json and <name>.md under --out and prints the table."""
    try:
        _latency(**options)  # type: ignore[arg-type]
    except _Fail as e:
        click.echo(f"tokc: error: {e}", err=True)
        sys.exit(e.code)
    except Exception as e:  # one line, no traceback
        if os.environ.get("TOKC_DEBUG"):
            raise
        click.echo(f"tokc: error: {type(e).__name__}: {e}", err=True)
        sys.exit(1)


def _latency(image: Path, variants: str | None, model: str, onnx_dir: Path | None, device: str,
             threads: int, warmup: int, repeats: int, quality: float, name: str | None,
             note: str, out: Path, force: bool, quiet: bool, whole: bool = True) -> None:
    from tokc.bench import latency as lat
    from tokc.compress.image import CODEC_ID, CodecError

    if not image.is_file():
        raise _Fail(f"{image}: no such file", 2)
    if model != CODEC_ID and not Path(model).is_file():
        raise _Fail(f"unknown model {model!r} ({CODEC_ID}, or a weights file)", 2)
    if onnx_dir is not None and not onnx_dir.is_dir():
        raise _Fail(f"--onnx-dir {onnx_dir}: no such directory", 2)
    default = lat.GPU_VARIANTS if device == "cuda" else lat.CPU_VARIANTS
    names = list(dict.fromkeys(v.strip() for v in (variants or ",".join(default)).split(",") if v.strip()))
    unknown = [v for v in names if v not in lat.KNOWN]
    if not names or unknown:
        raise _Fail(f"unknown variant(s) {', '.join(unknown) or '(none given)'} "
                    f"(known: {', '.join(lat.KNOWN)})", 2)
    name = name or f"latency_{device}"
    if not force:
        for suffix in (".json", ".md"):
            if (out / f"{name}{suffix}").exists():
                raise _Fail(f"{out / (name + suffix)} exists (use -f to overwrite)", 1)
    log = None if quiet else (lambda msg: click.echo(f"tokc: {msg}", err=True))
    try:
        res = lat.run_latency(image, names, None if model == CODEC_ID else Path(model), onnx_dir,
                              device, threads, warmup, repeats, quality, note, log, whole)
    except CodecError as e:
        raise _Fail(str(e), 1) from None
    if not res.rows:
        raise _Fail("no variant could run: " + "; ".join(f"{k}: {v}" for k, v in res.skipped.items()), 1)
    js, md = lat.write_report(res, out, name)
    if not quiet:
        click.echo(lat.to_markdown(res))
        click.echo(f"tokc: {len(res.rows)} variants, {repeats} rounds -> {js}, {md.name}", err=True)
