"""fsq_quantize / lfq_quantize and their inverses: Triton vs reference, exact indices."""

import math

import pytest
import torch

from tokc.kernels import (
    fsq_codes_to_indices,
    fsq_indices_to_codes,
    fsq_quantize,
    lfq_codes_to_indices,
    lfq_indices_to_codes,
    lfq_quantize,
)
from tokc.testing import assert_close, assert_exact

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LEVELS = [
    [8, 8, 8, 5, 5, 5],  # 64000 codes (FlexTok)
    [7, 5, 5, 5, 5],  # 4375
    [8, 5, 5, 5],  # 1000
    [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],  # odd dim count, every parity, 2^35 codes
]
LEADING = [(1,), (5,), (5, 123), (4099,)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead", LEADING)
@pytest.mark.parametrize("levels", LEVELS, ids=lambda lv: "x".join(map(str, lv)))
def test_fsq_matches_reference(gen, device, needs_triton, levels, lead, dtype):
    z = (torch.randn(*lead, len(levels), generator=gen) * 2).to(dtype).to(device)
    codes, idx = fsq_quantize(z, levels, impl="triton")
    ref_codes, ref_idx = fsq_quantize(z, levels, impl="torch")
    assert_exact(idx, ref_idx, "indices")
    assert_close(codes, ref_codes)
    assert idx.shape == lead and codes.shape == z.shape and codes.dtype == dtype
    back = fsq_indices_to_codes(idx, levels, dtype, impl="triton")
    assert_exact(back, fsq_indices_to_codes(idx, levels, dtype, impl="torch"))
    assert_close(back, ref_codes)


@pytest.mark.parametrize("levels", LEVELS, ids=lambda lv: "x".join(map(str, lv)))
def test_fsq_reference_round_trip(gen, levels):
    z = torch.randn(4099, len(levels), generator=gen) * 3
    codes, idx = fsq_quantize(z, levels, impl="torch")
    assert 0 <= int(idx.min()) and int(idx.max()) < math.prod(levels)
    assert torch.equal(fsq_codes_to_indices(codes, levels), idx)
    assert torch.equal(fsq_indices_to_codes(idx, levels), codes)
    half = torch.tensor([lv // 2 for lv in levels], dtype=torch.float32)
    assert torch.equal(codes * half, torch.round(codes * half))  # on the grid
    assert codes.abs().max() <= 1


def test_fsq_reference_known_values():
    # odd L=3: codes {-1, 0, 1}; even L=4: {-1, -0.5, 0, 0.5} (the tanh bound is asymmetric)
    z = torch.tensor([[-50.0, -50.0], [0.0, 0.0], [50.0, 50.0]])
    codes, idx = fsq_quantize(z, [3, 4], impl="torch")
    assert codes.tolist() == [[-1.0, -1.0], [0.0, 0.0], [1.0, 0.5]]
    # digit = code*half + half; index = d0 + 3*d1 (first dimension least significant)
    assert idx.tolist() == [0 + 3 * 0, 1 + 3 * 2, 2 + 3 * 3]
    assert fsq_indices_to_codes(torch.tensor([7]), [3, 4]).tolist() == [[0.0, 0.0]]


def test_fsq_triton_extremes(device, needs_triton):
    levels = [8, 5, 5, 5]
    z = torch.tensor([[-1e4, 1e4, 0.0, -0.0], [float(2**-20), 3.0, -3.0, 1e-30]]).to(device)
    codes, idx = fsq_quantize(z, levels, impl="triton")
    ref_codes, ref_idx = fsq_quantize(z, levels, impl="torch")
    assert_exact(idx, ref_idx)
    assert_exact(codes, ref_codes)


@pytest.mark.slow
def test_fsq_large(gen, device, needs_triton):
    levels = LEVELS[0]
    z = torch.randn(64, 4099, len(levels), generator=gen).to(device)
    assert_exact(fsq_quantize(z, levels, impl="triton")[1], fsq_quantize(z, levels, impl="torch")[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead", LEADING)
@pytest.mark.parametrize("group_bits,groups", [(1, 5), (8, 4), (13, 3), (16, 2), (18, 1)])
def test_lfq_matches_reference(gen, device, needs_triton, group_bits, groups, lead, dtype):
    z = torch.randn(*lead, group_bits * groups, generator=gen)
    z[..., 0] = 0.0  # zero maps to bit 0 / code -1
    z = z.to(dtype).to(device)
    codes, idx = lfq_quantize(z, group_bits, impl="triton")
    ref_codes, ref_idx = lfq_quantize(z, group_bits, impl="torch")
    assert_exact(idx, ref_idx, "indices")
    assert_exact(codes, ref_codes, "codes")
    assert idx.shape == (*lead, groups)
    back = lfq_indices_to_codes(idx, group_bits, dtype, impl="triton")
    assert_exact(back, ref_codes)
    assert_exact(lfq_indices_to_codes(idx, group_bits, dtype, impl="torch"), ref_codes)


def test_lfq_reference_lsb_first():
    z = torch.tensor([[0.3, -1.0, 2.0, 0.1, -0.2, 0.0, -5.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    codes, idx = lfq_quantize(z, 8, impl="torch")
    assert idx.tolist() == [[1 + 4 + 8, 255]]
    assert codes[0, :8].tolist() == [1, -1, 1, 1, -1, -1, -1, -1]
    assert torch.equal(lfq_codes_to_indices(codes, 8), idx)
    assert torch.equal(lfq_indices_to_codes(idx, 8), codes)


def test_bad_arguments():
    with pytest.raises(ValueError, match="multiple"):
        lfq_quantize(torch.zeros(2, 12), 8, impl="torch")
    with pytest.raises(ValueError, match="len\\(levels\\)"):
        fsq_quantize(torch.zeros(2, 3), [8, 5], impl="torch")
    with pytest.raises(ValueError, match=">= 2"):
        fsq_quantize(torch.zeros(2, 2), [8, 1], impl="torch")
