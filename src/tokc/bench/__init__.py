"""Benchmarks: rate-distortion curves and BD-rates (rd)."""

from tokc.bench.rd import (
    BDEntry,
    BDRange,
    BDTable,
    RangeBD,
    RDPoint,
    RDResult,
    ReportPaths,
    bd_table,
    range_bd,
    read_result,
    run_audio_rd,
    run_image_rd,
    write_report,
)

__all__ = [
    "BDEntry",
    "BDRange",
    "BDTable",
    "RangeBD",
    "RDPoint",
    "RDResult",
    "ReportPaths",
    "bd_table",
    "range_bd",
    "read_result",
    "run_audio_rd",
    "run_image_rd",
    "write_report",
]
