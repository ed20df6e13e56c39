"""`tokc bench compare SOUND -b KBPS` (the README demo's audio half): tokc next to Opus."""

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("pesq")


def test_compare_audio_rows(tiny_audio_weights, real_speech):
    from tokc.bench.compare import compare_audio, format_audio_rows

    rows = compare_audio(real_speech, 64, ["opus-voip"], weights=tiny_audio_weights)
    assert [r.codec for r in rows] == ["tokc", "opus-voip"]
    tokc, opus = rows
    assert tokc.kbps <= 64 * 1.001 and 0 < opus.kbps <= 64 * 1.2
    assert all(np.isfinite([r.pesq, r.stoi]).all() and 1 <= r.pesq <= 4.7 for r in rows)
    text = format_audio_rows(rows)
    assert "PESQ-WB" in text and "opus-voip" in text
