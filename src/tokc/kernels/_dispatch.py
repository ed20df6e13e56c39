"""Choosing between a kernel's Triton implementation and its torch reference.

``impl=None`` reads ``TOKC_KERNEL_IMPL`` (``triton`` | ``torch`` | ``auto``/unset).
An explicit choice (argument or environment) that cannot be honoured raises; the automatic
choice takes Triton for CUDA tensors when Triton imports, and the reference otherwise.
Under ``TRITON_INTERPRET=1`` an explicit ``triton`` also runs on CPU tensors (the tests).
While tracing or exporting, the automatic choice is the reference: ONNX never sees Triton.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os

import torch

IMPLS = ("triton", "torch")


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:  # ImportError, or a broken install
        return False
    return True


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _tracing() -> bool:
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    onnx_exporting = getattr(torch.onnx, "is_in_onnx_export", None)
    if onnx_exporting is not None and onnx_exporting():
        return True
    compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(compiling is not None and compiling())


def _why_not_triton(tensors) -> str | None:
    if not triton_available():
        return "triton is not installed (pip install 'tokc-codec[gpu]')"
    if _tracing():
        return "tracing/exporting: export uses the torch reference"
    if not interpreting() and not all(t.is_cuda for t in tensors):
        return "Triton needs CUDA tensors (or TRITON_INTERPRET=1 for the CPU interpreter)"
    return None


def choose(impl: str | None, *tensors: torch.Tensor) -> str:
    """Return ``"triton"`` or ``"torch"`` for these input tensors."""
    explicit = impl if impl is not None else os.environ.get("TOKC_KERNEL_IMPL", "").strip().lower()
    if explicit in ("", "auto"):
        explicit = None
    if explicit is not None and explicit not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS} or None, got {explicit!r}")
    if explicit == "torch":
        return "torch"
    if _tracing() and impl is None:
        return "torch"  # a TOKC_KERNEL_IMPL preference never reaches an exported graph
    tensors = [t for t in tensors if isinstance(t, torch.Tensor)]
    reason = _why_not_triton(tensors)
    if explicit == "triton":
        if reason is not None:
            raise RuntimeError(f"impl='triton' requested but unavailable: {reason}")
        return "triton"
    # automatic: Triton only for CUDA tensors
    if reason is None and tensors and all(t.is_cuda for t in tensors):
        return "triton"
    return "torch"


def triton_module(op: str):
    """Import ``tokc.kernels.<op>.triton`` (only called once Triton was chosen)."""
    if interpreting():
        _interpreter_numpy2_compat()
    return importlib.import_module(f"tokc.kernels.{op}.triton")


@functools.cache
def _interpreter_numpy2_compat() -> None:
    """Triton 3.5/3.6's interpreter turns scalar kernel arguments into 1-element arrays and
    ``int()``s them for ``range(...)`` bounds, which numpy >= 2.3 refuses. Patch that one
    conversion (interpreter only; compiled kernels are untouched)."""
    try:
        from triton.runtime import interpreter
    except Exception:
        return
    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_tokc_compat", False):
        return

    def index(self):
        return int(self.handle.data.reshape(-1)[0])

    def patched(tensor, *scope):  # 3.5: (tensor); 3.6: (tensor, scope) restoring on exit
        original(tensor, *scope)
        if scope:
            scope[0].set_attr(tensor, "__index__", index)
        else:
            tensor.__index__ = index

    patched._tokc_compat = True
    interpreter._patch_lang_tensor = patched


def kernel_dtype(t: torch.Tensor) -> torch.Tensor:
    """Triton's interpreter mishandles bf16: hand it fp32 instead."""
    if t.dtype == torch.bfloat16 and (interpreting() or not t.is_cuda):
        return t.float()
    return t


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def device_guard(t: torch.Tensor):
    """Launch on the tensor's GPU: Triton launches go to the current device, so tensors on
    cuda:1 while cuda:0 is current would be read through the wrong context."""
    if t.is_cuda:
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def check_indices(indices: torch.Tensor, size: int, what: str) -> None:
    """Token indices must lie in [0, size): out of range, a kernel would read outside its
    tables (and negative floor division and modulo differ between Triton and torch). Raises
    IndexError, as torch's indexing does; skipped while tracing (data-dependent)."""
    if _tracing() or indices.numel() == 0:
        return
    if indices.is_floating_point():
        raise TypeError(f"{what} indices must be integers, got {indices.dtype}")
    lo, hi = int(indices.min()), int(indices.max())
    if lo < 0 or hi >= size:
        raise IndexError(f"{what} indices must be in [0, {size}), got values in [{lo}, {hi}]")
