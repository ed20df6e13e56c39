"""Test helpers shared by the kernel tests: the per-dtype tolerance table and comparisons.

Kernels compute in fp32 and round once to the output dtype, so two correct implementations
differ by summation order in fp32 plus at most about one ulp of the output dtype.
Integer outputs (indices) must match exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float  # relative to max(1, max |expected|): sums of many terms scale with their size


TOLERANCES: dict[torch.dtype, Tolerance] = {
    torch.float32: Tolerance(rtol=1e-5, atol=1e-5),
    torch.float16: Tolerance(rtol=2e-3, atol=2e-3),
    torch.bfloat16: Tolerance(rtol=1.6e-2, atol=1.6e-2),
}

# Ops that accumulate over many terms in a different order (reductions, backward passes).
OP_TOLERANCES: dict[tuple[str, torch.dtype], Tolerance] = {
    ("splat_grad", torch.float32): Tolerance(rtol=1e-4, atol=1e-5),
    ("splat_grad", torch.float16): Tolerance(rtol=4e-3, atol=4e-3),
    ("splat_grad", torch.bfloat16): Tolerance(rtol=3.2e-2, atol=3.2e-2),
}


def tolerance(dtype: torch.dtype, op: str | None = None) -> Tolerance:
    if op is not None and (op, dtype) in OP_TOLERANCES:
        return OP_TOLERANCES[(op, dtype)]
    if dtype not in TOLERANCES:
        raise KeyError(f"no tolerance for {dtype}; integer outputs must use assert_exact")
    return TOLERANCES[dtype]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, op: str | None = None,
                 dtype: torch.dtype | None = None, msg: str = "") -> None:
    """Floats within the table's tolerance for ``dtype`` (default: expected's dtype)."""
    assert actual.shape == expected.shape, f"{msg} shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{msg} dtype {actual.dtype} != {expected.dtype}"
    tol = tolerance(dtype or expected.dtype, op)
    scale = max(1.0, expected.detach().float().abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual.detach().float().cpu(), expected.detach().float().cpu(),
                               rtol=tol.rtol, atol=tol.atol * scale, msg=lambda m: f"{msg} {m}")


def assert_exact(actual: torch.Tensor, expected: torch.Tensor, msg: str = "") -> None:
    """Integer (or exactly reproducible) outputs: same shape, dtype and every element."""
    assert actual.shape == expected.shape, f"{msg} shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{msg} dtype {actual.dtype} != {expected.dtype}"
    bad = (actual.cpu() != expected.cpu())
    if bad.any():
        first = bad.reshape(-1).nonzero()[0].item()
        raise AssertionError(f"{msg} {int(bad.sum())}/{bad.numel()} elements differ; first at flat "
                             f"index {first}: {actual.reshape(-1)[first].item()} != "
                             f"{expected.reshape(-1)[first].item()}")
