"""Sound I/O for the audio codecs: reading audio files, writing WAV/FLAC, and what the CLI
needs of the audio modality (`read`, `write`, `write_stream`, `measure`, `summary`,
`describe`; tokc.compress.pixels offers the same for images).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from tokc import format as fmt
from tokc.compress.base import CodecError, EncodeResult, Sound

SUFFIX = ".wav"  # what decompress writes by default
MEASURE = ("pesq", "PESQ-WB", "MOS")  # the JSON key, name and unit of `measure`
OUTPUT_KINDS = {"wav": "WAV", "flac": "FLAC"}


def read_sound(source, name: str | None = None) -> Sound:
    """WAV, FLAC, OGG/Vorbis, MP3... (a path or binary file object, via libsndfile)."""
    import soundfile

    name = name or str(source)
    try:
        samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as e:
        raise CodecError(f"cannot read audio {name}: {str(e).splitlines()[0] if str(e) else e}") from None
    if not 1 <= rate <= fmt.MAX_SAMPLE_RATE:
        raise CodecError(f"cannot read audio {name}: sample rate {rate} is out of range")
    return Sound(samples, int(rate))


def read(raw: bytes, name: str) -> Sound:
    """An input file's bytes -> what the audio codecs compress."""
    return read_sound(io.BytesIO(raw), name)


def _pcm16(block: np.ndarray) -> bytes:
    return np.round(np.clip(block, -1, 1) * 32767).astype("<i2").tobytes()


def wav_header(num_samples: int, channels: int, sample_rate: int) -> bytes:
    """The 44-byte header of a 16-bit PCM WAV of known length (so WAV can stream to a pipe)."""
    data = num_samples * channels * 2
    if data + 36 >= 1 << 32:
        raise CodecError("the decoded audio is too long for a WAV file (4 GiB): use .flac")
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE" + b"fmt "
            + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * channels * 2,
                          channels * 2, 16)
            + b"data" + struct.pack("<I", data))


def _kind(name: str) -> str:
    suffix = "wav" if name == "-" else Path(name).suffix.lower().lstrip(".")
    kind = OUTPUT_KINDS.get(suffix)
    if kind is None:
        raise CodecError(f"cannot write {name}: use .wav or .flac (16-bit PCM)")
    return kind


def write_stream(blocks: Iterable[np.ndarray], header: fmt.Header, out: BinaryIO, name: str) -> None:
    """Decoded blocks (k, channels) -> a 16-bit WAV or FLAC (by the name's suffix; WAV for
    stdout) written to `out` as they come."""
    kind = _kind(name)
    if kind == "WAV":
        out.write(wav_header(header.num_samples, header.channels, header.sample_rate))
        for block in blocks:
            out.write(_pcm16(block))
        return
    import soundfile

    with soundfile.SoundFile(out, "w", header.sample_rate, header.channels, "PCM_16", format="FLAC") as f:
        for block in blocks:
            f.write(block)


def write(sound: Sound, name: str) -> bytes:
    """A decoded Sound -> the bytes of a 16-bit WAV or FLAC file, by the name's suffix."""
    buf = io.BytesIO()
    header = fmt.Header(codec="x", weights_digest=bytes(8), modality="audio",
                        channels=sound.channels, sample_rate=sound.sample_rate,
                        num_samples=sound.samples.shape[0])
    write_stream([sound.samples], header, buf, name)
    return buf.getvalue()


def measure(original: Sound, decoded: Sound) -> float:
    """PESQ-WB of the decoded audio against the original (channels averaged; nan where PESQ
    finds no speech)."""
    from tokc.metrics.audio import pesq_wb

    ref = original.samples.mean(1).astype(np.float64)
    deg = decoded.samples.mean(1).astype(np.float64)
    try:
        return pesq_wb(ref, deg, original.sample_rate)
    except Exception:  # pesq refuses signals without detectable speech
        return float("nan")


def summary(res: EncodeResult) -> tuple[dict, str]:
    """The size fields of a compress summary: JSON fields and the text."""
    return ({"kbps": round(res.kbps, 3), "sample_rate": res.sample_rate,
             "num_samples": res.num_samples}, f"{res.kbps:.2f} kbps")


def describe(decoded: Sound) -> str:
    return f"{decoded.seconds:.2f} s, {decoded.channels} ch, {decoded.sample_rate} Hz"


def describe_header(header: fmt.Header) -> str:
    return f"{header.num_samples / header.sample_rate:.2f} s, {header.channels} ch, {header.sample_rate} Hz"
