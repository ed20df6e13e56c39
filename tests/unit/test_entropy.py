import numpy as np
import pytest

from tokc.compress import entropy


def test_quantize_pmf_rows_sum_and_floor():
    rng = np.random.default_rng(0)
    pmf = rng.random((5, 40)) ** 4
    pmf[0, :30] = 0
    freq = entropy.quantize_pmf(pmf)
    assert freq.dtype == np.int32
    assert (freq.sum(1) == 1 << entropy.PRECISION).all()
    assert freq.min() >= 1


def test_gaussian_tables_cover_and_escape():
    freq, off = entropy.gaussian_tables([0.11, 1.0, 20.0])
    assert list(off) == [2, 7, 111]
    for k, o in enumerate(off):
        row = freq[k, : 2 * o + 2]
        assert row.sum() == 1 << entropy.PRECISION and row.min() >= 1
        assert (freq[k, 2 * o + 2 :] == 0).all()
        assert row.argmax() == o  # the mode is the value 0


def test_roundtrip_with_escapes_and_two_parts():
    rng = np.random.default_rng(1)
    freq, off = entropy.gaussian_tables([0.5, 2.0, 8.0])
    tables = entropy.Tables(freq, off)
    table = rng.integers(0, 3, size=(7, 9, 11))
    values = np.round(rng.normal(size=table.shape) * np.array([0.5, 2, 8])[table]).astype(np.int64)
    values[0, 0, :3] = [1000, -5000, 1234567]  # escapes
    other = rng.integers(-3, 4, size=50)
    enc = entropy.Encoder()
    enc.add(tables, values, table)
    enc.add(tables, other, np.zeros(50, int))
    stream, escapes = enc.finish()
    assert escapes
    dec = entropy.Decoder(stream, escapes)
    np.testing.assert_array_equal(dec.decode(tables, table), values)
    np.testing.assert_array_equal(dec.decode(tables, np.zeros(50, int)), other)
    dec.finish()


def test_decoder_rejects_leftovers_and_bad_length():
    freq, off = entropy.gaussian_tables([1.0])
    tables = entropy.Tables(freq, off)
    enc = entropy.Encoder()
    enc.add(tables, np.arange(-3, 4), np.zeros(7, int))
    stream, esc = enc.finish()
    dec = entropy.Decoder(stream, esc)
    dec.decode(tables, np.zeros(3, int))  # fewer symbols than coded
    with pytest.raises(entropy.EntropyError):
        dec.finish()
    with pytest.raises(entropy.EntropyError):
        entropy.Decoder(stream[:-1], esc)


def test_absurd_escape_values_are_refused():
    freq, off = entropy.gaussian_tables([1.0])
    tables = entropy.Tables(freq, off)
    with pytest.raises(ValueError, match="cannot be coded"):
        entropy.Encoder().add(tables, np.array([1 << 40]), np.zeros(1, int))
    enc = entropy.Encoder()
    enc.add(tables, np.array([100]), np.zeros(1, int))
    stream, _ = enc.finish()
    dec = entropy.Decoder(stream, entropy._zigzag_varints([1 << 40]))
    with pytest.raises(entropy.EntropyError, match="out of range"):
        dec.decode(tables, np.zeros(1, int))
    from tokc.format import TokcFormatError

    assert issubclass(entropy.EntropyError, TokcFormatError)  # the CLI reports it cleanly


def test_cost_bits_are_the_tables_code_lengths():
    freq, offsets = entropy.gaussian_tables([0.5, 3.0])
    t = entropy.Tables(freq, offsets)
    rows = np.array([0, 0, 1, 1, 0])
    values = np.array([0, 1, -3, 2, 50])  # the last is beyond row 0's range: an escape
    got = t.cost_bits(values, rows)
    want = [-np.log2(freq[r, v + offsets[r]] / 2**16) for r, v in zip(rows[:4], values[:4])]
    np.testing.assert_allclose(got[:4], want)
    assert got[4] == pytest.approx(-np.log2(freq[0, 2 * offsets[0] + 1] / 2**16) + 16)
    assert got[0] < got[1]  # zero is the likeliest value of a zero-mean table


def test_a_stream_that_runs_out_is_an_error_not_free_symbols():
    """An exhausted ANS decoder returns each table's first symbol for free; asking for more
    tokens than were coded (a header with forged dimensions, a cut payload) must fail in
    decode, not yield a plane of -offset values for finish() to notice, if ever."""
    freq, off = entropy.gaussian_tables([0.3, 2.0])
    tables = entropy.Tables(freq, off)
    rng = np.random.default_rng(2)
    table = rng.integers(0, 2, size=4000)
    values = np.round(rng.normal(size=table.shape) * np.array([0.3, 2.0])[table]).astype(np.int64)
    enc = entropy.Encoder()
    enc.add(tables, values, table)
    stream, esc = enc.finish()
    dec = entropy.Decoder(stream, esc)
    np.testing.assert_array_equal(dec.decode(tables, table), values)  # all of it: fine
    with pytest.raises(entropy.ExhaustedError, match="ends before the tokens"):
        dec.decode(tables, np.ones(20_000, int))  # 20x more than the stream holds
    dec = entropy.Decoder(stream, esc)
    with pytest.raises(entropy.ExhaustedError):
        dec.decode(tables, np.tile(table, 20))
    assert issubclass(entropy.ExhaustedError, entropy.EntropyError)
