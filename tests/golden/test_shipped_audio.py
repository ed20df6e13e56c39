"""The shipped tokc-audio-v1 weights: golden bitstream and tokens, the same decode on 1 and 2
threads and in ONNX Runtime as in numpy, -b within its target, silence nearly free.

Regenerate the golden values after replacing the weights with TOKC_REGEN_GOLDEN=1 (never
silently): the test then rewrites tests/golden/audio_v1.json and fails, so that the change is
seen and committed on purpose."""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED
from peak_rss import PEAK_KIB

from tokc import format as fmt
from tokc.compress import audio

GOLDEN = Path(__file__).with_name("audio_v1.json")
GOLDEN_FILE = Path(__file__).with_name("audio_v1_q60.tokc")

if not audio.WEIGHTS.exists():
    pytest.skip(f"the shipped weights are not in this checkout ({audio.WEIGHTS.name})",
                allow_module_level=True)


@pytest.fixture(scope="module")
def codec():
    return audio.AudioCodec(audio.AudioWeights())


def tokens_digest(codec, data: bytes) -> str:
    """sha256 of every segment's z, tokens and table indices, in file order."""
    header, chunks = fmt.unpack(data)
    level = codec.check_header(header)
    codec = codec.with_low_band_boost(header.rate_dict().get("lbg", 0))  # the gains of its tokens
    frames = audio.dsp.frames_for(audio.coded_samples(header.num_samples, header.sample_rate),
                                  codec.weights.hop, audio.Z_STRIDE)
    h = hashlib.sha256()
    segs = [n for _, n in audio.segments(frames) for _ in range(header.channels)]
    seg_chunks = [c for c in chunks if c.tag == audio.TAG]
    shapes = iter([c for c in chunks if c.tag == audio.SHAPE_TAG])  # the fill shape's symbols
    signs = iter([c for c in chunks if c.tag == audio.SIGN_TAG])  # the fill signs
    for chunk, n in zip(seg_chunks, segs, strict=True):
        z, c = codec.latent.read_payload(chunk.payload, (1, n // audio.Z_STRIDE), level, "a segment")
        h.update(z.tobytes() + c.q.tobytes() + c.index.tobytes())
        if header.rate_dict().get("fsh"):
            h.update(codec.read_shape(next(shapes).payload, codec.shape_groups(c)).tobytes())
        if header.rate_dict().get("fsg"):
            h.update(codec.read_signs(next(signs).payload, codec.sign_mask(c)).tobytes())
    return h.hexdigest()


def test_golden_bitstream_and_tokens(codec, real_speech):
    data = codec.compress(real_speech, quality=60).data
    got = {
        "weights_digest": codec.weights.digest.hex(),
        "md5_q60": hashlib.md5(data).hexdigest(),
        "tokens_sha256": tokens_digest(codec, data),
    }
    if os.environ.get("TOKC_REGEN_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
        GOLDEN_FILE.write_bytes(data)
        pytest.fail("golden values regenerated: review and commit tests/golden/audio_v1.*")
    want = json.loads(GOLDEN.read_text())
    assert got["weights_digest"] == want["weights_digest"], "weights changed: regenerate golden"
    assert got["md5_q60"] == want["md5_q60"]
    # the committed file decodes to the same tokens here as where it was made
    assert tokens_digest(codec, GOLDEN_FILE.read_bytes()) == want["tokens_sha256"]


DECODE = """
import hashlib, sys
from tokc.compress import audio
s = audio.AudioCodec(audio.AudioWeights(threads=int(sys.argv[2]))).decompress(open(sys.argv[1], 'rb').read())
print(hashlib.sha256(s.samples.tobytes()).hexdigest())
"""


def test_same_decode_on_one_and_two_threads():
    out = []
    for threads in (1, 2):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
        r = subprocess.run([sys.executable, "-c", DECODE, str(GOLDEN_FILE), str(threads)],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        out.append(r.stdout.strip())
    assert out[0] == out[1]


def test_integer_networks_same_in_onnxruntime_as_in_numpy(codec, speech):
    pytest.importorskip("onnxruntime")
    from tokc.compress import intnet

    data = codec.compress(speech, quality=30).data
    header, chunks = fmt.unpack(data)
    codec = codec.with_low_band_boost(header.rate_dict()["lbg"])
    w = codec.weights
    payload = chunks[0].payload
    size = int.from_bytes(payload[:4], "little")
    n = min(audio.SEGMENT, audio.dsp.frames_for(audio.coded_samples(header.num_samples, header.sample_rate), w.hop, audio.Z_STRIDE))
    z, c = codec.latent.read({"ans ": payload[4 : 4 + size], "esc ": payload[4 + size :]},
                             (1, n // audio.Z_STRIDE), codec.check_header(header))
    cs = w.slice_channels
    anchors = codec.latent.parts(c.q.shape[1:])[0]
    cases = [(w.hs, z)] + [(net, c.q[: s * cs]) for s, net in enumerate(w.ctx, 1)]
    cases += [(net, c.q[s * cs : (s + 1) * cs] * anchors) for s, net in enumerate(w.spatial)]
    for net, x in cases:
        if net.session is None:
            pytest.skip("the integer networks run without ONNX Runtime here")
        assert net.exact_in_float32(x)
        np.testing.assert_array_equal(net(x), intnet.run(net.layers, x))


@pytest.fixture(scope="module")
def long_speech(speech):
    """6 s of speech: the clip, then again 6 dB quieter (kbps targets are for > 3 s)."""
    x = speech.samples
    return audio.Sound(np.concatenate([x, x * 0.5]), speech.sample_rate)


@pytest.mark.parametrize("kbps", [6, 8, 12, 16])
def test_kbps_target_within_5_percent(codec, long_speech, kbps):
    """6 kbps lies, for the real clip (not the synthetic one used without ../shared), inside the
    step in file size where the fill shape and signs start (level FILL_SHAPE_FROM): met at a
    higher level without them."""
    res = codec.compress(long_speech, kbps=kbps)
    got = len(res.data) * 8 / long_speech.seconds / 1000
    assert 0.95 * kbps <= got <= kbps * (1 + 1e-9)
    rate = fmt.unpack(res.data)[0].rate_dict()
    if kbps == 6 and (SHARED / "data/audio/speech/index.tsv").exists():
        assert rate["level_milli"] > audio.FILL_SHAPE_FROM and "fsh" not in rate and "fsg" not in rate


def test_silence_costs_little(codec, speech):
    res = codec.compress(np.zeros(10 * 16000, np.float32), sample_rate=16000, quality=75)
    longer = codec.compress(np.zeros(20 * 16000, np.float32), sample_rate=16000, quality=75)
    assert len(res.data) < 160  # the header and empty segments
    assert (len(longer.data) - len(res.data)) * 8 / 10 / 1000 < 0.05  # kbps of a silent segment
    assert not codec.decompress(res.data).samples.any()
    # speech, 4 s of silence, speech: the silence costs almost nothing, and stays silent
    x = speech.samples[:, 0]
    gap = np.concatenate([x, np.zeros(4 * 16000, np.float32), x])
    with_gap = len(codec.compress(gap, sample_rate=16000, quality=75).data)
    without = len(codec.compress(np.concatenate([x, x]), sample_rate=16000, quality=75).data)
    assert (with_gap - without) * 8 / 4 / 1000 < 1.2  # kbps over the gap (measured: 0.70)


def test_learned_postfilter_brings_the_decode_closer(codec, speech):
    """The default decoder (the learned fill and the learned post-filter trained on it) against
    the same tokens decoded with neither (the noise fill alone): a lower log-mel distance to the
    original at a low and a middle rate, and the decode's length kept."""
    from tokc.metrics.audio import log_mel_distance

    x = speech.samples[:, 0]
    for quality in (20, 60):
        data = codec.compress(speech, quality=quality).data
        header, chunks = fmt.unpack(data)
        assert header.rate_dict()["lpf"] == audio.LEARNED_POSTFILTER
        assert header.rate_dict()["lnf"] == audio.LEARNED_FILL
        shaped = header.rate_dict()["level_milli"] >= audio.FILL_SHAPE_FROM
        assert header.rate_dict().get("fsh") == (audio.FILL_SHAPE if shaped else None)
        assert header.rate_dict().get("fsg") == (audio.FILL_SIGNS if shaped else None)
        coded = {k: header.rate_dict()[k] for k in ("level_milli", "lbg")}
        plain = fmt.pack(dataclasses.replace(header, rate=coded),
                         [c for c in chunks if c.tag == audio.TAG])
        with_pf = codec.decompress(data).samples[:, 0]
        without = codec.decompress(plain).samples[:, 0]
        assert with_pf.shape == without.shape == x.shape
        assert log_mel_distance(x, with_pf, 16000) < 0.95 * log_mel_distance(x, without, 16000)


@pytest.mark.slow
def test_one_hour_file_decodes_streaming_in_bounded_memory(codec, speech, tmp_path):
    """A one-hour file (one coded 2 s segment repeated: each segment's entropy coding stands
    alone) decodes through `tokc decompress -o x.wav` in under 500 MB peak RSS."""
    x = np.resize(speech.samples[:, 0], audio.SEGMENT * codec.weights.hop)  # 2 s at 16 kHz
    header, chunks = fmt.unpack(codec.compress(x, sample_rate=16000, quality=50).data)
    seconds = 3600
    n = seconds * 16000
    frames = audio.dsp.frames_for(n, codec.weights.hop, audio.Z_STRIDE)
    # 2 s code 104 frames: a full segment, then one of 4 frames; so do 3600 s (180,004 frames)
    # (each 'seg ' chunk with its 'fsh ' and 'fsg ' chunks: q 50 is above FILL_SHAPE_FROM)
    assert header.rate_dict()["fsh"] == audio.FILL_SHAPE and header.rate_dict()["fsg"] == audio.FILL_SIGNS
    assert [c.tag for c in chunks] == [audio.TAG, audio.SHAPE_TAG, audio.SIGN_TAG] * 2 and chunks[0].payload
    big = fmt.pack(dataclasses.replace(header, num_samples=n),
                   chunks[:3] * (audio.segment_count(frames) - 1) + chunks[3:])
    src, out = tmp_path / "hour.tokc", tmp_path / "hour.wav"
    src.write_bytes(big)
    run = ("import resource, sys\n"
           "from tokc.cli import main\n"
           "sys.argv = ['tokc', 'decompress', sys.argv[1], '-o', sys.argv[2]]\n"
           "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
           f"print({PEAK_KIB})\n")  # ru_maxrss would say 626-709 MB: peak_rss.py
    r = subprocess.run([sys.executable, "-c", run, str(src), str(out)], capture_output=True,
                       text=True, timeout=1200)
    assert r.returncode == 0, r.stderr
    peak_mb = int(r.stdout.split()[-1]) / 1024
    print(f"one hour decoded: peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 500, f"peak RSS {peak_mb:.0f} MB"
    import soundfile

    info = soundfile.info(str(out))
    assert info.frames == n and info.samplerate == 16000
