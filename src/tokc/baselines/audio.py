"""Audio baselines (Opus, MP3 via PyAV, in memory) behind a registry by name.

Audio is float32 in [-1, 1], shape (n,) for mono or (n, 2) for stereo, with its sample
rate; the quality knob is the target bitrate in kbps. The bytes are a complete file
(Ogg/Opus, MP3) and `nbytes` / `actual_kbps` count all of it; an encoder may also report the
bytes a rate comparison should count (`counted_bytes`: the Opus and MP3 packets, without the
container's pages, headers and tags), which the RD benchmark uses.

An encoder that cannot reach the asked bitrate on a clip raises `Unreachable` (the benchmark
skips that point with a note).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokc.baselines.image import bisect_to_size
from tokc.baselines.registry import Registry

# encode(audio, sample_rate, kbps) returns bytes, an Encoded (bytes + the bytes to count), or
# (bytes, decoded audio); decode(bytes, sample_rate) returns the audio resampled to sample_rate.
EncodeFn = Callable[[np.ndarray, int, float], "bytes | Encoded | tuple[bytes, np.ndarray]"]
DecodeFn = Callable[[bytes, int], np.ndarray]


def _any_kbps(sample_rate: int) -> tuple[float, ...]:
    return tuple(float(b) for b in range(6, 257))


class Unreachable(ValueError):
    """The codec cannot code this audio at the asked bitrate (e.g. below its lowest rate)."""


@dataclass(frozen=True)
class Encoded:
    """An encoder's file and the part of it a rate comparison counts (e.g. the codec's
    packets without the container around them)."""

    data: bytes
    counted_bytes: int


@dataclass(frozen=True)
class AudioCodec:
    name: str
    encode: EncodeFn
    decode: DecodeFn | None
    bitrates: tuple[float, ...]  # default kbps grid for the RD benchmark
    bitrate_choices: Callable[[int], tuple[float, ...]]  # valid kbps, ascending, per sample rate
    settings: str


@dataclass(frozen=True)
class CompressedAudio:
    codec: str
    kbps: float  # the bitrate asked for
    data: bytes
    decoded: np.ndarray  # float32, same shape as the input
    sample_rate: int
    encode_s: float
    decode_s: float | None  # None when the codec's encode also decodes (timed together)
    counted_bytes: int | None = None  # what a rate comparison counts; None: the whole file

    @property
    def nbytes(self) -> int:
        return len(self.data)

    @property
    def seconds(self) -> float:
        return self.decoded.shape[0] / self.sample_rate

    @property
    def actual_kbps(self) -> float:
        """Bitrate of the whole file, container included."""
        return 8.0 * len(self.data) / self.seconds / 1000.0

    @property
    def counted_kbps(self) -> float:
        """Bitrate of the counted bytes (the codec's packets where the encoder reports them,
        else the whole file)."""
        counted = len(self.data) if self.counted_bytes is None else self.counted_bytes
        return 8.0 * counted / self.seconds / 1000.0


_CODECS: Registry[AudioCodec] = Registry("audio")


def register_audio_codec(
    name: str,
    encode: EncodeFn,
    *,
    decode: DecodeFn | None = None,
    bitrates: Sequence[float] = (),
    bitrate_choices: Callable[[int], tuple[float, ...]] = _any_kbps,
    settings: str = "",
    replace: bool = False,
) -> AudioCodec:
    """Add a codec under `name`; refuses to shadow an existing name unless replace=True."""
    return _CODECS.add(name, AudioCodec(
        name, encode, decode, tuple(float(b) for b in bitrates), bitrate_choices, settings
    ), replace)


def audio_codec(name: str) -> AudioCodec:
    return _CODECS.lookup(name)


def audio_codec_names() -> tuple[str, ...]:
    return tuple(_CODECS)


def _as_audio(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if not (audio.ndim == 1 or (audio.ndim == 2 and audio.shape[1] in (1, 2))):
        raise ValueError(f"expected audio of shape (n,) or (n, 1|2), got {audio.shape}")
    if audio.shape[0] == 0:
        raise ValueError("empty audio")
    return audio


def _fit_length(decoded: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Trim or zero-pad the decoded signal to the input's length and shape."""
    decoded = np.asarray(decoded, dtype=np.float32).reshape(decoded.shape[0], -1)
    n = like.shape[0]
    decoded = decoded[:n]
    if decoded.shape[0] < n:
        decoded = np.pad(decoded, ((0, n - decoded.shape[0]), (0, 0)))
    return decoded.reshape(like.shape)


def compress_audio(codec: str, audio: np.ndarray, sample_rate: int, kbps: float) -> CompressedAudio:
    """Encode at `kbps` with the named codec and decode back to `sample_rate`."""
    c = audio_codec(codec)
    audio = _as_audio(audio)
    t0 = time.perf_counter()
    out: Any = c.encode(audio, sample_rate, kbps)
    encode_s = time.perf_counter() - t0
    decode_s = None
    counted = None
    if isinstance(out, Encoded):
        out, counted = out.data, out.counted_bytes
    if isinstance(out, tuple):
        data, decoded = out
    else:
        if c.decode is None:
            raise TypeError(f"codec {codec!r} returned only bytes and has no decode function")
        data = out
        t0 = time.perf_counter()
        decoded = c.decode(data, sample_rate)
        decode_s = time.perf_counter() - t0
    return CompressedAudio(
        codec,
        float(kbps),
        bytes(data),
        _fit_length(decoded, audio),
        sample_rate,
        encode_s,
        decode_s,
        counted,
    )


def compress_audio_to_size(
    codec: str, audio: np.ndarray, sample_rate: int, max_bytes: int
) -> CompressedAudio:
    """The highest bitrate (over the codec's valid bitrates) whose file fits in max_bytes."""
    c = audio_codec(codec)
    audio = _as_audio(audio)
    return bisect_to_size(
        c.bitrate_choices(sample_rate),
        lambda b: compress_audio(codec, audio, sample_rate, b),
        max_bytes,
    )


# --- PyAV (FFmpeg) helpers -----------------------------------------------------------------


def _layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


def _av_encode(
    audio: np.ndarray,
    sample_rate: int,
    codec: str,
    container_format: str,
    kbps: float,
    codec_rate: int,
    options: dict[str, str] | None = None,
) -> Encoded:
    """The container file, and the bytes of the codec's packets (what the rate counts)."""
    import av

    planar = np.ascontiguousarray(audio.reshape(audio.shape[0], -1).T)  # (channels, n)
    layout = _layout(planar.shape[0])
    buf = io.BytesIO()
    packet_bytes = 0
    with av.open(buf, "w", format=container_format) as container:
        # options reach the encoder when it opens (avcodec_open2): a bad one raises
        stream = container.add_stream(codec, rate=codec_rate, layout=layout, options=options or {})
        stream.bit_rate = int(round(kbps * 1000))
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        resampler = av.AudioResampler(
            format=stream.codec_context.format, layout=layout, rate=codec_rate
        )
        for chunk in [*resampler.resample(frame), *resampler.resample(None), None]:
            for packet in stream.encode(chunk):
                packet_bytes += packet.size
                container.mux(packet)
    return Encoded(buf.getvalue(), packet_bytes)


def _av_decode(data: bytes, sample_rate: int) -> np.ndarray:
    import av

    chunks = []
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        layout = _layout(stream.codec_context.channels)
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
        for frame in container.decode(stream):
            chunks += [f.to_ndarray() for f in resampler.resample(frame)]
        chunks += [f.to_ndarray() for f in resampler.resample(None)]
    decoded = np.concatenate(chunks, axis=1).T  # (n, channels)
    return decoded[:, 0] if decoded.shape[1] == 1 else decoded


# --- Opus ------------------------------------------------------------------------------------


OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the input rates libopus takes


def _opus_encode(audio: np.ndarray, sample_rate: int, kbps: float) -> Encoded:
    return _av_encode(audio, sample_rate, "libopus", "ogg", kbps, 48000)


def _opus_voip_encode(audio: np.ndarray, sample_rate: int, kbps: float) -> Encoded:
    rate = sample_rate if sample_rate in OPUS_RATES else 48000
    return _av_encode(audio, sample_rate, "libopus", "ogg", kbps, rate, {"application": "voip"})


# --- MP3 (LAME, CBR) -------------------------------------------------------------------------

_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_MP3_KBPS_MPEG1 = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MP3_KBPS_MPEG2 = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_MP3_KBPS_MPEG25 = (8, 16, 24, 32, 40, 48, 56, 64)


def _mp3_rate(sample_rate: int) -> int:
    return sample_rate if sample_rate in _MP3_RATES else 48000


def _mp3_kbps_choices(sample_rate: int) -> tuple[float, ...]:
    rate = _mp3_rate(sample_rate)
    if rate >= 32000:
        table = _MP3_KBPS_MPEG1
    elif rate >= 16000:
        table = _MP3_KBPS_MPEG2
    else:
        table = _MP3_KBPS_MPEG25
    return tuple(float(b) for b in table)


def _mp3_encode(audio: np.ndarray, sample_rate: int, kbps: float) -> Encoded:
    return _av_encode(audio, sample_rate, "libmp3lame", "mp3", kbps, _mp3_rate(sample_rate))


register_audio_codec(
    "opus",
    _opus_encode,
    decode=_av_decode,
    bitrates=(6, 8, 12, 16, 24, 32, 48, 64),
    settings="libopus via PyAV, application audio, VBR, 20 ms frames, Ogg, encoded at 48 kHz; "
    "rate = the Opus packets' bytes (not the Ogg pages or headers)",
)
register_audio_codec(
    "opus-voip",
    _opus_voip_encode,
    decode=_av_decode,
    bitrates=(6, 8, 10, 12, 16, 24),
    settings="libopus via PyAV, application voip, VBR, 20 ms frames, Ogg, encoded at the input "
    "rate (48 kHz if Opus does not take it); rate = the Opus packets' bytes (not the Ogg pages "
    "or headers)",
)
register_audio_codec(
    "mp3",
    _mp3_encode,
    decode=_av_decode,
    bitrates=(8, 16, 24, 32, 48, 64, 96, 128),
    bitrate_choices=_mp3_kbps_choices,
    settings="LAME via PyAV, CBR, at the input rate when MP3 allows it (else 48 kHz); rate = "
    "the MP3 frames' bytes (not the ID3 tag or Xing header)",
)
