"""GPSToken's initial layout (the image-dependent partition that runs before the encoder) in
numpy only: the torch model (:mod:`tokc.models.gpstoken`) and the exported runtime
(:mod:`tokc.runtimes.exported`, no torch) call this same code, so both start from the same boxes.

The grey image is split greedily into ``M`` axis-aligned boxes of balanced "complexity" =
H(edge histogram)^w·area; each box gives an initial Gaussian σx = Δx/W·2/3, σy = Δy/H·2/3,
ρ = 0, centre = box centre (all in [−1, 1] align-corners coordinates) and its RoI. The official
code uses OpenCV's ``resize`` (bilinear) and ``Sobel`` (3×3, replicated border); both are
written out here.
"""

from __future__ import annotations

import numpy as np

__all__ = ["adaptive_partition", "complexity", "grey_of_array", "resize_bilinear"]

_SOBEL = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source rows (low, high) and the weight of high for each output row: half-pixel centres,
    clamped at the first row, no antialiasing (cv2 INTER_LINEAR, torch bilinear without
    align_corners)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.maximum(src, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, src - low


def resize_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W) -> (size, size) float64, bilinear (see :func:`_axis`)."""
    img = np.asarray(img, dtype=np.float64)
    ly, hy, fy = _axis(img.shape[0], size)
    lx, hx, fx = _axis(img.shape[1], size)
    rows = img[ly] * (1.0 - fy)[:, None] + img[hy] * fy[:, None]
    return rows[:, lx] * (1.0 - fx)[None, :] + rows[:, hx] * fx[None, :]


def _sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.pad(img, 1, mode="edge")
    h, w = img.shape
    gx = np.zeros_like(img)
    gy = np.zeros_like(img)
    for dy in range(3):
        for dx in range(3):
            win = p[dy : dy + h, dx : dx + w]
            gx += _SOBEL[dy, dx] * win
            gy += _SOBEL[dx, dy] * win
    return gx, gy


def complexity(grey: np.ndarray, weight: float) -> float:
    """entropy(histogram of Sobel magnitudes on a 64×64 resize)^weight × area (grey in [−1, 1])."""
    h, w = grey.shape
    small = resize_bilinear((grey + 1.0) / 2.0, 64)
    gx, gy = _sobel(small)
    hist, _ = np.histogram(np.sqrt(gx * gx + gy * gy), bins=512, range=(-5.5, 5.5))
    p = hist / (hist.sum() + 1e-5)
    entropy = -np.sum(p * np.log2(p + 1e-10))
    return float(entropy**weight * h * w)



def adaptive_partition(grey: np.ndarray, num: int, weight: float = 2.5, min_size: int = 8
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Entropy-balanced split of a (H, W) grey image in [−1, 1] into ``num`` boxes.

    Returns (init (num, 5) float32 as [σx, σy, ρ, x, y], regions (num, 4) float32 as
    [x0, y0, x1, y1]), all in [−1, 1] align-corners coordinates. Repeatedly takes the most
    complex box that is still splittable and halves it across its longer side (for a square box,
    across the side whose better half is less complex).
    """
    h, w = grey.shape
    # candidate: (complexity, y0, y1, x0, x1) with inclusive pixel ranges
    boxes = [(complexity(grey, weight), 0, h - 1, 0, w - 1)]
    big = 1_000_000.0
    while len(boxes) < num:
        boxes.sort(key=lambda b: b[0], reverse=True)  # stable, as the official
        pick = next((i for i, b in enumerate(boxes)
                     if b[2] - b[1] > min_size or b[4] - b[3] > min_size), None)
        if pick is None:
            raise ValueError(f"cannot split a {h}x{w} image into {num} boxes of side > {min_size}")
        _, y0, y1, x0, x1 = boxes.pop(pick)
        bh, bw = y1 - y0 + 1, x1 - x0 + 1
        halves_x = halves_y = None
        if bw > min_size and bw >= bh:
            m = x0 + bw // 2
            halves_x = [(complexity(grey[y0 : y1 + 1, x0:m], weight), y0, y1, x0, m - 1),
                        (complexity(grey[y0 : y1 + 1, m : x1 + 1], weight), y0, y1, m, x1)]
        if bh > min_size and bh >= bw:
            m = y0 + bh // 2
            halves_y = [(complexity(grey[y0:m, x0 : x1 + 1], weight), y0, m - 1, x0, x1),
                        (complexity(grey[m : y1 + 1, x0 : x1 + 1], weight), m, y1, x0, x1)]
        best_x = min(b[0] for b in halves_x) if halves_x else big
        best_y = min(b[0] for b in halves_y) if halves_y else big
        if bw > bh or (bw == bh and best_x < best_y):
            chosen = halves_x
        else:
            chosen = halves_y
        if chosen is None:
            raise ValueError(f"box {bh}x{bw} cannot be split (min_size {min_size})")
        boxes.extend(chosen)
    init = np.zeros((len(boxes), 5), np.float64)
    regions = np.zeros((len(boxes), 4), np.float64)
    for i, (_, y0, y1, x0, x1) in enumerate(boxes):
        init[i] = ((x1 - x0) / w * 2.0 / 3.0, (y1 - y0) / h * 2.0 / 3.0, 0.0,
                   ((x1 + x0) / 2.0 / (w - 1) - 0.5) * 2.0, ((y1 + y0) / 2.0 / (h - 1) - 0.5) * 2.0)
        regions[i] = ((x0 / (w - 1) - 0.5) * 2, (y0 / (h - 1) - 0.5) * 2,
                      (x1 / (w - 1) - 0.5) * 2, (y1 / (h - 1) - 0.5) * 2)
    return init.astype(np.float32), regions.astype(np.float32)


def grey_of_array(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) RGB in [−1, 1] -> (H, W) float32 luma (BT.601 weights, as the official)."""
    r, g, b = np.asarray(rgb, dtype=np.float32)
    return (0.299 * r + 0.587 * g + 0.114 * b).astype(np.float32)
