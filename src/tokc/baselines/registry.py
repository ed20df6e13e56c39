"""A codec registry by name, shared by the image and audio baselines."""

from __future__ import annotations

from typing import Generic, TypeVar

C = TypeVar("C")


class Registry(dict[str, C], Generic[C]):
    """name -> codec; `kind` ("image", "audio") only words the error messages."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def add(self, name: str, codec: C, replace: bool = False) -> C:
        """Refuses to shadow an existing name unless replace=True."""
        if name in self and not replace:
            raise ValueError(f"{self.kind} codec {name!r} is already registered (pass replace=True)")
        self[name] = codec
        return codec

    def lookup(self, name: str) -> C:
        try:
            return self[name]
        except KeyError:
            known = ", ".join(sorted(self))
            raise ValueError(f"unknown {self.kind} codec {name!r} (known: {known})") from None
