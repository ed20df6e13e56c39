"""Kernel tests: every Triton kernel against its torch reference.

Where CUDA is present the tests run the compiled kernels on the GPU; without it the Triton
side runs under Triton's CPU interpreter (TRITON_INTERPRET=1, set here before any kernel
module is imported). A TRITON_INTERPRET the caller set wins (=1 on a GPU machine tests the
interpreter). On CUDA, TF32 is off: the tests compare with the fp32 references exactly.
"""

import os

import pytest

torch = pytest.importorskip("torch")

if "TRITON_INTERPRET" not in os.environ:
    os.environ["TRITON_INTERPRET"] = "0" if torch.cuda.is_available() else "1"

from tokc.kernels._dispatch import interpreting, triton_available  # noqa: E402

NO_TRITON = "triton is not installed (pip install 'tokc-codec[gpu]'): only the reference is tested"


@pytest.fixture(scope="session", autouse=True)
def _no_tf32():
    """TF32 matmuls and convolutions would make the references differ from fp32 on Ampere+."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


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
