"""A narrower synthesis (tokc.train.image_slim): the slicing keeps the map when nothing is cut,
and the packed weights file decodes with it while coding the same tokens as the weights it
came from (only g_s changes)."""

import numpy as np
import pytest

from tokc.compress import versions
from tokc.compress.image import ImageCodec, ImageWeights

torch = pytest.importorskip("torch")
from tokc.train.image_slim import narrow, pack_slim, strongest  # noqa: E402


def _tokens(codec, data):
    _, _, z, c = codec.decode_tokens(data)
    return z.tobytes() + c.q.tobytes() + c.index.tobytes()


def test_narrow_keeping_every_channel_is_the_same_map(tiny_codec):
    g_s = tiny_codec.transforms.model.g_s
    n = g_s.layers[6].in_channels
    y = torch.randn(1, tiny_codec.weights.config["m"], 3, 4, generator=torch.Generator().manual_seed(0))
    kept = narrow(g_s, n, torch.arange(n).flip(0))  # a permutation of the channels
    with torch.no_grad():
        torch.testing.assert_close(kept(y), g_s(y), atol=1e-5, rtol=1e-5)
    assert narrow(g_s, 3).layers[6].in_channels == 3
    keep = strongest(g_s, y, 3)
    assert keep.tolist() == sorted(set(keep.tolist())) and len(keep) == 3


def test_the_packed_file_codes_the_same_tokens_and_decodes_narrow(tiny_weights, tmp_path, synthetic_photo):
    base = ImageWeights(tiny_weights)
    g_s = ImageCodec(base, backend="torch").transforms.model.g_s
    torch.save({"g_s": narrow(g_s, 3).state_dict(), "step": 7, "width": 3, "teacher_weight": 0.5},
               tmp_path / "ckpt.pt")
    out = tmp_path / "slim.safetensors"
    meta = pack_slim(tmp_path / "ckpt.pt", base, out)
    slim = ImageWeights(out)
    assert slim.config["synthesis_last"] == 3 and meta["synthesis"]["steps"] == 7
    assert slim.digest != base.digest
    same = [k for k in base.tensors if not k.startswith("g_s.")]
    assert all(np.array_equal(slim.tensors[k], base.tensors[k]) for k in same)

    before, after = ImageCodec(base, backend="torch"), ImageCodec(slim, backend="torch")
    photo = synthetic_photo
    a, b = before.compress(photo, quality=60).data, after.compress(photo, quality=60).data
    assert _tokens(before, a) == _tokens(after, b)
    x = after.decompress(b)
    assert x.shape == photo.shape
    # the archive's graph (versions.synthesis_graph) runs the narrow g_s too
    y = np.random.default_rng(1).normal(0, 2, (1, int(slim.config["m"]), 2, 3)).astype(np.float32)
    with torch.no_grad():
        want = after.transforms.model.g_s(torch.from_numpy(y)).numpy()[0]
    np.testing.assert_allclose(versions.GraphSynthesis(slim.file).run("g_s", y[0]), want, atol=1e-4, rtol=1e-4)


def test_narrowing_the_second_hidden_layer_too_packs_and_decodes(tiny_weights, tmp_path, synthetic_photo):
    from tokc.train.image_slim import MID

    base = ImageWeights(tiny_weights)
    g_s = ImageCodec(base, backend="torch").transforms.model.g_s
    y = torch.randn(1, base.config["m"], 3, 4, generator=torch.Generator().manual_seed(0))
    both = narrow(narrow(g_s, 4), 5, strongest(g_s, y, 5, MID), MID)
    assert [both.layers[i].out_channels for i in (0, 2, 4, 6)] == [8, 5, 4, 3]
    torch.save({"g_s": both.state_dict(), "step": 1, "width": 4, "mid_width": 5, "teacher_weight": 0.5},
               tmp_path / "ckpt.pt")
    pack_slim(tmp_path / "ckpt.pt", base, tmp_path / "slim.safetensors")
    slim = ImageWeights(tmp_path / "slim.safetensors")
    assert (slim.config["synthesis_last"], slim.config["synthesis_mid"]) == (4, 5)
    assert ImageCodec(slim, backend="torch").decompress(
        ImageCodec(slim, backend="torch").compress(synthetic_photo, quality=50).data).shape == synthetic_photo.shape
