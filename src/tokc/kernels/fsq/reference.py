"""FSQ spec in plain torch (FlexTok / Mentzer et al.): tanh bound, round, mixed-radix index.

For levels L_i: half_l = (L_i − 1)(1 + eps)/2, offset = 0.5 for even L_i else 0,
shift = atanh(offset / half_l); bounded = tanh(z + shift)·half_l − offset;
q = round_half_even(bounded) ∈ [−⌊L_i/2⌋, ⌈L_i/2⌉ − 1]; codes = q / ⌊L_i/2⌋;
digit = q + ⌊L_i/2⌋ ∈ [0, L_i); index = Σ digit_i · Π_{j<i} L_j (first dimension least significant).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

EPS = 1e-3


def constants(levels: Sequence[int], device=None) -> dict[str, torch.Tensor]:
    """Per-dimension constants (fp32, basis int64), shared by the reference and the launcher."""
    lv = [int(v) for v in levels]
    if not lv or min(lv) < 2:
        raise ValueError(f"levels must be integers >= 2, got {list(levels)}")
    L = torch.tensor(lv, dtype=torch.float64)
    half_l = (L - 1) * (1 + EPS) / 2
    offset = torch.where(torch.tensor([v % 2 == 0 for v in lv]), 0.5, 0.0).double()
    shift = torch.atanh(offset / half_l)
    basis = torch.tensor([math.prod(lv[:i]) for i in range(len(lv))], dtype=torch.int64)
    f32 = dict(dtype=torch.float32, device=device)
    return {
        "half_l": half_l.to(**f32),
        "offset": offset.to(**f32),
        "shift": shift.to(**f32),
        "half_width": torch.tensor([v // 2 for v in lv], **f32),
        "levels": torch.tensor(lv, dtype=torch.int64, device=device),
        "basis": basis.to(device),
    }


def _check(z: torch.Tensor, levels: Sequence[int]) -> None:
    if z.shape[-1] != len(levels):
        raise ValueError(f"z's last dim {z.shape[-1]} != len(levels) {len(levels)}")


def fsq_quantize(z: torch.Tensor, levels: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """codes (z's shape and dtype, values in [−1, 1]) and indices (z.shape[:-1], int64)."""
    _check(z, levels)
    k = constants(levels, z.device)
    bounded = torch.tanh(z.float() + k["shift"]) * k["half_l"] - k["offset"]
    q = torch.round(bounded)  # round half to even
    codes = (q / k["half_width"]).to(z.dtype)
    digits = (q + k["half_width"]).to(torch.int64)
    return codes, (digits * k["basis"]).sum(-1)


def codes_to_indices(codes: torch.Tensor, levels: Sequence[int]) -> torch.Tensor:
    _check(codes, levels)
    k = constants(levels, codes.device)
    digits = torch.round(codes.float() * k["half_width"] + k["half_width"]).to(torch.int64)
    return (digits * k["basis"]).sum(-1)


def indices_to_codes(indices: torch.Tensor, levels: Sequence[int], dtype=torch.float32) -> torch.Tensor:
    k = constants(levels, indices.device)
    digits = torch.div(indices.to(torch.int64)[..., None], k["basis"], rounding_mode="floor") % k["levels"]
    return ((digits.float() - k["half_width"]) / k["half_width"]).to(dtype)
