"""The ONNX graphs a tokenizer exposes, as data: each model module with an export has
``onnx_graphs(model, token_axis) -> list[Graph]`` and ``onnx_constraints(model) -> dict`` (what
the dynamic axes accept); :mod:`tokc.export.tokenizers` traces, validates and writes them.

Nothing here imports the export layer: a graph that is not traced as one module (WavTokenizer's
encoder) carries a ``build`` that is handed the tracer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

TRACED_BATCH, CHECK_BATCH = 2, 1  # batch of the example inputs traced / of the validation inputs


@dataclass(frozen=True)
class Graph:
    """One graph to export: the module, its named inputs/outputs with symbolic shapes."""

    part: str  # "encoder" | "decoder"
    module: object
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    input_shapes: tuple[tuple, ...]  # per input: ints and axis names
    output_shapes: tuple[tuple, ...]
    traced: tuple  # example inputs (torch tensors) for tracing
    dynamic_shapes: tuple  # torch.export Dims per input
    checked: tuple  # validation inputs (numpy), a shape other than the traced one
    # optional build(path, opset, export) writing the graph instead of tracing ``module``;
    # export(module, args, inputs, outputs, dynamic_shapes, path, opset) is the tracer
    build: Callable | None = None


def batch_dim():
    """The dynamic batch axis every graph has."""
    from torch.export import Dim

    return Dim("batch", min=1, max=1024)
