"""Bjøntegaard delta rate and delta quality between two rate-distortion curves.

method="cubic" is the original VCEG-M33 recipe: fit log(rate) as a cubic polynomial of
quality for each curve (least squares, so it needs >= 4 points), integrate both over the
quality interval the curves share, and turn the mean log-rate gap into a percentage.
method="pchip" replaces the fit by piecewise-cubic Hermite interpolation (the variant of
JCTVC/JVET common test conditions), which never overshoots between points and follows a
curve with a jump (Opus's narrowband -> wideband switch); it needs only 2 points per curve, so
it can compare over a few points of a curve (e.g. Opus's wideband ones).

A negative BD-rate means the test curve needs fewer bits than the anchor for the same
quality. Quality must grow with rate; pass -distance for a lower-is-better measure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_MIN_POINTS = {"cubic": 4, "pchip": 2}


def _curve(
    rates: Sequence[float],
    quality: Sequence[float],
    method: str = "cubic",
    min_points: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    rates = np.asarray(rates, dtype=np.float64)
    quality = np.asarray(quality, dtype=np.float64)
    if rates.shape != quality.shape or rates.ndim != 1:
        raise ValueError("rates and quality must be 1-D sequences of equal length")
    keep = np.isfinite(rates) & np.isfinite(quality) & (rates > 0)
    rates, quality = rates[keep], quality[keep]
    need = max(min_points or 0, _MIN_POINTS.get(method, 4))
    if rates.size < need:
        raise ValueError(
            f"need at least {need} finite points with rate > 0 ({method}), got {rates.size}"
        )
    order = np.argsort(quality)
    return rates[order], quality[order]


def _mean_over(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Mean of the curve y(x) over [lo, hi], x sorted ascending."""
    if method == "cubic":
        integral = np.polyint(np.polyfit(x, y, 3))
        return float((np.polyval(integral, hi) - np.polyval(integral, lo)) / (hi - lo))
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        x, first = np.unique(x, return_index=True)  # drop repeated x values
        if x.size < 2:
            raise ValueError("pchip needs at least 2 distinct points")
        return float(PchipInterpolator(x, y[first]).integrate(lo, hi) / (hi - lo))
    raise ValueError(f"unknown BD method {method!r}; use 'cubic' or 'pchip'")


def _overlap(a: np.ndarray, b: np.ndarray, what: str) -> tuple[float, float]:
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    if not hi > lo:
        raise ValueError(f"the two curves do not overlap in {what}")
    return float(lo), float(hi)


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
    method: str = "cubic",
    min_points: int | None = None,
) -> float:
    """Average rate difference of test vs anchor at equal quality, in percent. Each curve needs
    min_points finite points (at least the method's own minimum: cubic 4, pchip 2)."""
    ra, qa = _curve(anchor_rates, anchor_quality, method, min_points)
    rt, qt = _curve(test_rates, test_quality, method, min_points)
    lo, hi = _overlap(qa, qt, "quality")
    gap = _mean_over(qt, np.log(rt), lo, hi, method) - _mean_over(qa, np.log(ra), lo, hi, method)
    return float((np.exp(gap) - 1.0) * 100.0)


def bd_quality(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
    method: str = "cubic",
) -> float:
    """Average quality difference of test vs anchor at equal rate (BD-PSNR for PSNR)."""
    ra, qa = _curve(anchor_rates, anchor_quality, method)
    rt, qt = _curve(test_rates, test_quality, method)
    la, lt = np.log(ra), np.log(rt)
    ia, it = np.argsort(la), np.argsort(lt)
    lo, hi = _overlap(la, lt, "rate")
    return _mean_over(lt[it], qt[it], lo, hi, method) - _mean_over(la[ia], qa[ia], lo, hi, method)
