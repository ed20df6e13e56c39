"""Kernel tests: every Triton kernel against its torch reference.

On a machine without a GPU the Triton side runs under Triton's CPU interpreter
(TRITON_INTERPRET=1, set here unless the caller chose otherwise, before any kernel module is
imported). With TRITON_INTERPRET=0 on a CUDA machine the same tests run the compiled kernels.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

torch = pytest.importorskip("torch")

from tokc.kernels._dispatch import interpreting, triton_available  # noqa: E402

NO_TRITON = "triton is not installed (pip install 'tokc-codec[gpu]'): only the reference is tested"


@pytest.fixture(scope="session")
def device() -> str:
    if not interpreting() and torch.cuda.is_available():
        return "cuda"
    return "cpu"


@pytest.fixture
def needs_triton(device):
    """Skip Triton-vs-reference comparisons where Triton cannot run."""
    if not triton_available():
        pytest.skip(NO_TRITON)
    if device == "cpu" and not interpreting():
        pytest.skip("TRITON_INTERPRET=0 and no CUDA device: Triton cannot run here")


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)
