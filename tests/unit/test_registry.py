"""The codec contract and the registry: the public API called as a user does, every codec
found from the header's codec id, a new codec added without touching the CLI."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import tokc
from tokc import format as fmt
from tokc.cli import main
from tokc.compress import registry
from tokc.compress.base import Codec, CodecError, EncodeResult, UnknownCodecError

ROOT = Path(__file__).resolve().parents[2]
ODP = ROOT.parent / "shared/fixtures/one_d_piece"


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def test_readme_snippet_runs_twice_in_a_fresh_interpreter(photo, tmp_path):
    """`import tokc.compress.<sub>` must not replace the function tokc.compress."""
    readme = (ROOT / "README.md").read_text()
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "tokc.compress(" in b)
    Image.fromarray(photo[:64, :64]).save(tmp_path / "photo.png")
    code = f"{snippet}\n{snippet}\nprint(pixels.shape, callable(tokc.compress), type(codec).__name__)"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["(64,", "64,", "3)", "True", "ImageCodec"]


def test_the_api_survives_importing_every_subpackage():
    import tokc.compress.image  # noqa: F401
    import tokc.compress.tokens  # noqa: F401

    assert callable(tokc.compress) and callable(tokc.decompress)


def test_registered_codecs_keep_the_contract():
    ids = [e.codec_id for e in registry.entries()]
    assert {"tokc-image-v1", "one-d-piece-v1"} <= set(ids)
    assert registry.entry("one-d-piece").codec_id == "one-d-piece-v1"
    assert registry.default_for("image").codec_id == "tokc-image-v1"
    codec = registry.get("tokc-image-v1")
    assert isinstance(codec, Codec) and (codec.codec_id, codec.modality) == ("tokc-image-v1", "image")
    assert codec is tokc.open_model("tokc-image-v1")  # loaded once
    from tokc.compress import tokens
    from tokc.compress.image import CodecError as ImageCodecError

    assert ImageCodecError is CodecError and issubclass(tokens.TokenCodecError, CodecError)
    with pytest.raises(CodecError, match="--checkpoint"):
        registry.get("one-d-piece-v1")
    with pytest.raises(CodecError, match="takes no checkpoint"):
        registry.get("tokc-image-v1", checkpoint="x")


@pytest.mark.skipif(not (ODP / "model.safetensors").exists(), reason="no fixture")
def test_one_d_piece_files_open_through_the_registry(photo, tmp_path):
    pytest.importorskip("torch")
    from tokc.compress.tokens import OneDPieceCodec

    res = OneDPieceCodec(ODP).compress(photo[:40, :50], tokens=5)
    assert isinstance(res, EncodeResult) and res.codec == "one-d-piece-v1" and res.num_tokens == 5
    want = OneDPieceCodec(ODP).decompress(res.data)
    np.testing.assert_array_equal(tokc.decompress(res.data, checkpoint=ODP), want)
    path = tmp_path / "k5.tokc"
    path.write_bytes(res.data)
    r = run("decompress", path, "--checkpoint", ODP, "-o", tmp_path / "k5.png")
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "k5.png")), want)
    r = run("info", path)
    assert "decoder     one-d-piece-v1 (decoding needs --checkpoint)" in r.stdout.splitlines()


def test_an_unknown_codec_id_is_one_clear_line(tmp_path):
    header = fmt.Header(codec="tokc-video-v9", weights_digest=b"\x01" * 8, modality="image",
                        width=4, height=4, channels=3)
    data = fmt.pack(header, [fmt.Chunk("xxxx", b"abc")])
    with pytest.raises(UnknownCodecError, match="'tokc-video-v9', which this tokc does not have"):
        tokc.decompress(data)
    path = tmp_path / "v.tokc"
    path.write_bytes(data)
    r = run("decompress", path)
    assert r.exit_code == 1 and r.stderr.strip().splitlines() == [
        f"tokc: error: {path}: this file was made by codec 'tokc-video-v9', which this tokc does not have "
        f"(it has {', '.join(e.codec_id for e in registry.entries())})"]
    assert not path.with_suffix(".png").exists()
    r = run("info", path)  # info still shows the file
    assert r.exit_code == 0 and "decoder     none in this tokc for tokc-video-v9" in r.stdout


class _Blocks:
    """A toy codec: the mean of each 4x4 block, one byte each."""

    codec_id, modality = "test-blocks-v0", "image"

    def compress(self, image, level: int = 4) -> EncodeResult:
        img = np.asarray(image)[:, :, :3] if np.asarray(image).ndim == 3 else np.asarray(image)
        h, w = img.shape[:2]
        small = img.reshape(h // level, level, w // level, level, -1).mean((1, 3)).round().astype(np.uint8)
        header = fmt.Header(codec=self.codec_id, weights_digest=b"\x00" * 8, modality="image",
                            width=w, height=h, channels=small.shape[2], rate={"level": level})
        data = fmt.pack(header, [fmt.Chunk("blks", small.tobytes())])
        return EncodeResult(data, self.codec_id, "image", width=w, height=h, rate={"level": level})

    def decompress(self, data: bytes) -> np.ndarray:
        header, chunks = fmt.unpack(data)
        lv = header.rate_dict()["level"]
        small = np.frombuffer(chunks[0].payload, np.uint8).reshape(header.height // lv, header.width // lv, -1)
        return small.repeat(lv, 0).repeat(lv, 1)

    def summary(self, res):
        return {"level": res.level}, f"level {res.level}"


def test_a_new_codec_is_one_registration(tmp_path):
    registry.register("test-blocks-v0", lambda backend="auto": _Blocks(), modality="image",
                      aliases=("blocks",), rate_options=())
    try:
        img = np.tile(np.arange(16, dtype=np.uint8)[:, None, None] * 10, (1, 8, 3))
        Image.fromarray(img).save(tmp_path / "in.png")
        r = run("compress", tmp_path / "in.png", "-m", "blocks")
        assert r.exit_code == 0, r.output
        assert "level 4" in r.stderr
        r = run("compress", tmp_path / "in.png", "-m", "blocks", "-q", 5, "-f")
        assert r.exit_code == 2 and "options -q go with -m tokc-image-v1" in r.stderr
        data = (tmp_path / "in.tokc").read_bytes()
        assert tokc.decompress(data).shape == (16, 8, 3)
        r = run("decompress", tmp_path / "in.tokc", "-o", tmp_path / "out.png")
        assert r.exit_code == 0, r.output
        out = np.asarray(Image.open(tmp_path / "out.png"))
        np.testing.assert_array_equal(out[::4, 0, 0], [15, 55, 95, 135])  # the blocks' means
    finally:
        registry._entries.pop("test-blocks-v0")
