"""Old files keep decoding: every .tokc file under tests/golden/versions/ was made by a shipped
weights set (named in the file) and is never regenerated. After the shipped weights are
replaced, the install decodes it with the archived version (tokc.compress.versions) to the same
tokens and pixels (or samples) as when it was made."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tokc
from tokc import format as fmt
from tokc.compress import audio
from tokc.compress.image import ImageCodec

FILES = sorted(Path(__file__).with_name("versions").glob("tokc-image-v1.*.tokc"))
AUDIO_FILES = sorted(Path(__file__).with_name("versions").glob("tokc-audio-v1.*.tokc"))


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


@pytest.mark.parametrize("path", AUDIO_FILES, ids=lambda p: p.stem)
def test_an_audio_file_of_every_shipped_version_decodes_as_it_did(path):
    import soundfile as sf

    want = json.loads(path.with_suffix(".json").read_text())
    data = path.read_bytes()
    codec = audio.AudioCodec().for_digest(bytes.fromhex(want["weights_digest"]))
    header, chunks = fmt.unpack(data)
    level = codec.check_header(header)
    codec = codec.with_low_band_boost(header.rate_dict().get("lbg", 0))
    frames = audio.dsp.frames_for(audio.coded_samples(header.num_samples, header.sample_rate),
                                  codec.weights.hop, audio.Z_STRIDE)
    h = hashlib.sha256()
    segs = [c for c in chunks if c.tag == audio.TAG]  # (a file may hold other chunks beside)
    for chunk, (_, n) in zip(segs, audio.segments(frames), strict=True):
        z, c = codec.latent.read_payload(chunk.payload, (1, n // audio.Z_STRIDE), level, "a segment")
        h.update(z.tobytes() + c.q.tobytes() + c.index.tobytes())
    assert h.hexdigest() == want["tokens_sha256"]
    got = tokc.decompress(data)
    ref, rate = sf.read(path.with_suffix(".flac"), dtype="float32", always_2d=True)
    assert got.sample_rate == rate == want["sample_rate"]
    assert got.samples.shape == ref.shape == tuple(want["samples"])
    # float synthesis, stored in 16 bits: within a step or two of 16-bit PCM
    assert np.abs(got.samples - ref).max() <= 2.5 / 32768
