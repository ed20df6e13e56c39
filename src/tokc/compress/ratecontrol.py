"""Rate control: find the integer rate level (thousandths) that meets a target, as functions of
callbacks (level -> bytes, level -> quality), so that any codec with a continuous rate level
uses them: quality <-> level, and `choose_level` for -q / --size / --psnr.

Both searches assume monotonicity in the level (larger level: more bytes, higher PSNR) and
bisect on integers, so they take about log2(levels*1000) ~ 13 probes."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

from tokc.compress.base import CodecError, CodecUsageError


def largest_fitting(size_at: Callable[[int], int], budget: int, bottom: int, top: int) -> int | None:
    """The largest level in bottom..top whose output is at most `budget` bytes, or None."""
    if size_at(bottom) > budget:
        return None
    lo, hi = bottom, top  # invariant: lo fits
    if size_at(hi) <= budget:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if size_at(mid) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


def smallest_reaching(
    quality_at: Callable[[int], float], target: float, bottom: int, top: int, tolerance: int = 10
) -> int | None:
    """The smallest level in bottom..top whose quality reaches `target` (within `tolerance`
    thousandths of a level), or None when even `top` does not."""
    if quality_at(top) < target:
        return None
    lo, hi = bottom, top  # invariant: hi reaches
    if quality_at(lo) >= target:
        return lo
    while hi - lo > tolerance:
        mid = (lo + hi) // 2
        if quality_at(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi


# --- quality <-> level, and the choice of a level from what the caller asked for ---------------

LEVEL_MIN = -4000  # rate levels below the lowest trained one extrapolate its gains
LEVEL_Q0 = -2000  # the level of -q 0


def quality_to_level(quality: float, levels: int, q0: int = LEVEL_Q0) -> int:
    """-q 0..100 -> rate level in thousandths, linear from q0 (q 0) to the highest trained
    level (q 100). Levels below 0 extrapolate the gains of the lowest trained level (coarser
    steps than any trained level) to reach about 0.1 bpp."""
    if not 0 <= quality <= 100:
        raise CodecError(f"quality must be in 0..100, got {quality}")
    top = (levels - 1) * 1000
    return int(round(q0 + quality / 100 * (top - q0)))


def level_to_quality(level_milli: int, levels: int, q0: int = LEVEL_Q0) -> float:
    top = (levels - 1) * 1000
    return (level_milli - q0) / (top - q0) * 100


def choose_level(levels: int, size_at: Callable[[int], int], quality_at: Callable[[int], float],
                 quality: float = 75, size: int | None = None, target: float | None = None,
                 bottom: int = LEVEL_MIN, what: str = "PSNR", unit: str = "dB",
                 q0: int = LEVEL_Q0) -> int:
    """The rate level (thousandths) for what the caller asked: the largest level whose file fits
    in `size` bytes (size_at: level -> bytes), or the smallest whose quality_at (e.g. PSNR)
    reaches `target` (the highest level, with a warning, when none does), or -q `quality`
    (q0: the level of quality 0)."""
    top = (levels - 1) * 1000
    if size is not None:
        level = largest_fitting(size_at, size, bottom, top)
        if level is None:
            raise CodecError(f"no quality fits in {size} bytes (smallest file: {size_at(bottom)} bytes)")
        return level
    if target is not None:
        if not (math.isfinite(target) and target > 0):
            raise CodecUsageError(f"a {what} target must be a positive number of {unit}, got {target}")
        level = smallest_reaching(quality_at, target, bottom, top)
        if level is None:
            warnings.warn(f"{what} {target} {unit} is out of reach; coded at the highest quality")
            return top
        return level
    return quality_to_level(quality, levels, q0)
