"""tokc-image-v1's float transforms on ONNX Runtime: the torch-free path.

The ONNX files lie beside the weights file (or in `folder`) and carry, in their JSON sidecar,
the sha256 of the weights they were exported from; a mismatch is refused rather than silently
decoding with other weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tokc.runtimes.base import ImageTransforms, RuntimeUnavailable, read_export, sidecar_name
from tokc.runtimes.ort import OrtRuntime


class OnnxTransforms(ImageTransforms):
    def __init__(self, weights, threads: int | None = None, precision: str = "fp32",
                 folder: Path | None = None, device: str = "cpu"):
        from tokc.compress.image import CODEC_ID, CodecError

        folder = Path(folder) if folder else Path(weights.path).parent
        side_path = folder / sidecar_name(CODEC_ID, precision)
        if not side_path.exists():
            raise CodecError(f"no {precision} ONNX export in {folder} "
                             f"(tokc export {CODEC_ID} -o {folder} --precision {precision})")
        try:
            exp = read_export(side_path)
        except RuntimeUnavailable as e:
            raise CodecError(str(e)) from None
        sha = hashlib.sha256(Path(weights.path).read_bytes()).hexdigest()
        if exp.weights_sha256 != sha:
            raise CodecError(f"the ONNX files in {folder} were exported from other weights")
        try:
            runtimes = {
                name: OrtRuntime(part.path, device=device, precision=exp.precision, threads=threads)
                for name, part in exp.parts.items()
            }
        except RuntimeUnavailable as e:
            raise CodecError(str(e)) from None
        super().__init__(runtimes, name="onnx")
