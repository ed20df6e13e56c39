"""What a first GPU run would otherwise hit (issue 20), checked here: indices validated before
the inverse kernels, the APG reduction's grid on axis 0, launches on the tensors' device,
the splat register report."""

import pytest
import torch

import tokc.kernels as K
from tokc.kernels import _dispatch


@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_out_of_range_indices_raise_before_any_kernel(impl, device, request):
    if impl == "triton":
        request.getfixturevalue("needs_triton")
    cb = torch.randn(16, 4, device=device)
    ok = torch.tensor([0, 15], device=device)
    assert K.indices_to_codes(ok, cb, impl=impl).shape == (2, 4)
    for bad in ([0, 16], [-1, 3]):
        with pytest.raises(IndexError, match=r"codebook indices must be in \[0, 16\)"):
            K.indices_to_codes(torch.tensor(bad, device=device), cb, impl=impl)
    levels = (8, 5, 5, 5)  # 1000 codes
    assert K.fsq_indices_to_codes(torch.tensor([0, 999], device=device), levels, impl=impl).shape == (2, 4)
    with pytest.raises(IndexError, match=r"FSQ indices must be in \[0, 1000\)"):
        K.fsq_indices_to_codes(torch.tensor([1000], device=device), levels, impl=impl)
    with pytest.raises(IndexError, match="FSQ"):
        K.fsq_indices_to_codes(torch.tensor([-7], device=device), levels, impl=impl)
    with pytest.raises(IndexError, match=r"LFQ indices must be in \[0, 256\)"):
        K.lfq_indices_to_codes(torch.tensor([[3, 256]], device=device), 8, impl=impl)
    with pytest.raises(TypeError, match="integers"):
        K.indices_to_codes(torch.tensor([0.0], device=device), cb, impl=impl)


def test_apg_reduction_grid_is_on_axis_0(needs_triton):
    from tokc.kernels.flow_step import triton as flow

    grid, nb = flow.apg_sums_grid(3, 70_000_000, 1024)  # > 65,535 blocks a sample
    assert grid == (3 * nb,) and nb == -(-70_000_000 // 1024) > 65_535


def test_device_guard():
    import contextlib

    assert isinstance(_dispatch.device_guard(torch.zeros(1)), contextlib.nullcontext)
    if torch.cuda.is_available():
        assert isinstance(_dispatch.device_guard(torch.zeros(1, device="cuda")), torch.cuda.device)


def test_splat_register_report_names_every_kernel(needs_triton):
    from tokc.kernels.splat import triton as splat

    report = splat.register_report(channels=8, gaussians=32, size=32)
    assert set(report) == {"forward", "backward_params", "backward_features"}
    for entry in report.values():  # None under the interpreter (nothing is compiled)
        assert entry is None or {"n_regs", "n_spills"} <= set(entry)
