"""A codec's float transforms (the parts of its model that run in floating point) on a
backend: PyTorch eager, or an export on ONNX Runtime / TensorRT, chosen by the one policy
(tokc.runtimes.base.backend_order). Integer networks and entropy coding never run here, so a
backend moves samples or pixels, never the token stream.

Every transforms object has `name` and `run(part, x)` on one unbatched array.
"""

from __future__ import annotations

import numpy as np

from tokc.compress.base import CodecError
from tokc.runtimes import base


class TorchTransforms:
    """The float parts on PyTorch (eager, float32), built by `build(packed file)` (default:
    tokc.models.packed.float_model)."""

    name = "torch"

    def __init__(self, weights, build=None):
        try:
            import torch
        except ImportError:
            raise CodecError("the torch backend needs PyTorch: pip install 'tokc-codec[torch]'") from None
        from tokc.models import packed

        self.torch = torch
        self.model = (build or packed.float_model)(weights.file)

    def run(self, part: str, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            module = getattr(self.model, part)
            return module(self.torch.from_numpy(np.ascontiguousarray(x))[None])[0].numpy()


def get_transforms(weights, backend: str = "auto", build=None):
    """The transforms of a weights file (LatentWeights) on a backend. auto (the codec runs on
    the CPU): ONNX Runtime when the export beside the weights matches them (faster, no torch),
    else PyTorch; tensorrt: engines built from that export, on the GPU."""
    from tokc.runtimes.image_onnx import OnnxTransforms

    def load(name: str):
        if name == "torch":
            return TorchTransforms(weights, build)
        if name == "onnx":
            return OnnxTransforms(weights, threads=getattr(weights, "threads", 0) or None)
        exp = base.open_export(weights.path.parent, weights.codec_id, "fp32", weights.sha256)
        try:
            return base.load_parts(exp, "tensorrt", "cuda")
        except (ImportError, RuntimeError) as e:
            raise CodecError(f"the tensorrt backend is unavailable here: {e}") from None

    return base.first_that_loads(backend, "cuda" if backend == "tensorrt" else "cpu", load,
                                 (CodecError, ImportError))
