"""Crops of tokc's two synthesis tunes beside AVIF and WebP at the same bytes, for a person to
look at (issue 17): `python benchmarks/tune_crops.py [--quality 30] [--out PNG]`.

For each image: tokc at -q Q (the psnr and the perceptual tune code the same tokens; the
perceptual file is 6 bytes larger, its header's `tune`), then AVIF (aom speed 6, 4:4:4) and
WebP at their highest quality that fits in the perceptual file's bytes. One row per image:
the original, tokc psnr, tokc perceptual, AVIF, WebP, each a 160×160 crop shown at 2×, with
bytes, PSNR and SSIMULACRA2 of the whole image under it."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tokc.baselines.image import compress_image_to_size
from tokc.compress.image import default_codec
from tokc.metrics.image import psnr, ssimulacra2

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared/data/images/kodak"
# (image, crop top-left): textured regions, where the tunes differ most
CROPS = (("kodim13.png", (300, 200)), ("kodim08.png", (180, 60)), ("kodim23.png", (110, 330)),
         ("kodim19.png", (40, 300)))
SIZE, ZOOM = 160, 2


def panel(img: np.ndarray, at: tuple[int, int], label: str) -> Image.Image:
    y, x = at
    crop = Image.fromarray(img[y : y + SIZE, x : x + SIZE]).resize((SIZE * ZOOM, SIZE * ZOOM), Image.NEAREST)
    out = Image.new("RGB", (SIZE * ZOOM, SIZE * ZOOM + 34), "white")
    out.paste(crop, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(label.split("\n")):
        draw.text((4, SIZE * ZOOM + 3 + 15 * i), line, fill="black")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quality", type=float, default=30)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/tune_crops.png")
    args = ap.parse_args()
    codec = default_codec()
    rows = []
    for name, at in CROPS:
        ref = np.asarray(Image.open(KODAK / name).convert("RGB"))
        panels = [panel(ref, at, f"{name}\noriginal")]
        perc = codec.compress(ref, quality=args.quality, tune="perceptual").data
        for tune, data in (("psnr", codec.compress(ref, quality=args.quality).data), ("perceptual", perc)):
            out = codec.decompress(data)
            panels.append(panel(out, at, f"tokc {tune}: {len(data)} B\n{psnr(ref, out):.2f} dB, "
                                         f"SSIMULACRA2 {ssimulacra2(ref, out):.1f}"))
        for other in ("avif", "webp"):
            res = compress_image_to_size(other, ref, len(perc))
            panels.append(panel(res.decoded, at, f"{other}: {res.nbytes} B\n{psnr(ref, res.decoded):.2f} dB, "
                                                  f"SSIMULACRA2 {ssimulacra2(ref, res.decoded):.1f}"))
        w, h = panels[0].size
        row = Image.new("RGB", (w * len(panels) + 4 * (len(panels) - 1), h), "white")
        for i, p in enumerate(panels):
            row.paste(p, (i * (w + 4), 0))
        rows.append(row)
        print(name, "done", flush=True)
    sheet = Image.new("RGB", (rows[0].width, sum(r.height + 6 for r in rows)), "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height + 6
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
