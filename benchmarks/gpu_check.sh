#!/usr/bin/env bash
# The three-minute GPU check (issue 20): one command, one line per check, results in $OUT.
#
#   bash benchmarks/gpu_check.sh           # from the repository root; OUT defaults to ./gpu_check_out
#
# Runs benchmarks/gpu_check.py (env, compiled kernel tests, FSQ exactness over 1e7 elements,
# an APG step above 67 M elements, splat registers/spills, Triton/torch timing ratios, and
# TensorRT's parse of an s8s8 g_s and an fp16 g_s engine where TensorRT exists) within a
# 230 s budget. Without a GPU every GPU check prints `skip` with its reason (the dry run).
# The longer export and runtime check (fp16/int8 exports, torch CUDA and onnxruntime-gpu
# against ONNX Runtime CPU, bench latency --device cuda) is benchmarks/gpu_runtime_check.sh.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-./gpu_check_out}
mkdir -p "$OUT"
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
    timeout 280 "${PY:-python3}" benchmarks/gpu_check.py --out "$OUT" "$@" | tee "$OUT/summary.txt"
