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
def synthetic_photo() -> np.ndarray:
    """A photo-like (100, 140, 3) uint8 image (smooth colours and noise) that needs no data."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:100, 0:140] / 140
    img = np.stack([128 + 90 * np.sin(8 * x + 3 * y), 120 + 60 * np.cos(6 * y), 70 + 140 * x * y], -1)
    return np.clip(img + rng.normal(0, 10, (100, 140, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photo crop (Kodak is the benchmark; a crop of it is fine as a test input)."""
    from PIL import Image

    path = KODAK / "kodim23.png"
    if not path.exists():
        pytest.skip(f"{path} missing (../shared/data)")
    return np.asarray(Image.open(path).convert("RGB"))[100:228, 200:392].copy()


@pytest.fixture(scope="session")
def tiny_audio_weights(tmp_path_factory) -> Path:
    """A tiny randomly initialised tokc-audio-v1 (hop 32, 4 bands, 3 slices, even/odd
    context) packed like the shipped weights. The transform is fixed, so it codes audio as
    faithfully as the shipped model; only its rate is worse."""
    return _tiny_audio_weights(tmp_path_factory)


def _tiny_audio_weights(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from tokc.models.audio import AudioConfig, AudioModel
    from tokc.train.pack_audio import pack_model

    torch.manual_seed(0)
    model = AudioModel(AudioConfig(hop=32, bands=4, m=36, nz=4, ctx_slices=3, ctx_width=8)).eval()
    with torch.no_grad():  # contexts that do something (a new one starts at zero)
        for net in [*model.ctx, *model.spatial]:
            net[4].weight.normal_(0, 0.05)
            net[4].bias.normal_(0, 0.1)
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(16000) * 0.05 * np.hanning(16000) for _ in range(2)]
    out = tmp_path_factory.mktemp("weights") / "tiny_audio.safetensors"
    pack_model(model, waves, out)
    return out


@pytest.fixture(scope="session")
def tiny_audio_codec(tiny_audio_weights):
    from tokc.compress.audio import AudioCodec, AudioWeights

    return AudioCodec(AudioWeights(tiny_audio_weights))


@pytest.fixture(scope="session")
def real_speech(speech):
    """The training-split speech clip; skips without ../shared (where `speech` is synthetic)."""
    if not (SHARED / "data/audio/speech/index.tsv").exists():
        pytest.skip("../shared/data/audio/speech missing: golden values are of the real clip")
    return speech


@pytest.fixture(scope="session")
def speech():
    """A training-split speech clip (16 kHz mono), or a synthetic voiced signal without
    ../shared."""
    from tokc.compress.base import Sound

    index = SHARED / "data/audio/speech/index.tsv"
    if index.exists():
        import soundfile

        row = next(line.split("\t") for line in index.read_text().splitlines()[1:]
                   if line.endswith("\ttrain"))
        x, rate = soundfile.read(SHARED / "data/audio/speech" / row[0], dtype="float32",
                                 always_2d=True)
        return Sound(x[: 3 * rate], rate)
    t = np.arange(3 * 16000) / 16000
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
    x = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 16000) / k for k in range(1, 20))
    x *= 0.1 * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return Sound(x[:, None].astype(np.float32), 16000)
