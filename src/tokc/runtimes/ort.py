"""ONNX Runtime backend. Imports no torch (tests check it in a fresh interpreter): this is
what the core install runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tokc.runtimes.base import Runtime, RuntimeUnavailable

PROVIDERS = {"cpu": ["CPUExecutionProvider"],
             "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


_shared_arena: bool | None = None


def lean_memory(opts) -> None:
    """CPU session options for bounded memory: no memory pattern (ONNX Runtime keeps one
    preallocated plan per input shape, and tiles come in several shapes) and one arena shared
    by tokc's sessions in this process, registered on first use, that grows by what is asked
    (ONNX Runtime's own arenas are one per session and grow in powers of two). Measured on g_s
    and g_a over tiles of three shapes: peak RSS 1085 MB with the defaults, 834 MB with the
    shared arena, 572 MB with neither pattern, at the same speed. Where the arena cannot be
    registered (another registered first, an onnxruntime without the call) the session keeps
    its own."""
    global _shared_arena
    import onnxruntime as ort

    opts.enable_mem_pattern = False
    if _shared_arena is None:
        try:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            # max_mem 0: no cap; extend strategy 1: kSameAsRequested; -1: defaults
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 1, -1, -1))
            _shared_arena = True
        except (AttributeError, RuntimeError, ort.capi.onnxruntime_pybind11_state.Fail):
            _shared_arena = False
    if _shared_arena:
        opts.add_session_config_entry("session.use_env_allocators", "1")


class OrtRuntime(Runtime):
    backend = "onnx"

    def __init__(self, path: Path, device: str = "cpu", precision: str = "fp32",
                 threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeUnavailable("the onnx backend needs onnxruntime: pip install onnxruntime") from None
        path = Path(path)
        if not path.is_file():
            raise RuntimeUnavailable(f"no ONNX file {path}")
        if device not in PROVIDERS:
            raise ValueError(f"unknown device {device!r} (cpu, cuda)")
        if PROVIDERS[device][0] not in ort.get_available_providers():
            raise RuntimeUnavailable(
                f"onnxruntime here has no {PROVIDERS[device][0]} (pip install onnxruntime-gpu)"
            )
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        # a codec runs other work (integer networks, ANS) between runs: idle threads sleep
        # rather than spin on the cores it needs (h_s 29-32 ms against 43 in a 768x512 decode)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if device == "cpu":
            lean_memory(opts)
        self.path = path
        self.session = ort.InferenceSession(str(path), opts, providers=PROVIDERS[device])
        super().__init__([i.name for i in self.session.get_inputs()],
                         [o.name for o in self.session.get_outputs()], device, precision)

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.session.run(list(self.output_names), inputs)
        return {name: np.asarray(out, dtype=np.float32) for name, out in zip(self.output_names, outs, strict=True)}
