import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The parity fixtures were recorded with 1 thread; on a busy machine 1 thread is also far
    faster for these tiny models."""
    torch = pytest.importorskip("torch")
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
