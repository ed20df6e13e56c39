from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
KODAK = SHARED / "data/images/kodak"


def _tiny_weights(tmp_path_factory, name: str, ctx_slices: int, spatial: bool = False) -> Path:
    """A tiny randomly initialised tokc-image-v1 packed like the shipped weights."""
    torch = pytest.importorskip("torch")
    from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior
    from tokc.train.pack_image import pack

    torch.manual_seed(0)
    model = ImageHyperprior(HyperpriorConfig(n=8, m=12, ctx_slices=ctx_slices, ctx_width=8,
                                             ctx_spatial=spatial)).eval()
    with torch.no_grad():  # contexts that do something (a new one starts at zero)
        for net in [*(model.ctx or []), *(model.spatial or [])]:
            net[4].weight.normal_(0, 0.05)
            net[4].bias.normal_(0, 0.1)
    gen = torch.Generator().manual_seed(0)
    crops = [torch.rand(1, 3, 128, 128, generator=gen) for _ in range(2)]
    out = tmp_path_factory.mktemp("weights") / f"{name}.safetensors"
    pack(model, crops, out)
    return out


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """With a channel-wise context of 3 slices and a checkerboard one, like the shipped model."""
    return _tiny_weights(tmp_path_factory, "tiny", 3, spatial=True)


@pytest.fixture(scope="session")
def tiny_channel_weights(tmp_path_factory) -> Path:
    """With the channel-wise context only (the shipped model before the checkerboard one)."""
    return _tiny_weights(tmp_path_factory, "tiny_channel", 3)


@pytest.fixture(scope="session")
def tiny_plain_weights(tmp_path_factory) -> Path:
    """Without a context model (one slice)."""
    return _tiny_weights(tmp_path_factory, "tiny_plain", 0)


@pytest.fixture(scope="session")
def tiny_codec(tiny_weights):
    from tokc.compress.image import ImageCodec, ImageWeights

    return ImageCodec(ImageWeights(tiny_weights), backend="torch")


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photo crop (Kodak is the benchmark; a crop of it is fine as a test input)."""
    from PIL import Image

    path = KODAK / "kodim23.png"
    if not path.exists():
        pytest.skip(f"{path} missing (../shared/data)")
    return np.asarray(Image.open(path).convert("RGB"))[100:228, 200:392].copy()
