"""Where the parity fixtures of the published tokenizers live (../shared/fixtures, beside the
repository), and how a test skips when a checkout has none. Importable from every test
(pytest's pythonpath holds tests/)."""

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared/fixtures"


def _reason(path: Path) -> str:
    return f"parity fixture {path} is absent (it lives in ../shared/fixtures next to the repo)"


def fixture_folder(name: str, needs: str = "model.safetensors") -> Path:
    """The fixture folder `name`, or skip the calling test when `needs` is not in it."""
    path = FIXTURES / name
    if not (path / needs).exists():
        pytest.skip(_reason(path))
    return path


def needs_fixture(name: str, needs: str = "model.safetensors"):
    """A skipif marker for the tests of fixture `name`."""
    path = FIXTURES / name
    return pytest.mark.skipif(not (path / needs).exists(), reason=_reason(path))
