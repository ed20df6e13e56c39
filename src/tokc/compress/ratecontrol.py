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


def largest_fitting(size_at: Callable[[int], int], budget: int, bottom: int, top: int,
                    guess: int | None = None, tolerance: int = 1) -> int | None:
    """A level in bottom..top whose output fits in `budget` bytes while the level `tolerance`
    above it does not (top when top fits; with tolerance 1 and bytes growing with the level,
    the largest fitting level), or None when even `bottom` does not fit.

    Bytes grow about exponentially with the level, so the search interpolates on log bytes:
    from `guess` (default: the middle) it steps by secant estimates until a fitting and a
    non-fitting level bracket the budget, then narrows the bracket by interpolation on log
    bytes (ITP: never more probes than bisection's plus one). Bisection from the ends took
    15 probes on the audio codec's sizes, this takes 4 to 8 for the same level (two speech
    clips, 6 to 24 kbps)."""
    sizes: dict[int, int] = {}

    def size(level: int) -> int:
        if level not in sizes:
            sizes[level] = size_at(level)
        return sizes[level]

    target = math.log(budget + 0.5)

    def secant(a: int, b: int) -> float | None:
        """The level where the line through (a, log size) and (b, log size) meets the budget."""
        la, lb = math.log(max(size(a), 1)), math.log(max(size(b), 1))
        return None if la == lb else a + (target - la) * (b - a) / (lb - la)

    g = min(max((bottom + top) // 2 if guess is None else guess, bottom), top)
    lo = hi = None  # lo fits, hi does not
    if size(g) <= budget:
        lo = g
    else:
        hi = g
    step, last = 1000 if guess is None else 400, g
    while lo is None or hi is None:  # bracket the budget
        known = lo if hi is None else hi
        direction = 1 if hi is None else -1
        est = secant(last, known) if last != known else None
        jump = step if est is None else max(step // 4, int(abs(est - known) * 1.2) + 50)
        cand = min(max(known + direction * jump, bottom), top)
        if cand == known:  # at an end: top fits, or bottom does not
            return top if hi is None else None
        last, step = known, step * 2
        if size(cand) <= budget:
            lo = cand
        else:
            hi = cand
    # ITP (Oliveira & Takahashi 2020) on f = log bytes - log budget, f(lo) <= 0 < f(hi):
    # regula falsi, truncated toward the middle (so that it does not creep in from one side
    # where sizes come in steps) and projected into a shrinking interval around it, which
    # bounds the probes by bisection's plus one
    f_lo, f_hi = math.log(max(size(lo), 1)) - target, math.log(size(hi)) - target
    eps = tolerance / 2
    n_max = max(0, math.ceil(math.log2((hi - lo) / (2 * eps)))) + 1
    k1, j = 0.01 / (hi - lo), 0  # truncation: 0.01 fewest probes on synthetic sizes (0.2: +1.4)
    while hi - lo > tolerance:
        half = (lo + hi) / 2
        x_f = (lo * f_hi - hi * f_lo) / (f_hi - f_lo) if f_hi != f_lo else half
        sigma = 1 if half >= x_f else -1
        delta = k1 * (hi - lo) ** 2
        x_t = x_f + sigma * delta if delta <= abs(half - x_f) else half
        r = eps * 2 ** (n_max - j) - (hi - lo) / 2
        x = x_t if abs(x_t - half) <= r else half - sigma * r
        mid = min(max(round(x), lo + 1), hi - 1)
        j += 1
        if size(mid) <= budget:
            lo, f_lo = mid, math.log(max(size(mid), 1)) - target
        else:
            hi, f_hi = mid, math.log(size(mid)) - target
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
                 q0: int = LEVEL_Q0, size_guess: int | None = None) -> int:
    """The rate level (thousandths) for what the caller asked: the largest level whose file fits
    in `size` bytes (size_at: level -> bytes), or the smallest whose quality_at (e.g. PSNR)
    reaches `target` (the highest level, with a warning, when none does), or -q `quality`
    (q0: the level of quality 0). size_guess: a level near the one that fits `size`, where
    the search starts (fewer probes when it is close)."""
    top = (levels - 1) * 1000
    if size is not None:
        level = largest_fitting(size_at, size, bottom, top, size_guess)
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
