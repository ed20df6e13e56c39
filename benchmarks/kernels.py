"""Benchmark tokc's Triton kernels against their torch references (issue 5).

    python benchmarks/kernels.py [--out benchmarks/results] [--quick]

On a CUDA GPU with Triton: each kernel at realistic sizes (VQ N=65536, K=4096..262144,
D=12..512; splat M=128..4096 on 64x64..256x256; flow 256x256x3 batches), timed with
triton.testing.do_bench (median ms), achieved GB/s (minimum traffic) and TFLOP/s where
meaningful, speedup over the reference (and over torch cdist+argmin for VQ), plus a
correctness check of every case. Writes kernels_cuda.json and kernels_cuda.md.

Without a GPU: runs every kernel under Triton's CPU interpreter (TRITON_INTERPRET=1) at small
sizes and records correctness only (kernels_cpu.json/.md); GPU speed is then unmeasured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

GPU = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0")
if not GPU:
    os.environ["TRITON_INTERPRET"] = "1"  # before any kernel module is imported

from tokc import kernels as K  # noqa: E402
from tokc.testing import tolerance  # noqa: E402


def cdist_argmin(x, cb, metric):
    """The plain-torch baseline of the issue (cdist + argmin), chunked to stay under ~4 GiB."""
    if metric == "cosine":
        x, cb = torch.nn.functional.normalize(x, dim=1), torch.nn.functional.normalize(cb, dim=1)
    rows = max(1, (1 << 30) // cb.shape[0])
    return torch.cat([torch.cdist(x[i:i + rows], cb).argmin(1) for i in range(0, x.shape[0], rows)])


def max_err(a, b) -> float:
    return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0


# ---------------------------------------------------------------- cases
# each returns dict(name, params, triton=fn, reference=fn, [baseline=fn], check=fn(out, ref),
#                   bytes=int, flops=int|None)

def vq_case(n, k, d, metric, dev):
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(n, d, generator=g).to(dev)
    cb = torch.randn(k, d, generator=g).to(dev)

    def check(out, ref):
        return {"index_agreement": (out == ref).float().mean().item()}

    return dict(
        kernel="vq_lookup", params=dict(N=n, K=k, D=d, metric=metric, dtype="fp32"),
        triton=lambda: K.vq_lookup(x, cb, metric, impl="triton"),
        reference=lambda: K.vq_lookup(x, cb, metric, impl="torch"),
        baseline=lambda: cdist_argmin(x, cb, metric), check=check,
        bytes=4 * (n * d + k * d) + 8 * n, flops=2 * n * k * d)


def gather_case(n, k, d, dev):
    cb = torch.randn(k, d, device=dev)
    idx = torch.randint(0, k, (n,), device=dev)
    return dict(
        kernel="indices_to_codes", params=dict(N=n, K=k, D=d),
        triton=lambda: K.indices_to_codes(idx, cb, impl="triton"),
        reference=lambda: K.indices_to_codes(idx, cb, impl="torch"),
        check=lambda o, r: {"exact": bool(torch.equal(o, r))}, bytes=8 * n + 8 * n * d, flops=None)


def fsq_case(n, levels, dev):
    z = torch.randn(n, len(levels), device=dev)

    def check(o, r):
        return {"indices_exact": bool(torch.equal(o[1], r[1])), "codes_max_err": max_err(o[0], r[0])}

    return dict(
        kernel="fsq_quantize", params=dict(N=n, levels=levels),
        triton=lambda: K.fsq_quantize(z, levels, impl="triton"),
        reference=lambda: K.fsq_quantize(z, levels, impl="torch"),
        check=check, bytes=8 * z.numel() + 8 * n, flops=None)


def lfq_case(n, dim, group_bits, dev):
    z = torch.randn(n, dim, device=dev)

    def check(o, r):
        return {"indices_exact": bool(torch.equal(o[1], r[1])), "codes_exact": bool(torch.equal(o[0], r[0]))}

    return dict(
        kernel="lfq_quantize", params=dict(N=n, dim=dim, group_bits=group_bits),
        triton=lambda: K.lfq_quantize(z, group_bits, impl="triton"),
        reference=lambda: K.lfq_quantize(z, group_bits, impl="torch"),
        check=check, bytes=8 * z.numel() + 8 * n * dim // group_bits, flops=None)


def splat_case(m, h, w, c, dev, backward=False):
    g = torch.Generator(device="cpu").manual_seed(0)
    means = (torch.rand(m, 2, generator=g) * 2 - 1).to(dev)
    sig = (torch.rand(m, 2, generator=g) * 0.08 + 0.01).to(dev)
    rho = (torch.rand(m, generator=g) * 1.6 - 0.8).to(dev)
    f = torch.randn(m, c, generator=g).to(dev)
    params = [t.requires_grad_(backward) for t in (means, sig, rho, f)]
    go = torch.randn(h, w, c, generator=g).to(dev)

    def fn(impl):
        def run():
            out = K.splat(*params, h, w, impl=impl)
            if not backward:
                return out
            return (out, *torch.autograd.grad((out * go).sum(), params))
        return run

    def check(o, r):
        o, r = (o, r) if backward else ((o,), (r,))
        return {"max_rel_err": max(max_err(a, b) / max(1.0, b.abs().max().item()) for a, b in zip(o, r))}

    return dict(
        kernel="splat_fwd_bwd" if backward else "splat", params=dict(M=m, H=h, W=w, C=c),
        triton=fn("triton"), reference=fn("torch"), check=check,
        bytes=4 * (h * w * c * (2 if backward else 1) + m * (5 + c)), flops=None)


def flow_case(shape, mode, heun, dev):
    x, vc, vu, xp = (torch.randn(*shape, device=dev) for _ in range(4))
    kw = dict(mode=mode, x_pred=xp if heun else None, apg_eta=0.0)
    return dict(
        kernel="flow_step", params=dict(shape=list(shape), mode=mode, method="heun" if heun else "euler"),
        triton=lambda: K.flow_step(x, vc, vu, 0.05, 4.0, impl="triton", **kw),
        reference=lambda: K.flow_step(x, vc, vu, 0.05, 4.0, impl="torch", **kw),
        check=lambda o, r: {"max_err": max_err(o, r)},
        bytes=4 * x.numel() * (5 if heun else 4), flops=None)


def gpu_cases(quick: bool):
    d = "cuda"
    cases = []
    vq = [(65536, 4096, 12), (65536, 4096, 64), (65536, 16384, 64), (65536, 65536, 12),
          (65536, 65536, 64), (65536, 65536, 512), (65536, 262144, 12), (65536, 262144, 64)]
    if quick:
        vq = [(65536, 4096, 64), (65536, 65536, 64)]
    cases += [lambda a=a: vq_case(*a, "euclidean", d) for a in vq]
    cases += [lambda: vq_case(65536, 65536, 64, "cosine", d), lambda: gather_case(65536, 65536, 64, d)]
    cases += [lambda: fsq_case(1 << 20, [8, 8, 8, 5, 5, 5], d), lambda: lfq_case(1 << 18, 64, 8, d)]
    sp = [(128, 64, 64, 8), (1024, 128, 128, 8), (1024, 256, 256, 8), (4096, 256, 256, 8)]
    if quick:
        sp = sp[1:3]
    cases += [lambda a=a: splat_case(*a, d) for a in sp]
    cases += [lambda a=a: splat_case(*a, d, backward=True) for a in sp[1:3]]
    for b in (8, 32):
        for mode, heun in (("cfg", False), ("cfg", True), ("apg", False)):
            cases.append(lambda b=b, mode=mode, heun=heun: flow_case((b, 3, 256, 256), mode, heun, d))
    return cases


def cpu_cases():
    d = "cpu"
    return [
        lambda: vq_case(4099, 1000, 64, "euclidean", d), lambda: vq_case(123, 300, 512, "cosine", d),
        lambda: gather_case(4099, 1000, 64, d),
        lambda: fsq_case(4099, [8, 8, 8, 5, 5, 5], d), lambda: lfq_case(4099, 64, 8, d),
        lambda: splat_case(128, 64, 64, 8, d), lambda: splat_case(128, 64, 64, 8, d, backward=True),
        lambda: flow_case((2, 3, 256, 256), "cfg", False, d),
        lambda: flow_case((2, 3, 256, 256), "cfg", True, d),
        lambda: flow_case((2, 3, 256, 256), "apg", False, d),
    ]


# ---------------------------------------------------------------- runner

def run_case(make, gpu: bool) -> dict:
    row: dict = {}
    try:
        case = make()
        row = {"kernel": case["kernel"], "params": case["params"]}
        out, ref = case["triton"](), case["reference"]()
        row["check"] = case["check"](out, ref)
        del out, ref
        if gpu:
            from triton.testing import do_bench

            ms = do_bench(case["triton"], warmup=10, rep=50)
            ref_ms = do_bench(case["reference"], warmup=3, rep=30)
            row.update(ms=ms, ref_ms=ref_ms, speedup=ref_ms / ms, gbps=case["bytes"] / ms / 1e6)
            if case.get("flops"):
                row["tflops"] = case["flops"] / ms / 1e9
            if "baseline" in case:
                row["baseline_ms"] = do_bench(case["baseline"], warmup=3, rep=30)
                row["speedup_vs_baseline"] = row["baseline_ms"] / ms
            torch.cuda.empty_cache()
    except Exception as e:  # one failing case must not stop the others
        row["error"] = f"{type(e).__name__}: {e}"[:500]
    return row


def markdown(rows, meta) -> str:
    lines = [f"# tokc kernels — {meta['device']}", "", f"{meta['note']}", ""]
    if meta["gpu"]:
        lines += ["| kernel | params | triton ms | ref ms | speedup | GB/s | TFLOP/s | vs cdist+argmin | check |",
                  "|---|---|---|---|---|---|---|---|---|"]
    else:
        lines += ["| kernel | params | check |", "|---|---|---|"]
    for r in rows:
        p = ", ".join(f"{k}={v}" for k, v in r.get("params", {}).items())
        check = r.get("error") or ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in r.get("check", {}).items())
        if meta["gpu"]:
            def f(k, fmt="{:.3f}", r=r):
                return fmt.format(r[k]) if k in r else "—"

            lines.append(f"| {r.get('kernel', '?')} | {p} | {f('ms')} | {f('ref_ms')} | {f('speedup', '{:.1f}x')} "
                         f"| {f('gbps', '{:.0f}')} | {f('tflops', '{:.1f}')} | {f('speedup_vs_baseline', '{:.1f}x')} | {check} |")
        else:
            lines.append(f"| {r.get('kernel', '?')} | {p} | {check} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--quick", action="store_true", help="fewer sizes (GPU)")
    args = ap.parse_args()
    if not K.triton_available():
        print("triton is not installed (pip install 'tokc-codec[gpu]')", file=sys.stderr)
        return 1
    import triton

    t0 = time.time()
    cases = gpu_cases(args.quick) if GPU else cpu_cases()
    rows = []
    for make in cases:
        rows.append(run_case(make, GPU))
        print(json.dumps(rows[-1]), flush=True)
    meta = {
        "gpu": GPU,
        "device": torch.cuda.get_device_name() if GPU else f"CPU ({platform.processor() or platform.machine()}), Triton interpreter",
        "torch": torch.__version__, "triton": triton.__version__, "seconds": round(time.time() - t0, 1),
        "tolerance_fp32": vars(tolerance(torch.float32)),
        "note": ("Times are medians of triton.testing.do_bench; GB/s counts the minimum traffic "
                 "(inputs read once, outputs written once)." if GPU else
                 "Correctness under TRITON_INTERPRET=1 only: GPU speed is unmeasured."),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "kernels_cuda" if GPU else "kernels_cpu"
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (args.out / f"{stem}.md").write_text(markdown(rows, meta))
    print(f"wrote {args.out / stem}.json/.md in {meta['seconds']} s", file=sys.stderr)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
