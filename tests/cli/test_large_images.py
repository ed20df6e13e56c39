"""Bounded memory at any image size (issue 16, item 3): `tokc compress` and `tokc decompress`
of a 24 MP and a 144 MP photo, each in a process of its own, peak RSS under 1.5 GiB and
2.5 GiB (measured: 1.04 / 1.15 and 2.22 / 2.14 GiB). Slow: 12 min on two cores beside a
training run (`make test-slow`)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

KODAK = Path(__file__).resolve().parents[2].parent / "shared/data/images/kodak"
GIB = 1 << 30
# one child process, its peak resident set (ru_maxrss, KiB on Linux) printed last
PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); sys.exit(r.returncode)")

TOKC = "import sys; from tokc.cli import main; sys.argv[0] = 'tokc'; main()"


def _peak_bytes(*args: str) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-c", TOKC, *args],
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def _photo(path, height: int, width: int) -> np.ndarray:
    """kodim23 mirrored and repeated to the size: a photo's statistics at any size."""
    from PIL import Image

    src = KODAK / "kodim23.png"
    if not src.exists():
        pytest.skip(f"{src} missing (../shared/data)")
    a = np.asarray(Image.open(src).convert("RGB"))
    a = np.concatenate([a, a[::-1]], 0)
    a = np.concatenate([a, a[:, ::-1]], 1)
    big = np.tile(a, (-(-height // a.shape[0]), -(-width // a.shape[1]), 1))[:height, :width]
    Image.fromarray(big).save(path)
    return big


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # reading 144 MP back
@pytest.mark.parametrize("height, width, limit", [(4000, 6000, 1.5 * GIB), (12000, 12000, 2.5 * GIB)],
                         ids=["24MP", "144MP"])
def test_memory_is_bounded(tmp_path, height, width, limit):
    from PIL import Image

    src, packed, out = tmp_path / "in.ppm", tmp_path / "in.tokc", tmp_path / "out.ppm"
    big = _photo(src, height, width)
    enc = _peak_bytes("compress", str(src), "-o", str(packed), "-q", "75", "--quiet")
    dec = _peak_bytes("decompress", str(packed), "-o", str(out), "--quiet")
    print(f"{width}x{height}: compress peak {enc / GIB:.2f} GiB, decompress peak {dec / GIB:.2f} GiB, "
          f"{packed.stat().st_size} bytes")
    assert enc < limit and dec < limit
    with Image.open(out) as im:
        got = np.asarray(im)
    assert got.shape == big.shape
    # a photo's quality, and no seams between the 1024-px tiles: row by row (the test's memory)
    sq = np.array([np.mean((got[i].astype(np.float64) - big[i]) ** 2) for i in range(height)])
    seam = np.zeros(height, bool)
    seam[1023::1024] = seam[1024::1024] = True
    assert sq[seam].mean() < 1.3 * sq[~seam].mean()
    assert 10 * np.log10(255**2 / sq.mean()) > 30
