"""Issue 16, the command line: outputs honour the umask, one-line errors that name the file with
documented exit codes, strict --psnr, no image bytes on a terminal, grey .pgm output, and the
demo on small images."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import tokc
from tokc.cli import main


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def one_error_line(r, code: int, *needles) -> str:
    """The result failed with `code` and one `tokc: error:` line that holds every needle."""
    assert r.exit_code == code, (r.exit_code, r.output)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tokc: error: "), r.stderr
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    assert "Traceback" not in r.output and ".part" not in r.output
    return lines[0]


@pytest.fixture()
def png(tmp_path, photo):
    p = tmp_path / "photo.png"
    Image.fromarray(photo[:48, :64]).save(p)
    return p


@pytest.fixture()
def tokc_file(tmp_path, photo, tiny_weights):
    p = tmp_path / "photo.tokc"
    p.write_bytes(tokc.compress(photo[:48, :64], quality=30, model=str(tiny_weights)))
    return p


@pytest.fixture()
def umask():
    def set_(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_
    os.umask(old)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_honour_the_umask(png, tiny_weights, tmp_path, umask, mask, mode):
    umask(mask)
    out = tmp_path / "out.tokc"
    assert run("compress", png, "-o", out, "-m", tiny_weights).exit_code == 0
    assert out.stat().st_mode & 0o777 == mode
    back = tmp_path / "back.png"
    assert run("decompress", out, "-o", back, "-m", tiny_weights).exit_code == 0
    assert back.stat().st_mode & 0o777 == mode


def test_overwriting_keeps_the_files_mode(png, tiny_weights, tmp_path):
    out = tmp_path / "out.tokc"
    out.write_bytes(b"old")
    out.chmod(0o604)
    assert run("compress", png, "-o", out, "-m", tiny_weights, "-f").exit_code == 0
    assert out.stat().st_mode & 0o777 == 0o604


def test_output_errors_name_the_output(png, tokc_file, tiny_weights, tmp_path):
    missing = tmp_path / "nodir" / "x.tokc"
    one_error_line(run("compress", png, "-o", missing, "-m", tiny_weights), 1, f"{missing}: ")
    missing = tmp_path / "nodir" / "x.png"
    one_error_line(run("decompress", tokc_file, "-o", missing, "-m", tiny_weights), 1, f"{missing}: ")
    folder = tmp_path / "folder"
    folder.mkdir()
    for force in ((), ("-f",)):
        one_error_line(run("compress", png, "-o", folder, "-m", tiny_weights, *force), 1,
                       f"{folder}: is a directory")
        one_error_line(run("decompress", tokc_file, "-o", folder, "-m", tiny_weights, *force), 1,
                       f"{folder}: is a directory")
    assert not list(tmp_path.glob("**/.*.part"))


def test_input_errors_name_the_input(tiny_weights, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    line = one_error_line(run("compress", empty, "-m", tiny_weights), 1, empty, "empty")
    assert "BytesIO" not in line
    text = tmp_path / "notes.png"
    text.write_text("hello\n")
    line = one_error_line(run("compress", text, "-m", tiny_weights), 1, text, "not an image")
    assert "BytesIO" not in line
    one_error_line(run("compress", tmp_path, "-m", tiny_weights), 1, f"{tmp_path}: is a directory")
    one_error_line(run("decompress", tmp_path), 1, f"{tmp_path}: is a directory")
    one_error_line(run("info", tmp_path), 1, f"{tmp_path}: is a directory")


def test_decompress_errors_name_the_file(tiny_weights, tmp_path):
    empty = tmp_path / "empty.tokc"
    empty.write_bytes(b"")
    one_error_line(run("decompress", empty, "-m", tiny_weights), 1, f"{empty}: ", "truncated at byte 0")
    text = tmp_path / "notes.tokc"
    text.write_text("hello, this is text\n")
    one_error_line(run("decompress", text, "-m", tiny_weights), 1, f"{text}: ", "not a .tokc file")


def test_missing_files_fail_alike(tmp_path):
    missing = tmp_path / "missing.tokc"
    for command in ("info", "decompress", "compress"):
        one_error_line(run(command, missing), 1, f"{missing}: no such file")


@pytest.mark.parametrize("args", [
    ["frobnicate"],
    ["compress", "x.png", "--no-such-option"],
    ["compress", "x.png", "-q", "150"],
    ["compress", "x.png", "-q", "50", "--size", "100"],
    ["compress"],
    [],
])
def test_usage_errors_are_one_line_and_exit_2(args):
    r = run(*args)
    if not args:  # a bare `tokc` shows the help, as before
        assert r.exit_code in (0, 2) and "Usage" in r.output
        return
    one_error_line(r, 2)
    assert "Usage:" not in r.stderr and "Try" not in r.stderr


def test_help_documents_the_exit_codes():
    r = run("--help")
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    assert "0 success" in text and "1 failure" in text and "2 usage" in text


@pytest.mark.parametrize("value", ["nan", "-5", "0", "inf"])
def test_psnr_must_be_a_positive_number(png, value):
    one_error_line(run("compress", png, "--psnr", value), 2, "--psnr")


def _tokc_on_a_terminal(*args) -> subprocess.CompletedProcess:
    """tokc with its stdout on a pseudo-terminal."""
    leader, follower = os.openpty()
    try:
        return subprocess.run([sys.executable, "-c", "from tokc.cli import main; main()", *map(str, args)],
                              stdout=follower, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              text=True, timeout=120)
    finally:
        os.close(follower)
        os.close(leader)


def test_refuses_to_write_data_to_a_terminal(tokc_file, png, tiny_weights):
    r = _tokc_on_a_terminal("decompress", tokc_file, "-o", "-", "-m", tiny_weights)
    assert r.returncode == 1 and r.stderr.startswith("tokc: error:") and "terminal" in r.stderr
    r = _tokc_on_a_terminal("compress", png, "-o", "-", "-m", tiny_weights)
    assert r.returncode == 1 and "terminal" in r.stderr


def test_pgm_is_grey_and_ppm_is_colour(tokc_file, tiny_weights, tmp_path):
    pgm, ppm = tmp_path / "x.pgm", tmp_path / "x.ppm"
    r = run("decompress", tokc_file, "-o", pgm, "-m", tiny_weights)
    assert r.exit_code == 0 and "tokc: warning:" in r.stderr and "as grey" in r.stderr
    assert pgm.read_bytes()[:2] == b"P5"
    with Image.open(pgm) as im:
        assert im.mode == "L" and im.size == (64, 48)
    assert run("decompress", tokc_file, "-o", ppm, "-m", tiny_weights).exit_code == 0
    assert ppm.read_bytes()[:2] == b"P6"


def test_grey_file_to_ppm_is_colour(photo, tiny_weights, tmp_path):
    grey = tmp_path / "g.tokc"
    grey.write_bytes(tokc.compress(photo[:32, :32, 0], quality=30, model=str(tiny_weights)))
    assert run("decompress", grey, "-o", tmp_path / "g.ppm", "-m", tiny_weights).exit_code == 0
    assert (tmp_path / "g.ppm").read_bytes()[:2] == b"P6"


def test_animated_gif_warns(photo, tiny_weights, tmp_path):
    frames = [Image.fromarray(photo[:32, :32]), Image.fromarray(photo[32:64, :32])]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    r = run("compress", gif, "-m", tiny_weights)
    assert r.exit_code == 0, r.output
    assert "tokc: warning:" in r.stderr and "first of its 2 frames" in r.stderr


def test_demo_compare_on_an_image_under_161_px(photo, tmp_path):
    """`make demo IMAGE=small.png`: MS-SSIM needs 161 px, so it reads n/a there."""
    small = tmp_path / "small.png"
    Image.fromarray(photo[:96, :120]).save(small)
    r = run("bench", "compare", small, "--codecs", "jpeg")
    assert r.exit_code == 0, r.output
    rows = [line for line in r.stdout.splitlines() if line.startswith(("tokc", "jpeg"))]
    assert len(rows) == 2 and all("n/a" in row for row in rows)
    assert not math.isnan(float(rows[0].split()[5]))  # PSNR is still there
    assert np.isfinite(float(rows[0].split()[3]))
