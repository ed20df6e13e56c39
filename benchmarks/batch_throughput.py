"""`tokc batch compress` throughput on this machine (issue 18): Kodak and the training images,
1 and 2 workers, on the local process pool and on a local Ray instance, side by side in one
run. Each configuration is a fresh `tokc batch compress LIST -o DIR --workers N [--ray] -f`
process, so its wall time includes the start (interpreter, pool or Ray, model loading once per
worker); the per-item time is the wall time over the items.

    python benchmarks/batch_throughput.py [--quality 75] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "images"
SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
CONFIGS = [("pool", 1), ("pool", 2), ("ray", 1), ("ray", 2)]
TOKC = "import sys; from tokc.cli import main; sys.argv[0] = 'tokc'; main()"


def images() -> list[Path]:
    return sorted(p for p in DATA.rglob("*") if p.suffix.lower() in SUFFIXES)


def run(listing: Path, out: Path, mode: str, workers: int, quality: float) -> dict:
    cmd = [sys.executable, "-c", TOKC, "batch", "compress", str(listing), "-o", str(out), "--workers",
           str(workers), "-q", str(quality), "-f", "--json", "--quiet"] + (["--ray"] if mode == "ray" else [])
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"{mode} x{workers} failed: {res.stderr.strip()[-500:]}")
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    return {"mode": mode, "workers": workers, "wall_s": round(wall, 2), **summary}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality", type=float, default=75)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = ap.parse_args(argv)
    files = images()
    pixels = 0
    from PIL import Image

    for p in files:
        with Image.open(p) as im:
            pixels += im.width * im.height
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "images.txt"
        listing.write_text("".join(f"{p}\n" for p in files))
        for mode, workers in CONFIGS:
            rows.append(run(listing, Path(tmp) / f"{mode}{workers}", mode, workers, args.quality))
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["wall_s"]
    lines = [
        "# `tokc batch compress` throughput",
        "",
        f"{len(files)} images ({pixels / 1e6:.1f} MP: Kodak and the training images of ../shared/data/images), "
        f"tokc-image-v1 at -q {args.quality:g}, {os.cpu_count()} cores. Wall time of the whole command "
        "(start, pool or Ray, model loading once per worker, every item); measured in one run, one "
        "configuration after the other (`python benchmarks/batch_throughput.py`).",
        "",
        "| runner | workers | wall s | items/s | MP/s | speed-up vs pool x1 | failed |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['workers']} | {r['wall_s']:.1f} | {r['items'] / r['wall_s']:.2f} | "
                     f"{pixels / 1e6 / r['wall_s']:.2f} | {base / r['wall_s']:.2f} | {r['failed']} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batch_throughput.md").write_text("\n".join(lines) + "\n")
    (args.out / "batch_throughput.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
