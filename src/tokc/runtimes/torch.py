"""PyTorch backend: the modules the ONNX files were traced from, eager, on CPU or CUDA.
fp16 runs the module in half precision (meant for CUDA; CPU half convolutions are slow);
int8 is an ONNX/TensorRT precision and is refused here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tokc.runtimes.base import Runtime, RuntimeUnavailable


class TorchRuntime(Runtime):
    backend = "torch"

    def __init__(self, module, input_name: str, output_name: str, device: str = "cpu",
                 precision: str = "fp32", threads: int | None = None):
        try:
            import torch
        except ImportError:
            raise RuntimeUnavailable("the torch backend needs PyTorch: pip install 'tokc-codec[torch]'") from None
        if precision not in ("fp32", "fp16"):
            raise RuntimeUnavailable(f"the torch backend runs fp32 or fp16, not {precision}")
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeUnavailable("torch here has no CUDA device")
        if threads:
            torch.set_num_threads(threads)  # process-wide: torch has no per-module setting
        self.torch = torch
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.module = module.eval().to(device=device, dtype=self.dtype)
        super().__init__([input_name], [output_name], device, precision)

    @classmethod
    def from_weights(cls, weights: Path, part: str, device: str = "cpu", precision: str = "fp32",
                     threads: int | None = None, expected_sha256: str | None = None,
                     io: tuple[str, str] = ("input", "output")) -> TorchRuntime:
        """One float part of a packed weights file (tokc.models.packed), its input and output
        named io (an export's sidecar names them)."""
        from tokc.models import packed

        weights = Path(weights)
        if not weights.is_file():
            raise RuntimeUnavailable(f"the torch backend needs the weights file: {weights} is missing")
        file = packed.read(weights)
        if expected_sha256 and file.sha256 != expected_sha256:
            raise RuntimeUnavailable(f"{weights} is not the weights file this export was made from")
        parts = sorted({k.split(".")[0] for k, v in file.tensors.items() if v.dtype == np.float16})
        if part not in parts:  # the float parts are stored in fp16
            raise ValueError(f"unknown part {part!r} ({', '.join(parts)})")
        try:
            model = packed.float_model(file)
        except ImportError:
            raise RuntimeUnavailable("the torch backend needs PyTorch: pip install 'tokc-codec[torch]'") from None
        return cls(getattr(model, part), *io, device=device, precision=precision, threads=threads)

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        x = torch.from_numpy(inputs[self.input_names[0]]).to(self.device, self.dtype)
        with torch.inference_mode():
            y = self.module(x)
        return {self.output_names[0]: y.float().cpu().numpy()}
