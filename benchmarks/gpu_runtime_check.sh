#!/usr/bin/env bash
# The longer GPU check of tokc's export and runtimes, under 10 minutes on one GPU (the
# three-minute kernel and TensorRT check is benchmarks/gpu_check.sh).
#
#   bash benchmarks/gpu_runtime_check.sh            # from the repository root
#   OUT=/some/dir IMAGE=photo.png CALIB=../shared/data/images/train bash benchmarks/gpu_runtime_check.sh
#
# Writes at most 8 files into $OUT (default ./gpu_check_out): summary.txt (one line per step,
# ok/FAILED/skipped), env.txt, checks.json, pytest.txt, latency_cuda.json/.md, log.txt.
# Exports and TensorRT engines go to $WORK (default /tmp/tokc-gpu-check).
#
# What it checks, each step on its own (a failed step does not stop the others):
#   1. environment: GPU, torch CUDA, onnxruntime providers, TensorRT, cuda-python
#   2. exports: fp16 and int8 (s8s8, the TensorRT-ready scheme) of the shipped weights
#   3. pytest -m "gpu or trt" tests/runtimes (the TensorRT engine test skips without TensorRT)
#   4. checks.json: torch CUDA fp32/fp16 and onnxruntime-gpu (when its CUDA provider exists)
#      against ONNX Runtime CPU fp32 on each part at 768x512, timings, and a .tokc file made on
#      the CPU decoded with the CUDA transforms (same tokens by construction; max pixel diff)
#   5. tokc bench latency --device cuda (TensorRT rows where TensorRT is installed)
#
# Needs tokc's core dependencies (numpy, onnxruntime, constriction, pillow, soundfile, click,
# safetensors) and torch with CUDA in $PY's environment; tokc itself is used from ./src.
# Where the machine cannot reach PyPI, carry wheels of the missing ones (e.g. constriction).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-./gpu_check_out}
WORK=${WORK:-/tmp/tokc-gpu-check}
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TOKC_ENGINE_CACHE="$WORK/engines"
: >"$OUT/summary.txt"
exec 3>>"$OUT/log.txt"

# `tokc` from ./src, as a program (timeout runs programs, not shell functions)
printf '#!/bin/sh\nexec "%s" -c "import sys; from tokc.cli import main; sys.argv[0] = \\"tokc\\"; main()" "$@"\n' \
    "$(command -v "$PY")" >"$WORK/tokc"
chmod +x "$WORK/tokc"
tokc() { "$WORK/tokc" "$@"; }

step() {  # step NAME SECONDS COMMAND...: run with a time limit, record ok/FAILED
    local name=$1 limit=$2 t0=$SECONDS
    shift 2
    echo "== $name" >&3
    if timeout "$limit" "$@" >&3 2>&1; then
        echo "ok      $name ($((SECONDS - t0)) s)" >>"$OUT/summary.txt"
    else
        echo "FAILED  $name (exit $?, $((SECONDS - t0)) s; see log.txt)" >>"$OUT/summary.txt"
    fi
}

# 1. environment
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 || echo "no nvidia-smi"
    "$PY" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for mod in ("numpy", "torch", "onnxruntime", "tensorrt", "constriction", "soundfile"):
    try:
        m = importlib.import_module(mod)
        print(mod, getattr(m, "__version__", "?"))
    except Exception as e:
        print(mod, "MISSING:", e)
try:
    from tokc.bench.latency import _import_compressai
    _import_compressai()
    print("compressai importable")
except Exception as e:
    print("compressai MISSING:", e)
try:
    import torch
    print("torch.cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception:
    pass
try:
    import onnxruntime
    print("onnxruntime providers", onnxruntime.get_available_providers())
except Exception:
    pass
try:
    from tokc.runtimes.trt import compute_capability
    print("compute capability (cuda-python)", compute_capability())
except Exception as e:
    print("cuda-python:", e)
EOF
} >"$OUT/env.txt" 2>&1
echo "ok      environment (env.txt)" >>"$OUT/summary.txt"

# a 768x512 test photo: $IMAGE, else Kodak beside the checkout, else a synthetic one
IMAGE=${IMAGE:-../shared/data/images/kodak/kodim23.png}
if [ ! -f "$IMAGE" ]; then
    IMAGE="$WORK/synthetic.png"
    "$PY" - "$IMAGE" <<'EOF'
import sys
import numpy as np
from PIL import Image
y, x = np.mgrid[0:512, 0:768] / 768
rng = np.random.default_rng(0)
img = np.stack([128 + 90 * np.sin(9 * x + 3 * y), 128 + 80 * np.cos(7 * y), 40 + 170 * x * y], -1)
img += rng.normal(0, 6, img.shape)
Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(sys.argv[1])
EOF
fi

# 2. exports (need torch + onnx; int8 calibrates on $CALIB, else on synthetic images)
CALIB=${CALIB:-../shared/data/images/train}
if [ ! -d "$CALIB" ]; then
    CALIB="$WORK/calib"
    mkdir -p "$CALIB"
    "$PY" - "$CALIB" <<'EOF'
import sys
import numpy as np
from PIL import Image
for i in range(10):
    y, x = np.mgrid[0:320, 0:320] / 320
    img = np.stack([128 + 90 * np.sin((3 + i) * x + 2 * y), 128 + 80 * np.cos((2 + i) * y), 60 + 150 * x * y], -1)
    img += np.random.default_rng(i).normal(0, 8, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(f"{sys.argv[1]}/c{i}.png")
EOF
fi
ONNX="$WORK/onnx"
mkdir -p "$ONNX"
cp src/tokc/weights/tokc-image-v1.onnx.json src/tokc/weights/tokc-image-v1.*.onnx "$ONNX"/ 2>/dev/null
rm -f "$ONNX"/tokc-image-v1.*.fp16.onnx "$ONNX"/tokc-image-v1.*.int8.onnx
step "export fp16" 150 "$WORK/tokc" export tokc-image-v1 -o "$ONNX" --precision fp16 -f
step "export int8 s8s8 (calibration: $CALIB)" 150 \
    "$WORK/tokc" export tokc-image-v1 -o "$ONNX" --precision int8 --int8-scheme s8s8 --calib "$CALIB" -f

# 3. the GPU / TensorRT tests
step "pytest -m 'gpu or trt' tests/runtimes" 180 \
    bash -c "'$PY' -m pytest -q -rs -p no:cacheprovider -m 'gpu or trt' tests/runtimes >'$OUT/pytest.txt' 2>&1"

# 4. torch CUDA and onnxruntime-gpu against ONNX Runtime CPU
step "checks.json (torch CUDA, onnxruntime-gpu)" 180 "$PY" - "$ONNX" "$IMAGE" "$OUT/checks.json" <<'EOF'
import json, sys, time
from pathlib import Path
import numpy as np
from tokc.compress.image import ImageCodec, ImageWeights, as_image, split_alpha_gray
from tokc.runtimes import base

onnx_dir, image_path, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
side = onnx_dir / "tokc-image-v1.onnx.json"
exp = base.read_export(side)
m = exp.parts["g_s"].channels
rng = np.random.default_rng(0)
inputs = {"g_a": rng.random((1, 3, 512, 768), np.float32),
          "h_a": rng.normal(0, 3, (1, m, 32, 48)).astype(np.float32),
          "g_s": rng.normal(0, 3, (1, m, 32, 48)).astype(np.float32)}
ref = {p: base.load(exp, p, "onnx", "cpu").run({exp.parts[p].input: x})[exp.parts[p].output]
       for p, x in inputs.items()}
report = {"parts": {}, "codec": {}}

def timed(rt, feed, n=10):
    rt.run(feed)
    ts = []
    for _ in range(n):
        t = time.perf_counter(); rt.run(feed); ts.append(time.perf_counter() - t)
    return 1000 * float(np.median(ts))

candidates = [("torch", "fp32", side), ("torch", "fp16", onnx_dir / "tokc-image-v1.fp16.onnx.json"),
              ("onnx", "fp32", side), ("tensorrt", "fp16", onnx_dir / "tokc-image-v1.fp16.onnx.json")]
for backend, precision, sc in candidates:
    key = f"{backend}-{precision}-cuda"
    try:
        e = base.read_export(sc)
        for p, x in inputs.items():
            rt = base.load(e, p, backend, "cuda", weights=Path("src/tokc/weights/tokc-image-v1.safetensors"))
            feed = {e.parts[p].input: x}
            y = rt.run(feed)[e.parts[p].output]
            err = float(np.abs(y - ref[p]).max())
            report["parts"].setdefault(key, {})[p] = {
                "max_abs_err_vs_ort_cpu": err, "rel": err / float(np.abs(ref[p]).max()),
                "median_ms": timed(rt, feed), "shape": list(y.shape)}
    except Exception as ex:
        report["parts"][key] = {"skipped": f"{type(ex).__name__}: {ex}"}

try:
    w = ImageWeights()
    rgb = split_alpha_gray(as_image(image_path))[0]
    cpu = ImageCodec(w, backend="onnx")
    data = cpu.compress(rgb, quality=75).data
    gpu = ImageCodec(w, transforms=base.load_parts(side, "torch", "cuda", weights=w.path))
    _, _, z1, c1 = cpu.decode_tokens(data)
    _, _, z2, c2 = gpu.decode_tokens(data)
    q1, q2 = c1.q, c2.q
    diff = np.abs(cpu.decompress(data).astype(int) - gpu.decompress(data)).max()
    gpu_data = gpu.compress(rgb, quality=75).data
    report["codec"] = {"bytes": len(data), "tokens_equal": bool((z1 == z2).all() and (q1 == q2).all()),
                       "max_pixel_diff_cpu_vs_cuda_decode": int(diff),
                       "cuda_encode_same_bytes_as_cpu": gpu_data == data}
except Exception as ex:
    report["codec"] = {"skipped": f"{type(ex).__name__}: {ex}"}
Path(out).write_text(json.dumps(report, indent=1) + "\n")
print(json.dumps(report, indent=1))
EOF

# 5. latency on the GPU (CompressAI row if compressai imports)
step "tokc bench latency --device cuda" 240 \
    "$WORK/tokc" bench latency "$IMAGE" --device cuda --onnx-dir "$ONNX" --threads 2 --repeats 10 \
    --out "$OUT" --name latency_cuda -f --note "benchmarks/gpu_check.sh on $(hostname)"

cat "$OUT/summary.txt"
