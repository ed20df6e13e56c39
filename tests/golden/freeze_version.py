"""Commit a golden file of the shipped image weights before they are replaced:
`python tests/golden/freeze_version.py "tokc-image-v1 step N"` writes, for the psnr and the
perceptual tune, tests/golden/versions/tokc-image-v1.<digest>.q60[.perceptual].{tokc,png,json}
(a crop of kodim23 at -q 60), which test_shipped_versions.py decodes after the replacement."""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tokc.compress.image import ImageCodec

HERE = Path(__file__).with_name("versions")
KODIM23 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "images" / "kodak" / "kodim23.png"


def main(label: str) -> None:
    codec = ImageCodec()
    photo = np.asarray(Image.open(KODIM23).convert("RGB"))[100:228, 200:392].copy()
    for tune in ("psnr", "perceptual"):
        stem = f"{codec.weights.codec_id}.{codec.weights.digest.hex()}.q60" + ("" if tune == "psnr" else f".{tune}")
        data = codec.compress(photo, quality=60, tune=tune).data
        pixels = codec.decompress(data)
        _, _, z, c = codec.decode_tokens(data)
        (HERE / f"{stem}.tokc").write_bytes(data)
        Image.fromarray(pixels).save(HERE / f"{stem}.png")
        meta = {"file": f"{stem}.tokc", "weights_digest": codec.weights.digest.hex(), "weights": label if tune == "psnr" else f"{label}, {tune} tune",
                "tokens_sha256": hashlib.sha256(z.tobytes() + c.q.tobytes() + c.index.tobytes()).hexdigest(),
                "pixels_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(), "shape": list(pixels.shape)}
        (HERE / f"{stem}.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"wrote {stem}.*")


if __name__ == "__main__":
    main(sys.argv[1])
