"""The errors of tokc's codecs and backends, at the bottom of the codec stack so that a backend
can report a codec-level failure without importing a codec.

- `CodecError`: input, options or setup a codec cannot take; one readable line, never a
  traceback. Every codec's errors derive from it (`tokc.compress.base` re-exports the tree).
- `CodecUsageError`: the caller's options are wrong (the CLI exits 2 on it, 1 on the rest).
- `UnknownCodecError`: no codec is registered under a file's codec id.
- `RuntimeUnavailable`: a backend, device or precision is not available here.
- `RuntimeInputError`: inputs that do not match a model part.
"""

from __future__ import annotations


class CodecError(ValueError):
    """Input the codec cannot take (a clear message, never a traceback)."""


class CodecUsageError(CodecError):
    """Options that do not go together, or that this codec does not take."""


class UnknownCodecError(CodecError):
    """No codec is registered under this codec id."""


class RuntimeUnavailable(RuntimeError):
    """The backend (or the device, or the precision) is not available here; the message says why."""


class RuntimeInputError(ValueError):
    """Inputs that do not match the part: wrong names, dtype or rank."""
