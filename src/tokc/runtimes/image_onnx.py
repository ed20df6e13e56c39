"""tokc-image-v1's float transforms on ONNX Runtime: the torch-free path.

The ONNX files lie beside the weights file and carry (in their JSON sidecar) the sha256 of
the weights they were exported from; a mismatch is refused rather than silently decoding
with other weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np


class OnnxTransforms:
    name = "onnx"

    def __init__(self, weights, threads: int | None = None):
        import onnxruntime as ort

        from tokc.compress.image import CODEC_ID, CodecError

        folder = Path(weights.path).parent
        side_path = folder / f"{CODEC_ID}.onnx.json"
        if not side_path.exists():
            raise CodecError(
                f"no ONNX export beside {weights.path} (python -m tokc.export.onnx), "
                "and PyTorch is not installed"
            )
        side = json.loads(side_path.read_text())
        sha = hashlib.sha256(Path(weights.path).read_bytes()).hexdigest()
        if side["weights_sha256"] != sha:
            raise CodecError(f"the ONNX files in {folder} were exported from other weights")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.sessions = {}
        for part, spec in side["parts"].items():
            sess = ort.InferenceSession(str(folder / spec["file"]), opts,
                                        providers=["CPUExecutionProvider"])
            self.sessions[part] = (sess, spec["input"])

    def _run(self, part: str, x: np.ndarray) -> np.ndarray:
        sess, name = self.sessions[part]
        return sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)[None]})[0][0]

    def analysis(self, x):
        return self._run("g_a", x)

    def hyper_analysis(self, y):
        return self._run("h_a", y)

    def synthesis(self, y_hat):
        return self._run("g_s", y_hat)
