"""Earlier weights keep decoding (tokc.compress.versions): a file made by weights A decodes,
after the install's weights became B, with A's decode-only archive, to A's pixels; g_s of an
archive runs from a graph written from its weights."""

import shutil

import numpy as np
import pytest

from tokc import format as fmt
from tokc.compress import versions
from tokc.compress.base import CodecError
from tokc.compress.image import ImageCodec, ImageWeights, tune_path

torch = pytest.importorskip("torch")
from tokc.train.image_tune import pack_tune  # noqa: E402


@pytest.fixture()
def upgraded(tiny_weights, tiny_channel_weights, tmp_path):
    """An install whose weights were A (tiny, with a perceptual tune) and are now B, with A
    archived in versions/ as the upgrade would leave it."""
    old = tmp_path / "old" / "tokc-image-v1.safetensors"
    old.parent.mkdir()
    shutil.copy(tiny_weights, old)
    a = ImageWeights(old)
    g_s = ImageCodec(a, backend="torch").transforms.model.g_s
    gen = torch.Generator().manual_seed(5)
    state = {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in g_s.state_dict().items()}
    torch.save({"g_s": state, "step": 1}, tmp_path / "ckpt.pt")
    pack_tune(tmp_path / "ckpt.pt", a, tune_path(old, "perceptual"))
    new = tmp_path / "new" / "tokc-image-v1.safetensors"
    new.parent.mkdir()
    shutil.copy(tiny_channel_weights, new)
    written = versions.archive(old, new.parent / "versions")
    return old, new, written


def test_the_archive_is_decode_only_and_answers_to_the_old_digest(upgraded, synthetic_photo):
    old, _, written = upgraded
    assert [p.name for p in written] == [
        f"tokc-image-v1.{ImageWeights(old).digest.hex()}.safetensors",
        f"tokc-image-v1.{ImageWeights(old).digest.hex()}.perceptual.safetensors"]
    w = ImageWeights(written[0])
    assert w.archived and w.digest == ImageWeights(old).digest
    assert not any(k.startswith(("g_a.", "h_a.")) for k in w.tensors)
    assert written[0].stat().st_size < old.stat().st_size
    with pytest.raises(CodecError, match="only decodes"):
        ImageCodec(w).compress(synthetic_photo, quality=50)


@pytest.mark.parametrize("tune", ["psnr", "perceptual"])
def test_a_file_of_the_old_weights_decodes_after_the_upgrade(upgraded, tune, synthetic_photo):
    old, new, _ = upgraded
    before = ImageCodec(ImageWeights(old), backend="torch")
    data = before.compress(synthetic_photo, quality=60, tune=tune).data
    want = before.decompress(data)
    after_torch = ImageCodec(ImageWeights(new), backend="torch")
    assert after_torch.weights.digest != before.weights.digest
    np.testing.assert_array_equal(after_torch.decompress(data), want)  # same float graph
    got = ImageCodec(ImageWeights(new), backend="auto").decompress(data)  # the written graph
    assert np.abs(got.astype(int) - want).max() <= 1
    assert after_torch.for_digest(before.weights.digest).weights.archived


def test_without_the_archive_the_mismatch_is_named(tiny_weights, tiny_channel_weights, synthetic_photo):
    data = ImageCodec(ImageWeights(tiny_weights), backend="torch").compress(synthetic_photo, quality=40).data
    with pytest.raises(fmt.WeightsMismatchError, match=ImageWeights(tiny_weights).digest.hex()):
        ImageCodec(ImageWeights(tiny_channel_weights), backend="torch").decompress(data)


def test_synthesis_graph_is_g_s(tiny_weights):
    w = ImageWeights(tiny_weights)
    g_s = ImageCodec(w, backend="torch").transforms.model.g_s
    y = np.random.default_rng(0).normal(0, 2, (1, int(w.config["m"]), 5, 7)).astype(np.float32)
    with torch.no_grad():
        want = g_s(torch.from_numpy(y)).numpy()[0]
    got = versions.GraphSynthesis(w.file).run("g_s", y[0])
    assert got.shape == want.shape == (3, 80, 112)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_an_audio_file_of_the_old_weights_decodes_after_the_upgrade(tiny_audio_weights, tmp_path):
    """Audio: the archive is the old decoder whole (its noise fill is in its config)."""
    import dataclasses

    from tokc.compress.audio import AudioCodec, AudioWeights
    from tokc.models.audio import AudioConfig, AudioModel
    from tokc.train.pack_audio import pack_model

    old = tmp_path / "old" / "tokc-audio-v1.safetensors"
    old.parent.mkdir()
    shutil.copy(tiny_audio_weights, old)
    new = tmp_path / "new" / "tokc-audio-v1.safetensors"
    new.parent.mkdir()
    torch.manual_seed(0)
    model = AudioModel(dataclasses.replace(AudioConfig(hop=32, bands=4, m=36, nz=4, ctx_slices=3, ctx_width=8),
                                           kappa=[0.0, 0.25, 0.55, 0.55])).eval()
    rng = np.random.default_rng(1)
    pack_model(model, [rng.standard_normal(16000) * 0.05], new)
    assert AudioWeights(new).kappa.tolist() == [0.0, 0.25, 0.55, 0.55]
    versions.archive(old, new.parent / "versions")
    rng = np.random.default_rng(2)
    x = (0.1 * np.sin(np.arange(8000) * 0.05) + 0.01 * rng.standard_normal(8000)).astype(np.float32)
    data = AudioCodec(AudioWeights(old)).compress(x, quality=50, sample_rate=16000).data
    with pytest.raises(fmt.WeightsMismatchError):
        AudioCodec(AudioWeights(new)).check_header(fmt.read_header(data))
    got = AudioCodec(AudioWeights(new)).decompress(data).samples
    np.testing.assert_array_equal(got, AudioCodec(AudioWeights(old)).decompress(data).samples)
    archived = AudioCodec(AudioWeights(new)).for_digest(fmt.read_header(data).weights_digest)
    assert archived.weights.archived
    with pytest.raises(CodecError, match="only decodes"):
        archived.compress(x, quality=50, sample_rate=16000)


def test_a_delta_archive_holds_what_changed_and_decodes_through_later_upgrades(
        tiny_weights, tiny_channel_weights, tmp_path, synthetic_photo):
    """Weights A replaced by B that differs only in g_s (tokc.train.image_slim): A's archive made
    --delta-of B holds g_s alone and decodes A's files with B installed, and still after B is
    replaced in turn and archived whole; without B anywhere, the error names it."""
    from tokc.train.image_slim import narrow, pack_slim

    install = tmp_path / "install" / "tokc-image-v1.safetensors"
    install.parent.mkdir()
    shutil.copy(tiny_weights, install)
    a = ImageWeights(install)
    g_s = ImageCodec(a, backend="torch").transforms.model.g_s
    torch.save({"g_s": narrow(g_s, 5).state_dict(), "step": 1, "width": 5, "teacher_weight": 0.5},
               tmp_path / "ckpt.pt")
    b_path = tmp_path / "b.safetensors"
    pack_slim(tmp_path / "ckpt.pt", a, b_path)
    data = ImageCodec(a, backend="torch").compress(synthetic_photo, quality=60).data
    want = ImageCodec(a, backend="torch").decompress(data)
    folder = install.parent / "versions"
    (archived,) = versions.archive(install, folder, delta_of=b_path)
    kept = ImageWeights(b_path)
    kept_sha256 = kept.sha256  # before the move: the same bytes after it
    shutil.move(b_path, install)
    changed = {k for k, v in a.tensors.items() if k.startswith("g_s.") and not (
        kept.tensors[k].shape == v.shape and np.array_equal(kept.tensors[k], v))}
    assert "g_s.layers.6.weight" in changed and "g_s.layers.0.weight" not in changed
    assert set(versions.packed.read(archived).tensors) == changed  # no table, no integer network
    assert ImageWeights(install).sha256 == kept_sha256
    np.testing.assert_array_equal(ImageCodec(ImageWeights(install), backend="torch").decompress(data), want)

    versions.archive(install, folder)  # B replaced by C, archived whole (int8 where it fits)
    shutil.copy(tiny_channel_weights, install)
    np.testing.assert_array_equal(ImageCodec(ImageWeights(install), backend="torch").decompress(data), want)

    next(folder.glob(f"*.{kept.digest.hex()}.safetensors")).unlink()
    with pytest.raises(CodecError, match=kept_sha256[:16]):
        ImageCodec(ImageWeights(install), backend="torch").decompress(data)
