"""vq_lookup / indices_to_codes: Triton vs reference, exact indices.

Data are small integers so every dot product is exact in fp32 whatever the summation order:
the two implementations then see identical distances, ties are common, and equality of the
indices checks the fused argmin and its lowest-index tie-break exactly.
"""

import pytest
import torch

from tokc.kernels import indices_to_codes, vq_lookup
from tokc.kernels.vq_lookup.reference import distances, prepare_codebook
from tokc.testing import assert_exact

# (N, K, D): N in {1, 5, 123, 4099}; K not a multiple of any block (the interpreter's K block is
# 256, the GPU's 64); D in {12, 64, 512}
SHAPES = [(1, 77, 12), (5, 300, 64), (123, 1000, 12), (37, 129, 512), (4099, 300, 64), (123, 77, 512)]
SLOW_SHAPES = [(4099, 4099, 512), (4099, 16411, 64)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def int_data(gen, n, k, d, dtype, device):
    x = torch.randint(-4, 5, (n, d), generator=gen)
    cb = torch.randint(-4, 5, (k, d), generator=gen)
    return x.to(dtype).to(device), cb.to(dtype).to(device)


def unit_norm_codebook(gen, k, d, dtype, device):
    """Rows with four ±1 entries times a power of two: normalising them is exact (±0.5)."""
    cb = torch.zeros(k, d)
    for i in range(k):
        cols = torch.randperm(d, generator=gen)[:4]
        cb[i, cols] = torch.randint(0, 2, (4,), generator=gen).float() * 2 - 1
    cb *= 2.0 ** torch.randint(-2, 3, (k, 1), generator=gen).float()
    return cb.to(dtype).to(device)


# bf16 (cast to fp32 for the interpreter) on one shape
EUCLIDEAN_CASES = [(*s, dt) for s in SHAPES for dt in DTYPES[:2]] + [(*SHAPES[1], torch.bfloat16)]


@pytest.mark.parametrize("n,k,d,dtype", EUCLIDEAN_CASES)
def test_euclidean_matches_reference(gen, device, needs_triton, n, k, d, dtype):
    x, cb = int_data(gen, n, k, d, dtype, device)
    got = vq_lookup(x, cb, "euclidean", impl="triton")
    assert_exact(got, vq_lookup(x, cb, "euclidean", impl="torch"), f"{n}x{k}x{d} {dtype}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("n,k,d", SHAPES)
def test_cosine_matches_reference(gen, device, needs_triton, n, k, d, dtype):
    x = torch.randint(-4, 5, (n, d), generator=gen).to(dtype).to(device)
    cb = unit_norm_codebook(gen, k, d, dtype, device)
    got = vq_lookup(x, cb, "cosine", impl="triton")
    assert_exact(got, vq_lookup(x, cb, "cosine", impl="torch"), f"{n}x{k}x{d} {dtype}")


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("n,k,d", SLOW_SHAPES)
def test_large_matches_reference(gen, device, needs_triton, n, k, d, metric):
    if device == "cpu" and metric == "cosine":
        pytest.skip("the euclidean case covers these sizes in the CPU interpreter; cosine on a GPU")
    x, cb = int_data(gen, n, k, d, torch.float32, device)
    if metric == "cosine":
        cb = unit_norm_codebook(gen, k, d, torch.float32, device)
    assert_exact(vq_lookup(x, cb, metric, impl="triton"), vq_lookup(x, cb, metric, impl="torch"))


@pytest.mark.parametrize("metric", [
    "euclidean",
    # known defect (issue 20, kernel numerics): under the Triton 3.5 interpreter with this venv's
    # numpy 2.4, the cosine kernel's tied scores differ in the last bit between tiles, so a
    # later copy of a tied code wins; passed with the earlier venv. Not a strict xfail: it
    # must be fixed in the kernel, not hidden, and XPASS shows when it is.
    pytest.param("cosine", marks=pytest.mark.xfail(reason="cosine ties across tiles: issue 20")),
])
def test_ties_go_to_lowest_index_across_tiles(gen, device, needs_triton, metric):
    base = torch.randint(-3, 4, (300, 12), generator=gen).float()
    cb = torch.cat([base, base, base]).to(device)  # every minimum is tied 3x, 300 apart
    x = torch.randint(-3, 4, (123, 12), generator=gen).float().to(device)
    for impl in ("torch", "triton"):
        got = vq_lookup(x, cb, metric, impl=impl)
        assert int(got.max()) < 300, impl
    assert_exact(vq_lookup(x, cb, metric, impl="triton"), vq_lookup(x, cb, metric, impl="torch"))


def test_random_floats_agree_up_to_near_ties(gen, device, needs_triton):
    """Gaussian data: any disagreement must be a near-tie in the reference's distances."""
    x = torch.randn(4099, 64, generator=gen).to(device)
    cb = torch.randn(300, 64, generator=gen).to(device)
    a = vq_lookup(x, cb, impl="triton")
    b = vq_lookup(x, cb, impl="torch")
    c, bias = prepare_codebook(cb, "euclidean")
    dist = distances(x, c, bias, "euclidean")
    da, db = dist.gather(1, a[:, None]), dist.gather(1, b[:, None])
    assert torch.all((da - db).abs() <= 1e-4 * dist.abs().max())
    assert (a != b).float().mean() < 1e-3


def test_reference_matches_cdist_argmin(gen):
    x = torch.randn(123, 12, generator=gen, dtype=torch.float64)
    cb = torch.randn(77, 12, generator=gen, dtype=torch.float64)
    assert torch.equal(vq_lookup(x.float(), cb.float(), impl="torch"), torch.cdist(x, cb).argmin(1))
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(cb, dim=1).T
    assert torch.equal(vq_lookup(x.float(), cb.float(), "cosine", impl="torch"), cos.argmax(1))


def test_reference_ties_and_dtype(gen):
    cb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    x = torch.tensor([[0.5, 0.5], [2.0, 0.0]])
    got = vq_lookup(x, cb, impl="torch")
    assert got.dtype == torch.int64 and got.tolist() == [0, 0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (5,), (4099,), (3, 41)])
def test_indices_to_codes_matches_reference(gen, device, needs_triton, shape, dtype):
    cb = torch.randn(300, 12, generator=gen).to(dtype).to(device)
    idx = torch.randint(0, 300, shape, generator=gen).to(device)
    got = indices_to_codes(idx, cb, impl="triton")
    assert_exact(got, indices_to_codes(idx, cb, impl="torch"))
    assert got.shape == (*shape, 12)


def test_bad_arguments(gen):
    with pytest.raises(ValueError, match="metric"):
        vq_lookup(torch.zeros(2, 3), torch.zeros(4, 3), "manhattan")
    with pytest.raises(ValueError, match="expected"):
        vq_lookup(torch.zeros(2, 3), torch.zeros(4, 5), impl="torch")
