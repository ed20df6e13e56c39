"""The integer networks in ONNX Runtime (tokc.compress.intnet_ort) against numpy
(tokc.compress.intnet.run): whole-file decode of one image, both ways interleaved in one
process, same bytes and pixels checked. Stop other work on the machine first.

    python benchmarks/intnet_speed.py [IMAGE] [-q 75] [--rounds 12] [--threads 2]
"""

import argparse
import time

import numpy as np

from tokc.compress.image import ImageCodec, ImageWeights, read_image

ap = argparse.ArgumentParser()
ap.add_argument("image", nargs="?", default="../shared/data/images/kodak/kodim23.png")
ap.add_argument("-q", "--quality", type=float, default=75)
ap.add_argument("--rounds", type=int, default=12)
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()

rgb = read_image(args.image)
codecs = {}
for name, accelerate in (("numpy", False), ("onnxruntime", True)):
    weights = ImageWeights(threads=args.threads)
    for net in (weights.hs, *weights.ctx, *weights.spatial):
        net.accelerate = accelerate
    codecs[name] = ImageCodec(weights, backend="onnx")
data = {name: c.compress(rgb, quality=args.quality).data for name, c in codecs.items()}
assert data["numpy"] == data["onnxruntime"], "the two paths made different files"
pixels = [c.decompress(data["numpy"]) for c in codecs.values()]
assert np.array_equal(*pixels), "the two paths decoded different pixels"
times = {name: [] for name in codecs}
for _ in range(args.rounds):
    for name, c in codecs.items():
        t0 = time.perf_counter()
        c.decompress(data[name])
        times[name].append(time.perf_counter() - t0)
ms = {name: 1000 * float(np.median(t)) for name, t in times.items()}
print(f"{args.image} -q {args.quality:g}: {len(data['numpy'])} bytes, identical files and pixels")
for name, t in ms.items():
    print(f"  decode with the integer networks in {name}: {t:.1f} ms (median of {args.rounds})")
print(f"  ratio {ms['numpy'] / ms['onnxruntime']:.2f}")
