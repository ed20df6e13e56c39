"""Checkpoint headers read as data: tensor names, dtypes and shapes, and safetensors metadata.

Nothing here loads tensor data or imports torch, and metadata strings are parsed only into
plain literals (JSON, or Python literals through :func:`ast.literal_eval`) — never
evaluated, never used to import or instantiate anything. FlexTok stores its Hydra config in the
metadata (``_target_`` class paths that its own loader instantiates); here those stay strings.
"""

from __future__ import annotations

import ast
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import CheckpointError

__all__ = ["TensorInfo", "SafetensorsHeader", "read_safetensors_header", "parse_metadata"]

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own limit
MAX_LITERAL_CHARS = 1_000_000


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]

    @property
    def num_parameters(self) -> int:
        return sum(t.numel for t in self.tensors.values())


def read_safetensors_header(path: str | Path) -> SafetensorsHeader:
    """The header of a .safetensors file: 8-byte little-endian length, then a JSON object."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: not a safetensors file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, MAX_HEADER_BYTES):
                raise CheckpointError(f"{path}: not a safetensors file (header length {n} "
                                      f"does not fit a {size}-byte file)")
            raw = f.read(n)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is not a JSON object)")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: safetensors __metadata__ is not an object")
    tensors = {}
    for name, info in header.items():
        try:
            shape = tuple(int(s) for s in info["shape"])
            tensors[name] = TensorInfo(str(info["dtype"]), shape)
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"{path}: malformed safetensors entry {name!r}") from None
    return SafetensorsHeader(tensors, {str(k): v for k, v in meta.items()})


def _literal(text: str):
    """JSON, else a Python literal (the str() of a dict, as FlexTok writes), else the string."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        pass
    if len(text) > MAX_LITERAL_CHARS:
        return text
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_metadata(metadata: dict) -> dict:
    """Safetensors metadata (all values strings) -> plain data: each value parsed with
    :func:`_literal`; nothing is imported, called or instantiated."""
    return {k: _literal(v) if isinstance(v, str) else v for k, v in metadata.items()}
