"""Kernels for the hot paths of tokenizer inference: each op has a plain-torch reference (the
spec, and what export traces) and an optional Triton implementation.

``op(..., impl=None)`` runs Triton on CUDA tensors and the reference elsewhere;
``TOKC_KERNEL_IMPL=triton|torch`` (or ``impl=``) forces one, and a forced choice that cannot be
honoured raises. Triton is optional: ``pip install 'tokc-codec[gpu]'``.
"""

from tokc.kernels._dispatch import triton_available
from tokc.kernels.flow_step import flow_decode, flow_step
from tokc.kernels.fsq import fsq_codes_to_indices, fsq_indices_to_codes, fsq_quantize
from tokc.kernels.lfq import lfq_codes_to_indices, lfq_indices_to_codes, lfq_quantize
from tokc.kernels.splat import splat
from tokc.kernels.vq_lookup import indices_to_codes, vq_lookup

__all__ = [
    "vq_lookup",
    "indices_to_codes",
    "fsq_quantize",
    "fsq_codes_to_indices",
    "fsq_indices_to_codes",
    "lfq_quantize",
    "lfq_codes_to_indices",
    "lfq_indices_to_codes",
    "splat",
    "flow_step",
    "flow_decode",
    "triton_available",
]
