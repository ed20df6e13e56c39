"""Images larger than one file tile are coded tile by tile ('tile' chunks, the header's rate
parameter `tile`); the decoder synthesises row after row into the output. Here the tile side
is lowered to 4 latents (64 px), so the 128x192 test photo is 2 x 3 tiles."""

import numpy as np
import pytest

from tokc import format as fmt
from tokc.compress import image
from tokc.metrics.image import psnr


@pytest.fixture
def small_tiles(monkeypatch):
    monkeypatch.setattr(image, "TILE_SIDE", 4)


def test_tiled_file_round_trip(tiny_codec, photo, small_tiles):
    res = tiny_codec.compress(photo, quality=60)
    header, chunks = fmt.unpack(res.data)
    assert header.rate_dict()["tile"] == 4
    assert [c.tag for c in chunks].count(image.TILE_TAG) == 6
    assert "ans " not in {c.tag for c in chunks}
    out = tiny_codec.decompress(res.data)
    assert out.shape == photo.shape
    tokens = list(tiny_codec.tile_tokens(header, chunks))
    assert [(t.rows.start, t.cols.start) for t, _ in tokens] == [(r, c) for r in (0, 4) for c in (0, 4, 8)]
    # the same tokens, synthesised at once, give the same pixels: no seams from the rows
    y_hat = np.zeros((tokens[0][1].q.shape[0], 8, 12), np.float32)
    for t, c in tokens:
        y_hat[:, t.rows, t.cols] = tiny_codec.latents(c, int(res.level * 1000))
    whole = tiny_codec.synthesise([y_hat], *photo.shape[:2])
    assert np.abs(whole.astype(int) - out).max() <= 1


def test_small_images_keep_the_untiled_layout(tiny_codec, photo):
    header, chunks = fmt.unpack(tiny_codec.compress(photo, quality=60).data)
    assert "tile" not in header.rate_dict()
    assert [c.tag for c in chunks] == ["ans "]


def test_tiles_cost_little(tiny_codec, photo, small_tiles, monkeypatch):
    tiled = tiny_codec.compress(photo, quality=60)
    monkeypatch.setattr(image, "TILE_SIDE", 64)
    whole = tiny_codec.compress(photo, quality=60)
    assert len(tiled.data) < 1.25 * len(whole.data)  # 64-px tiles: the worst case
    assert psnr(photo, tiny_codec.decompress(tiled.data)) > psnr(photo, tiny_codec.decompress(whole.data)) - 0.5


def test_psnr_target_and_size_budget_in_tiles(tiny_codec, photo, small_tiles):
    a = tiny_codec.analyse_tiles(photo)
    for level in (1000, 3500):
        got = psnr(photo, tiny_codec.decompress(tiny_codec.pack(a, level, 3)))
        assert tiny_codec.psnr_at(a, level) == pytest.approx(got, abs=1e-6)
    res = tiny_codec.compress(photo, size=1500)
    assert len(res.data) <= 1500


def test_effort_refines_each_tile(tiny_codec, photo, small_tiles):
    fast = tiny_codec.compress(photo, quality=60)
    slow = tiny_codec.compress(photo, quality=60, effort=4)
    assert fast.data != slow.data
    assert tiny_codec.decompress(slow.data).shape == photo.shape


def _rewrite(data: bytes, chunks=None, **header_fields) -> bytes:
    import dataclasses

    header, old = fmt.unpack(data)
    return fmt.pack(dataclasses.replace(header, **header_fields), old if chunks is None else chunks)


def test_forged_size_of_a_tiled_file_fails_before_any_work(tiny_codec, photo, small_tiles):
    data = tiny_codec.compress(photo, quality=60).data
    with pytest.raises(fmt.CorruptError, match="6 'tile' chunks for an image of 1024 tiles"):
        tiny_codec.decompress(_rewrite(data, width=16 * 64 * 2, height=16 * 64 * 2))


def test_damaged_tiles_are_format_errors(tiny_codec, photo, small_tiles):
    data = tiny_codec.compress(photo, quality=60).data
    header, chunks = fmt.unpack(data)
    short = [fmt.Chunk(c.tag, c.payload[:3]) if i == 2 else c for i, c in enumerate(chunks)]
    with pytest.raises(fmt.CorruptError, match="'tile' chunk shorter than its stream length"):
        tiny_codec.decompress(_rewrite(data, short))
    cut = [fmt.Chunk(c.tag, c.payload[:4] + c.payload[4:][: len(c.payload) // 3]) if i == 2 else c
           for i, c in enumerate(chunks)]
    with pytest.raises(fmt.TokcFormatError):
        tiny_codec.decompress(_rewrite(data, cut))
    rate = tuple((k, 6 if k == "tile" else v) for k, v in header.rate)
    with pytest.raises(fmt.TokcFormatError, match="tile side of 6 latents"):
        tiny_codec.decompress(_rewrite(data, rate=rate))
