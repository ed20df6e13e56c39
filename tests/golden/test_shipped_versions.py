"""Old files keep decoding: every .tokc file under tests/golden/versions/ was made by a shipped
weights set (named in the file) and is never regenerated. After the shipped weights are
replaced, the install decodes it with the archived version (tokc.compress.versions) to the same
tokens and pixels as when it was made."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tokc
from tokc.compress.image import ImageCodec

FILES = sorted(Path(__file__).with_name("versions").glob("*.tokc"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_a_file_of_every_shipped_version_decodes_as_it_did(path, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    want = json.loads(path.with_suffix(".json").read_text())
    data = path.read_bytes()
    codec = ImageCodec(backend=backend).for_digest(bytes.fromhex(want["weights_digest"]))
    _, _, z, c = codec.decode_tokens(data)
    assert hashlib.sha256(z.tobytes() + c.q.tobytes() + c.index.tobytes()).hexdigest() == want["tokens_sha256"]
    got = tokc.decompress(data, backend=backend)
    ref = np.asarray(Image.open(path.with_suffix(".png")))
    assert got.shape == ref.shape == tuple(want["shape"])
    # float synthesis: a pixel may round the other way on another machine or backend
    diff = np.abs(got.astype(int) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
