"""A minimal writer of ONNX models (protobuf), for the graphs the codec writes from its weights
at load: the integer networks (tokc.compress.intnet_ort) and the synthesis of archived weights
(tokc.compress.versions). The core install has onnxruntime, not the `onnx` package.
"""

from __future__ import annotations

import numpy as np

# onnx.proto enums
FLOAT, INT64, DOUBLE = 1, 7, 11  # TensorProto.DataType
ATTR_INT, ATTR_INTS, ATTR_STRING = 2, 7, 3  # AttributeProto.AttributeType


def varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # negative int64: two's complement, ten bytes
    out = bytearray()
    while True:
        out.append(v & 0x7F | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def field(number: int, value: bytes | str | int) -> bytes:
    """One protobuf field: a varint, or length-delimited bytes (a string, a sub-message)."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def tensor(name: str, array: np.ndarray) -> bytes:  # TensorProto, float32, float64 or int64
    elem, dtype = {np.dtype(np.float64): (DOUBLE, "<f8"), np.dtype(np.int64): (INT64, "<i8")}.get(
        array.dtype, (FLOAT, "<f4"))
    a = np.ascontiguousarray(array, dtype=dtype)
    return b"".join(field(1, d) for d in a.shape) + field(2, elem) + field(8, name) + field(9, a.tobytes())


def attribute(name: str, value: int | str | list[int]) -> bytes:  # AttributeProto
    if isinstance(value, list):
        return field(1, name) + b"".join(field(8, v) for v in value) + field(20, ATTR_INTS)
    if isinstance(value, str):
        return field(1, name) + field(4, value) + field(20, ATTR_STRING)
    return field(1, name) + field(3, value) + field(20, ATTR_INT)


def node(op: str, inputs: list[str], output: str, **attributes) -> bytes:  # NodeProto
    return (b"".join(field(1, i) for i in inputs) + field(2, output) + field(4, op)
            + b"".join(field(5, attribute(k, v)) for k, v in attributes.items()))


def value_info(name: str, dims: tuple[int | str, ...]) -> bytes:  # ValueInfoProto, float32
    shape = b"".join(field(1, field(1, d) if isinstance(d, int) else field(2, d)) for d in dims)
    return field(1, name) + field(2, field(1, field(1, FLOAT) + field(2, shape)))
