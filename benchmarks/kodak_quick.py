"""Quick training-trajectory check: tokc (given weights) on all 24 Kodak images at a few
qualities, PSNR/MS-SSIM BD-rates against the baseline curves of a committed `tokc bench rd`
JSON (the classic codecs are deterministic, so their curves need no re-run). For the
side-by-side benchmark of record use `tokc bench rd` (make bench-kodak).

    python benchmarks/kodak_quick.py [WEIGHTS] [--baselines benchmarks/results/kodak_baselines.json]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from tokc.compress.image import WEIGHTS, ImageCodec, ImageWeights, quality_to_level, read_image
from tokc.metrics.bdrate import bd_rate
from tokc.metrics.image import ms_ssim, ms_ssim_db, psnr

ap = argparse.ArgumentParser()
ap.add_argument("weights", nargs="?", type=Path, default=WEIGHTS)
ap.add_argument("--baselines", type=Path, default=Path("benchmarks/results/kodak_baselines.json"))
ap.add_argument("--kodak", type=Path, default=Path("../shared/data/images/kodak"))
ap.add_argument("--qualities", default="0,20,40,60,80,100")
args = ap.parse_args()

codec = ImageCodec(ImageWeights(args.weights), backend="torch")
base = json.loads(args.baselines.read_text())
qs = [float(q) for q in args.qualities.split(",")]
rows = {q: [] for q in qs}
t0 = time.time()
for path in sorted(args.kodak.glob("*.png")):
    img = read_image(path)
    a = codec.analyse(img)
    for q in qs:
        lv = quality_to_level(q, codec.weights.levels)
        data = codec.pack(a, lv, 3)
        out = codec.decompress(data)
        rows[q].append((8 * len(data) / img.shape[0] / img.shape[1], psnr(img, out),
                        ms_ssim_db(ms_ssim(img, out))))
mean = {q: np.mean(v, 0) for q, v in rows.items()}
tok_r = [mean[q][0] for q in qs]
res = {"weights": str(args.weights), "seconds": round(time.time() - t0, 1),
       "curve": [{"q": q, "bpp": round(m[0], 4), "psnr": round(m[1], 3), "ms_ssim_db": round(m[2], 3)}
                 for q, m in mean.items()]}
for name in ("jpeg", "webp", "avif", "jxl"):
    pts = base["mean"][name]
    r = [p["rate"] for p in pts]
    res[f"bd_psnr_vs_{name}"] = round(bd_rate(r, [p["psnr"] for p in pts], tok_r, [mean[q][1] for q in qs]), 2)
    res[f"bd_msssim_vs_{name}"] = round(bd_rate(r, [p["ms_ssim_db"] for p in pts], tok_r, [mean[q][2] for q in qs]), 2)
print(json.dumps(res))
