"""Benchmarks: rate-distortion curves and BD-rates (rd)."""

from tokc.bench.rd import (
    BDEntry,
    BDTable,
    RDPoint,
    RDResult,
    ReportPaths,
    bd_table,
    read_result,
    run_audio_rd,
    run_image_rd,
    write_report,
)

__all__ = [
    "BDEntry",
    "BDTable",
    "RDPoint",
    "RDResult",
    "ReportPaths",
    "bd_table",
    "read_result",
    "run_audio_rd",
    "run_image_rd",
    "write_report",
]
