"""`tokc info FILE`: print the header and chunk list of a .tokc file, checking every CRC (the
framing only: the payload is not decoded, so a header whose dimensions were changed and whose
CRC was recomputed passes here and fails in `tokc decompress`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

import click

from tokc import format as fmt
from tokc.cli import main
from tokc.cli.errors import Failure
from tokc.compress import registry
from tokc.compress.base import CodecError

_MAX_LISTED = 16  # text output lists this many chunks, then a count of the rest


def _describe(f: BinaryIO) -> dict:
    reader = fmt.Reader(f)
    chunks = [{"tag": c.tag, "size": len(c.payload)} for c in reader]
    h = reader.header
    payload = sum(c["size"] for c in chunks)
    return {
        "format_version": fmt.FORMAT_VERSION,
        "codec": h.codec,
        "modality": h.modality,
        "width": h.width,
        "height": h.height,
        "channels": h.channels,
        "sample_rate": h.sample_rate,
        "num_samples": h.num_samples,
        "rate": h.rate_dict(),
        "weights_digest": h.weights_digest.hex(),
        "chunks": chunks,
        "payload_bytes": payload,
        "overhead_bytes": reader.bytes_read - payload,
        "total_bytes": reader.bytes_read,
        "decoder": _decoder(h),
        # what info checked: the framing and its CRCs, not what the payload decodes to (a
        # forged header with recomputed CRCs passes; decompress finds it out)
        "payload_decoded": False,
    }


def _decoder(h: fmt.Header) -> dict | None:
    """The registered codec that decodes the file (by the header's codec id), and the options
    it needs; None when this install has none."""
    try:
        entry = registry.entry_for(h)
    except (CodecError, fmt.TokcFormatError):
        return None
    return {"codec": entry.codec_id, "needs": list(entry.needs)}


def _text(name: str, d: dict) -> str:
    if d["modality"] == "image":
        dims = f"{d['width']}x{d['height']}, {d['channels']} channels"
    else:
        seconds = d["num_samples"] / d["sample_rate"]
        dims = (
            f"{d['sample_rate']} Hz, {d['channels']} channels, "
            f"{d['num_samples']} samples ({seconds:.3f} s)"
        )
    rate = " ".join(f"{k}={v}" for k, v in d["rate"].items()) or "-"
    lines = [
        f"file        {name}",
        f"format      version {d['format_version']}",
        f"codec       {d['codec']}",
        f"modality    {d['modality']}",
        f"dimensions  {dims}",
        f"rate        {rate}",
        f"weights     {d['weights_digest']}",
        f"decoder     {_decoder_text(d['decoder'], d['codec'])}",
        f"chunks      {len(d['chunks'])} (CRCs ok; the payload is not decoded, so not checked)",
    ]
    for i, c in enumerate(d["chunks"][:_MAX_LISTED]):
        lines.append(f"  #{i:<4} {c['tag']}  {c['size']:>10} bytes")
    if len(d["chunks"]) > _MAX_LISTED:
        lines.append(f"  ... {len(d['chunks']) - _MAX_LISTED} more chunks")
    lines += [
        f"payload     {d['payload_bytes']} bytes",
        f"overhead    {d['overhead_bytes']} bytes",
        f"total       {d['total_bytes']} bytes",
    ]
    return "\n".join(lines)


def _decoder_text(decoder: dict | None, codec: str) -> str:
    if decoder is None:
        return f"none in this tokc for {codec}"
    needs = ", ".join(f"--{n}" for n in decoder["needs"])
    return decoder["codec"] + (f" (decoding needs {needs})" if needs else "")


@main.command()
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def info(file: str, as_json: bool) -> None:
    """Show the header and chunks of a .tokc FILE (`-` reads stdin)."""
    if file != "-" and Path(file).is_dir():
        raise Failure(f"{file}: is a directory")
    if file != "-" and not Path(file).exists():
        raise Failure(f"{file}: no such file")  # exit 1, as `tokc decompress` does
    try:
        with click.open_file(file, "rb") as f:
            d = _describe(f)
    except fmt.TokcFormatError as e:
        raise Failure(f"{file}: {e}") from None
    except OSError as e:
        raise Failure(f"{file}: {e.strerror or e}") from None
    if as_json:
        click.echo(json.dumps({"file": file, **d}))
    else:
        click.echo(_text(file, d))
