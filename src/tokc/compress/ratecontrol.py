"""Rate control: find the integer rate level (thousandths) that meets a target.

Both searches assume monotonicity in the level (larger level: more bytes, higher PSNR) and
bisect on integers, so they take about log2(levels*1000) ~ 13 probes."""

from __future__ import annotations

from collections.abc import Callable


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
