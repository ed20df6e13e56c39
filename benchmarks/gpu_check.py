"""The three-minute GPU check (issue 20): one line per check, results in $OUT/gpu_check.json.

    python benchmarks/gpu_check.py [--out DIR] [--budget SECONDS]

Checks, each on its own (a failure or timeout does not stop the others), in this order:
  env          versions, nvidia-smi
  kernel-tests pytest tests/kernels -m "not slow", compiled (TRITON_INTERPRET=0), TF32 off
  fsq-exact    FSQ Triton vs torch over 1e7 elements: code and index mismatch counts
  apg-large    one APG flow step above 67 M elements a sample (grid axis 0), vs the reference
  splat-regs   registers and spills per thread of the splat kernels (64 channels)
  timings      Triton / reference time ratios: VQ lookup (N 65,536, K 65,536, D 16), splat
               (4,096 Gaussians, 256x256, 32 channels), flow step (CFG, 8x3x256x256)
  trt          where TensorRT imports: parse an s8s8 int8 g_s (quantized here from the shipped
               fp32 graph), build an fp16 g_s engine, compare it with ONNX Runtime
Without a CUDA device every GPU check prints `skip` with the reason (the dry run CI does).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS: dict[str, dict] = {}


class Skip(Exception):
    pass


def check(name: str, seconds_left):
    def wrap(fn):
        def run():
            t0 = time.perf_counter()
            try:
                if seconds_left() <= 0:
                    raise Skip("the check's time budget is spent")
                res = fn() or {}
                status, line = "ok", res.pop("line", "")
            except Skip as e:
                status, line, res = "skip", str(e), {}
            except Exception as e:  # a failed check is reported, the others still run
                status, line, res = "FAILED", f"{type(e).__name__}: {e}"[:300], {}
            dt = time.perf_counter() - t0
            RESULTS[name] = {"status": status, "seconds": round(dt, 1), "line": line, **res}
            print(f"{status:7s} {name:13s} {dt:6.1f} s  {line}", flush=True)
        return run
    return wrap


def need_cuda():
    import torch

    if not torch.cuda.is_available():
        raise Skip("no CUDA device")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise Skip("TRITON_INTERPRET is set: the kernels would not be compiled")
    try:
        import triton  # noqa: F401
    except ImportError:
        raise Skip("triton is not installed") from None
    return torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_check_out")))
    ap.add_argument("--budget", type=float, default=230, help="seconds for all checks")
    args = ap.parse_args()
    start = time.perf_counter()

    def left() -> float:
        return args.budget - (time.perf_counter() - start)

    @check("env", left)
    def env():
        import numpy
        import onnxruntime

        info = {"python": platform.python_version(), "numpy": numpy.__version__,
                "onnxruntime": onnxruntime.__version__}
        for mod in ("torch", "triton", "tensorrt"):
            try:
                info[mod] = __import__(mod).__version__
            except Exception as e:
                info[mod] = f"missing ({type(e).__name__})"
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            info["gpu"] = smi.stdout.strip() or smi.stderr.strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            info["gpu"] = f"no nvidia-smi ({type(e).__name__})"
        return {**info, "line": ", ".join(f"{k} {v}" for k, v in info.items())}

    @check("kernel-tests", left)
    def kernel_tests():
        need_cuda()
        env_vars = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONPATH": str(ROOT / "src")}
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "tests/kernels", "-m", "not slow"], cwd=ROOT, env=env_vars,
                             capture_output=True, text=True, timeout=max(10, min(120, left())))
        tail = res.stdout.strip().splitlines()[-1:] or [res.stderr.strip()[-200:]]
        (args.out / "kernel_tests.txt").write_text(res.stdout + res.stderr)
        if res.returncode:
            raise RuntimeError(f"pytest exit {res.returncode}: {tail[0]}")
        return {"line": tail[0]}

    @check("fsq-exact", left)
    def fsq_exact():
        torch = need_cuda()
        import tokc.kernels as K

        levels = (8, 8, 8, 5, 5, 5)
        gen = torch.Generator(device="cuda").manual_seed(0)
        z = torch.randn(10_000_000 // len(levels), len(levels), device="cuda", generator=gen) * 2
        c_t, i_t = K.fsq_quantize(z, levels, impl="triton")
        c_r, i_r = K.fsq_quantize(z, levels, impl="torch")
        back_t = K.fsq_indices_to_codes(i_r, levels, impl="triton")
        out = {"elements": z.numel(), "code_mismatches": int((c_t != c_r).sum()),
               "index_mismatches": int((i_t != i_r).sum()),
               "inverse_mismatches": int((back_t != c_r).sum())}
        out["line"] = ", ".join(f"{k} {v}" for k, v in out.items())
        return out

    @check("apg-large", left)
    def apg_large():
        torch = need_cuda()
        import tokc.kernels as K

        n = 70_000_000  # one sample: > 65,535 blocks of 1,024
        gen = torch.Generator(device="cuda").manual_seed(0)
        x, vc, vu = (torch.randn(1, n, device="cuda", generator=gen) for _ in range(3))
        kw = dict(mode="apg", apg_eta=0.5, apg_norm_threshold=0.0)
        got = K.flow_step(x, vc, vu, 0.05, 3.0, impl="triton", **kw)
        ref = K.flow_step(x, vc, vu, 0.05, 3.0, impl="torch", **kw)
        err = float((got - ref).abs().max())
        return {"elements": n, "max_abs_err": err, "line": f"{n} elements, max abs err {err:.3g}"}

    @check("splat-regs", left)
    def splat_regs():
        need_cuda()
        from tokc.kernels.splat import triton as splat

        rep = splat.register_report(channels=64)
        return {"report": rep, "line": "; ".join(f"{k}: {v['n_regs']} regs, {v['n_spills']} spills"
                                                 for k, v in rep.items() if v)}

    @check("timings", left)
    def timings():
        torch = need_cuda()
        from triton.testing import do_bench

        import tokc.kernels as K

        gen = torch.Generator(device="cuda").manual_seed(0)
        x = torch.randn(65536, 16, device="cuda", generator=gen)
        cb = torch.randn(65536, 16, device="cuda", generator=gen)
        m = 4096
        means = torch.rand(m, 2, device="cuda", generator=gen) * 2 - 1
        sig = torch.rand(m, 2, device="cuda", generator=gen) * 0.03 + 0.005
        rho = torch.zeros(m, device="cuda")
        feat = torch.randn(m, 32, device="cuda", generator=gen)
        fx, fc, fu = (torch.randn(8, 3, 256, 256, device="cuda", generator=gen) for _ in range(3))
        cases = {
            "vq_lookup": lambda impl: K.vq_lookup(x, cb, impl=impl),
            "splat": lambda impl: K.splat(means, sig, rho, feat, 256, 256, impl=impl),
            "flow_step": lambda impl: K.flow_step(fx, fc, fu, 0.05, 3.0, impl=impl),
        }
        out = {}
        for name, fn in cases.items():
            t_tri = do_bench(lambda fn=fn: fn("triton"))
            t_ref = do_bench(lambda fn=fn: fn("torch"))
            out[name] = {"triton_ms": t_tri, "torch_ms": t_ref, "speedup": t_ref / t_tri}
        return {**out, "line": ", ".join(f"{k} {v['speedup']:.2f}x" for k, v in out.items())}

    @check("trt", left)
    def trt():
        need_cuda()
        try:
            import tensorrt
        except ImportError:
            raise Skip("TensorRT is not installed") from None
        import numpy as np

        from tokc.export.onnx import to_int8
        from tokc.runtimes import base
        from tokc.runtimes import trt as trt_rt

        side = ROOT / "src/tokc/weights/tokc-image-v1.onnx.json"
        exp = base.read_export(side)
        part = exp.parts["g_s"]
        m = part.channels
        rng = np.random.default_rng(0)
        calib = [rng.normal(0, 3, (1, m, 24, 24)).astype(np.float32) for _ in range(4)]
        with tempfile.TemporaryDirectory() as tmp:
            q = Path(tmp) / "g_s.s8s8.onnx"
            to_int8(part.path, q, part.input, calib, "s8s8")
            logger = tensorrt.Logger(tensorrt.Logger.WARNING)
            network = tensorrt.Builder(logger).create_network(trt_rt.network_flags(tensorrt))
            parser = tensorrt.OnnxParser(network, logger)
            if not parser.parse(q.read_bytes()):
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise RuntimeError(f"the s8s8 g_s does not parse: {errors}")
            fp16 = Path(tmp) / "fp16"
            fp16.mkdir()
            y = rng.normal(0, 3, (1, m, 48, 48)).astype(np.float32)
            ref = base.load(exp, "g_s", "onnx").run({part.input: y})[part.output]
            t0 = time.perf_counter()
            rt = trt_rt.TensorRTRuntime(trt_rt.cached_engine(part.path, "fp16", trt_rt.profile_shapes(part), fp16),
                                        "fp16", trt_rt.profile_shapes(part))
            build_s = time.perf_counter() - t0
            got = rt.run({part.input: y})[part.output]
            rt.close()
        err = float(np.abs(got - ref).max())
        return {"tensorrt": tensorrt.__version__, "fp16_engine_build_s": round(build_s, 1),
                "fp16_max_abs_err_vs_ort": err,
                "line": f"s8s8 g_s parses; fp16 g_s engine built in {build_s:.0f} s, max abs err {err:.3g}"}

    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "src"))
    for fn in (env, kernel_tests, fsq_exact, apg_large, splat_regs, timings, trt):
        fn()
    (args.out / "gpu_check.json").write_text(json.dumps(RESULTS, indent=1, default=str) + "\n")
    failed = [k for k, v in RESULTS.items() if v["status"] == "FAILED"]
    print(f"{len(RESULTS)} checks, {len(failed)} failed, {time.perf_counter() - start:.0f} s; "
          f"{args.out / 'gpu_check.json'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
