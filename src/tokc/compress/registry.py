"""Codecs by the codec id that the .tokc header stores.

    register("tokc-image-v1", "tokc.compress.image:open_codec", modality="image", ...)
    codec = get("one-d-piece-v1", checkpoint="ckpt/")      # factory keyword options
    codec = for_header(fmt.read_header(data), backend="auto")

A factory is a callable, or "module:attr" imported on first use (so listing the codecs imports
none of them). It takes keyword options only (`backend`, and what the codec needs to load:
`weights`, `checkpoint`); `load_options` names those it takes, `rate_options` the keywords of
its compress that set the rate. Adding a codec is one module and one `register` call below; the
CLI and `tokc.decompress` find it from here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from tokc import format as fmt
from tokc.compress.base import Codec, CodecUsageError, UnknownCodecError


@dataclass(frozen=True)
class Entry:
    codec_id: str
    modality: str
    factory: str | Callable[..., Codec]
    aliases: tuple[str, ...] = ()  # other names -m accepts
    load_options: tuple[str, ...] = ("backend",)
    needs: tuple[str, ...] = ()  # the load options without a default (e.g. checkpoint)
    rate_options: tuple[str, ...] = ()
    default: bool = False  # what `tokc compress` picks for an input of its modality without -m
    suffixes: tuple[str, ...] = ()  # input files of this modality (the default codec's)

    @property
    def name(self) -> str:
        """What -m users type: the first alias, else the codec id."""
        return self.aliases[0] if self.aliases else self.codec_id

    def open(self, **options) -> Codec:
        """The codec, from the factory with the options it takes (None values left out)."""
        given = {k: v for k, v in options.items() if v is not None}
        extra = sorted(set(given) - set(self.load_options))
        if extra:
            raise CodecUsageError(f"{self.codec_id} takes no {', '.join(extra)} option")
        factory = self.factory
        if isinstance(factory, str):
            module, _, attr = factory.partition(":")
            factory = getattr(importlib.import_module(module), attr)
        return factory(**given)


_entries: dict[str, Entry] = {}


def register(codec_id: str, factory: str | Callable[..., Codec], *, modality: str,
             **fields) -> Entry:
    """Register a codec under its header id (fields: see Entry). A second registration of an
    id replaces the first."""
    entry = Entry(codec_id, modality, factory, **fields)
    _entries[codec_id] = entry
    return entry


def entries() -> tuple[Entry, ...]:
    return tuple(_entries.values())


def entry(name: str) -> Entry:
    """The entry of a codec id or alias."""
    for e in _entries.values():
        if name == e.codec_id or name in e.aliases:
            return e
    known = ", ".join(_entries)
    raise UnknownCodecError(f"no codec {name!r} is registered in this tokc (known: {known})")


def get(codec_id: str, **options) -> Codec:
    """The codec registered under an id (or alias), opened with keyword options."""
    return entry(codec_id).open(**options)


def for_header(header: fmt.Header, **options) -> Codec:
    """The codec that decodes a file with this header."""
    return entry_for(header).open(**options)


def entry_for(header: fmt.Header) -> Entry:
    """The entry of the codec that decodes a file with this header."""
    try:
        e = entry(header.codec)
    except UnknownCodecError:
        raise UnknownCodecError(f"this file was made by codec {header.codec!r}, which this tokc "
                                f"does not have (it has {', '.join(_entries)})") from None
    if e.modality != header.modality:
        raise fmt.CorruptError(f"a {header.modality} file of codec {header.codec}, which codes "
                               f"{e.modality}")
    return e


def default_for(modality: str) -> Entry:
    for e in _entries.values():
        if e.default and e.modality == modality:
            return e
    raise UnknownCodecError(f"no {modality} codec is registered in this tokc")


# Each modality's I/O for the CLI: a module with read(raw, name) -> input, write(decoded, name)
# -> bytes, measure(original, decoded) -> float, summary(result), describe(decoded), SUFFIX and
# MEASURE (JSON key, name, unit); optionally write_stream(blocks, header, fileobj, name) for
# codecs with decompress_stream, and (images) metadata: keeps_metadata(codec), metadata_of(file)
# for compress(metadata=), stored_metadata(data) for write(decoded, name, metadata).
MEDIA = {"image": "tokc.compress.pixels", "audio": "tokc.compress.sound"}


def media(modality: str):
    if modality not in MEDIA:
        raise UnknownCodecError(f"this tokc reads and writes no {modality} files")
    return importlib.import_module(MEDIA[modality])


def modality_of(path: str) -> str:
    """The modality of an input file by its suffix (image when no codec claims the suffix)."""
    suffix = path[path.rfind("."):].lower() if "." in path else ""
    for e in _entries.values():
        if suffix in e.suffixes:
            return e.modality
    return "image"


# --- the codecs of this install: one line each ---------------------------------------------------
register("tokc-image-v1", "tokc.compress.image:open_codec", modality="image",
         load_options=("backend", "weights", "threads"),
         rate_options=("quality", "size", "psnr", "effort", "tune"), default=True)
register("one-d-piece-v1", "tokc.compress.tokens:open_codec", modality="image",
         aliases=("one-d-piece",), load_options=("backend", "checkpoint"), needs=("checkpoint",),
         rate_options=("tokens",))
# compress(path to .wav/.flac/.ogg/.mp3, a Sound, or an array with sample_rate=) ->
# EncodeResult(sample_rate=, num_samples=); decompress -> Sound(samples (n, channels), rate)
register("tokc-audio-v1", "tokc.compress.audio:open_codec", modality="audio", default=True,
         load_options=("backend", "weights"), rate_options=("quality", "kbps", "size", "postfilter"),
         suffixes=(".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif"))
register("wavtokenizer-v1", "tokc.compress.wavtokens:open_codec", modality="audio",
         aliases=("wavtokenizer",), load_options=("backend", "checkpoint"), needs=("checkpoint",),
         rate_options=())
