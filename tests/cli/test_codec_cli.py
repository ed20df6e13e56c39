"""tokc compress / decompress with click's CliRunner on real files."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tokc.cli import main


@pytest.fixture()
def png(tmp_path, photo):
    p = tmp_path / "photo.png"
    Image.fromarray(photo).save(p)
    return p


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def test_compress_then_decompress(png, tiny_weights):
    r = run("compress", png, "-q", 40, "-m", tiny_weights, "--backend", "torch")
    assert r.exit_code == 0, r.output
    out = png.with_suffix(".tokc")
    assert out.exists() and out.read_bytes()[:4] == b"TOKC"
    assert "bytes" in r.stderr and "bpp" in r.stderr
    r = run("decompress", out, "-o", png.with_name("back.png"), "-m", tiny_weights)
    assert r.exit_code == 0, r.output
    back = np.asarray(Image.open(png.with_name("back.png")))
    assert back.shape == np.asarray(Image.open(png)).shape


def test_refuses_to_overwrite_without_force(png, tiny_weights):
    target = png.with_suffix(".tokc")
    target.write_bytes(b"keep me")
    r = run("compress", png, "-m", tiny_weights)
    assert r.exit_code == 1 and "exists" in r.stderr
    assert target.read_bytes() == b"keep me"
    r = run("compress", png, "-m", tiny_weights, "-f")
    assert r.exit_code == 0 and target.read_bytes()[:4] == b"TOKC"


def test_stdin_stdout_and_json(png, tiny_weights):
    r = run("compress", "-", "-m", tiny_weights, "--json", input=png.read_bytes())
    assert r.exit_code == 0
    assert r.stdout_bytes[:4] == b"TOKC"
    assert '"bytes"' in r.stderr  # the summary goes to stderr when the data is on stdout
    data = r.stdout_bytes
    r = run("decompress", "-", "-m", tiny_weights, input=data)
    assert r.exit_code == 0 and r.stdout_bytes[:8] == b"\x89PNG\r\n\x1a\n"


def test_size_budget(png, tiny_weights, tmp_path):
    out = tmp_path / "small.tokc"
    r = run("compress", png, "-o", out, "--size", 3000, "-m", tiny_weights, "--json")
    assert r.exit_code == 0, r.output
    assert out.stat().st_size <= 3000


def test_errors_are_one_line_with_exit_codes(png, tiny_weights, tmp_path):
    r = run("compress", tmp_path / "missing.png")
    assert r.exit_code == 1 and r.stderr.startswith("tokc: error:")
    not_image = tmp_path / "x.png"
    not_image.write_bytes(b"not an image at all")
    r = run("compress", not_image, "-m", tiny_weights)
    assert r.exit_code == 1 and "cannot read image" in r.stderr
    assert not not_image.with_suffix(".tokc").exists()  # nothing half-written
    r = run("compress", png, "-q", 50, "--size", 100)
    assert r.exit_code == 2
    r = run("compress", png, "-q", 150)
    assert r.exit_code == 2
    bad = tmp_path / "bad.tokc"
    bad.write_bytes(b"TOKC\x01garbage")
    r = run("decompress", bad, "-m", tiny_weights)
    assert r.exit_code == 1 and r.stderr.startswith("tokc: error:")
    assert not bad.with_suffix(".png").exists()
    assert "Traceback" not in r.output


def test_gray_and_rgba_files(tmp_path, photo, tiny_weights):
    gray = tmp_path / "g.png"
    Image.fromarray(photo[:, :, 1]).save(gray)
    rgba = tmp_path / "a.png"
    alpha = np.tile(np.arange(photo.shape[1], dtype=np.uint8), (photo.shape[0], 1))
    Image.fromarray(np.dstack([photo, alpha])).save(rgba)
    for p, mode in ((gray, "L"), (rgba, "RGBA")):
        assert run("compress", p, "-m", tiny_weights).exit_code == 0
        assert run("decompress", p.with_suffix(".tokc"), "-o", tmp_path / f"{p.stem}.out.png",
                   "-m", tiny_weights).exit_code == 0
        back = Image.open(tmp_path / f"{p.stem}.out.png")
        assert back.mode == mode
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.out.png"))[:, :, 3], alpha)


def test_tensorrt_backend_without_tensorrt_is_a_clear_error(png):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    r = run("compress", png, "--backend", "tensorrt")
    assert r.exit_code == 1 and "tensorrt backend is unavailable" in r.stderr
    assert not png.with_suffix(".tokc").exists()
