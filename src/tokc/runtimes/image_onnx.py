"""A codec's float transforms on ONNX Runtime: the torch-free path.

The ONNX files lie beside the weights file (or in `folder`) and carry, in their JSON sidecar,
the sha256 of the weights they were exported from; a mismatch is refused rather than silently
decoding with other weights. `weights` is any object with `path`, `codec_id` and `sha256`
(tokc.compress.weights.LatentWeights): this module knows no codec."""

from __future__ import annotations

from pathlib import Path

from tokc.runtimes.base import Transforms, load, open_export
from tokc.runtimes.errors import CodecError, RuntimeUnavailable


class OnnxTransforms(Transforms):
    def __init__(self, weights, threads: int | None = None, precision: str = "fp32",
                 folder: Path | None = None, device: str = "cpu"):
        folder = Path(folder) if folder else Path(weights.path).parent
        exp = open_export(folder, weights.codec_id, precision, weights.sha256)
        try:
            runtimes = {name: load(exp, name, "onnx", device, threads) for name in exp.parts}
        except RuntimeUnavailable as e:
            raise CodecError(str(e)) from None
        super().__init__(runtimes, name="onnx")
