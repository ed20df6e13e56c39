"""The synthesis tunes of tokc-image-v1 (--tune psnr|perceptual): one bitstream, a second g_s
named in the header, its file beside the weights; and the differentiable SSIMULACRA2 the
perceptual tune trains on, against the benchmark's metric."""

import dataclasses
import io
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tokc import format as fmt
from tokc.compress.base import CodecError

torch = pytest.importorskip("torch")

from tokc.cli import main  # noqa: E402
from tokc.compress.image import ImageCodec, ImageWeights, tune_path  # noqa: E402
from tokc.train.image_tune import pack_tune  # noqa: E402


def _texture(h: int = 130, w: int = 150, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / w
    img = np.stack([128 + 90 * np.sin(9 * x + 4 * y), 128 + 70 * np.cos(7 * y), 60 + 150 * x * y], -1)
    return np.clip(img + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture()
def tuned(tiny_weights, tmp_path):
    """tiny weights with a perceptual tune beside them (g_s perturbed), on torch."""
    weights_path = tmp_path / "tiny.safetensors"
    shutil.copy(tiny_weights, weights_path)
    weights = ImageWeights(weights_path)
    codec = ImageCodec(weights, backend="torch")
    g_s = codec.transforms.model.g_s
    gen = torch.Generator().manual_seed(3)
    state = {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in g_s.state_dict().items()}
    torch.save({"g_s": state, "step": 7, "mse_weight": 1.0}, tmp_path / "ckpt.pt")
    pack_tune(tmp_path / "ckpt.pt", weights, tune_path(weights_path, "perceptual"))
    return codec, weights_path


def test_the_tune_changes_the_header_and_the_pixels_not_the_tokens(tuned):
    codec, _ = tuned
    img = _texture()
    plain = codec.compress(img, quality=60).data
    assert plain == codec.compress(img, quality=60, tune="psnr").data
    assert dict(fmt.unpack(plain)[0].rate).keys() == {"level_milli"}  # as files always were
    perc = codec.compress(img, quality=60, tune="perceptual").data
    h_plain, c_plain = fmt.unpack(plain)
    h_perc, c_perc = fmt.unpack(perc)
    assert h_perc.rate_dict() == {**h_plain.rate_dict(), "tune": 1}
    assert [c.payload for c in c_perc] == [c.payload for c in c_plain]
    a, b = codec.decompress(plain), codec.decompress(perc)
    assert a.shape == b.shape == img.shape and np.abs(a.astype(int) - b).max() > 0
    # the perceptual file decodes with the tune's g_s: the same as reconstructing with it
    _, _, _, c = codec.decode_tokens(perc)
    level = h_perc.rate_dict()["level_milli"]
    np.testing.assert_array_equal(b, codec.reconstruct(c, level, *img.shape[:2], "perceptual"))


def test_a_missing_or_foreign_tune_is_a_clear_error(tiny_weights, tiny_channel_weights, tmp_path):
    weights_path = tmp_path / "tiny.safetensors"
    shutil.copy(tiny_weights, weights_path)
    codec = ImageCodec(ImageWeights(weights_path), backend="torch")
    with pytest.raises(CodecError, match=r"tiny\.perceptual\.safetensors beside tiny\.safetensors"):
        codec.compress(_texture(), quality=50, tune="perceptual")
    with pytest.raises(CodecError, match="unknown tune"):
        codec.compress(_texture(), quality=50, tune="sharp")
    # a tune made for other weights is refused
    other = ImageWeights(tiny_channel_weights)
    g_s = ImageCodec(other, backend="torch").transforms.model.g_s
    torch.save({"g_s": g_s.state_dict(), "step": 1}, tmp_path / "ckpt.pt")
    pack_tune(tmp_path / "ckpt.pt", other, tune_path(weights_path, "perceptual"))
    with pytest.raises(CodecError, match="other weights"):
        codec.compress(_texture(), quality=50, tune="perceptual")


def test_an_unknown_tune_in_a_header_is_a_format_error(tuned):
    codec, _ = tuned
    data = codec.compress(_texture(), quality=50, tune="perceptual").data
    header, chunks = fmt.unpack(data)
    forged = fmt.pack(dataclasses.replace(header, rate=(("level_milli", header.rate_dict()["level_milli"]),
                                                        ("tune", 5))), chunks)
    with pytest.raises(fmt.TokcFormatError, match="tune 5"):
        codec.decompress(forged)


def test_cli_tune(tuned, tmp_path):
    _, weights_path = tuned
    src = tmp_path / "in.png"
    Image.fromarray(_texture()).save(src)
    out = tmp_path / "out.tokc"
    res = CliRunner().invoke(main, ["compress", str(src), "-o", str(out), "-m", str(weights_path),
                                    "--backend", "torch", "--tune", "perceptual", "--json"])
    assert res.exit_code == 0, res.output
    assert '"tune": "perceptual"' in res.output
    assert fmt.unpack(out.read_bytes())[0].rate_dict()["tune"] == 1
    res = CliRunner().invoke(main, ["compress", str(src), "-o", str(tmp_path / "b.tokc"),
                                    "--tune", "loud"])
    assert res.exit_code != 0 and "loud" in res.output


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf).convert("RGB"))


@pytest.mark.parametrize("shape", [(256, 256), (97, 131)])
def test_torch_ssimulacra2_is_the_benchmarks_metric(shape):
    pytest.importorskip("ssimulacra2")
    from tokc.metrics.image import ssimulacra2
    from tokc.train.ssimulacra2 import score

    ref = _texture(*shape, seed=1)
    for q in (20, 70):
        dist = _jpeg(ref, q)
        want = ssimulacra2(ref, dist)

        def t(a):
            return torch.from_numpy(a.copy()).permute(2, 0, 1)[None].double() / 255

        got = score(t(ref), t(dist)).item()
        assert abs(got - want) < 1e-6 * max(1.0, abs(want)), (q, got, want)
    assert score(t(ref), t(ref)).item() == 100.0


def test_torch_ssimulacra2_gives_gradients():
    from tokc.train.ssimulacra2 import score

    ref = torch.from_numpy(_texture(64, 64).copy()).permute(2, 0, 1)[None].float() / 255
    dist = (ref + 0.05 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    dist.requires_grad_()
    s = score(ref, dist).sum()
    s.backward()
    assert torch.isfinite(dist.grad).all() and dist.grad.abs().sum() > 0
    # a step along the gradient raises the score
    with torch.no_grad():
        better = (dist + 1e-3 * dist.grad / dist.grad.abs().max()).clamp(0, 1)
    assert score(ref, better).item() > s.item()
