"""`tokc bench latency`: encode/decode latency and throughput of tokc-image-v1 per backend and
precision, side by side with CompressAI's bmshj2018-hyperprior, in one run.

Every variant is loaded first, warmed up, then timed in interleaved rounds (round r times
every variant once), so that load from other processes hits all of them alike; the report
gives the median (and min) over rounds. Encode = ImageCodec.compress (effort 1: analysis,
hyper-analysis, integer entropy parameters, ANS); decode = ImageCodec.decompress (ANS, integer
entropy parameters, synthesis). Runs on CPU here and unchanged on a GPU (--device cuda).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

CPU_VARIANTS = ("torch", "onnx-fp32", "onnx-fp16", "onnx-int8", "compressai")
GPU_VARIANTS = ("torch", "torch-fp16", "onnx-fp32", "tensorrt-fp32", "tensorrt-fp16",
                "tensorrt-int8", "compressai")
KNOWN = ("torch", "torch-fp16", "onnx-fp32", "onnx-fp16", "onnx-int8", "tensorrt-fp32",
         "tensorrt-fp16", "tensorrt-int8", "compressai")
COMPRESSAI_QUALITY = 3  # bmshj2018-hyperprior N=128, M=192 (random weights: timing only)
# thread pools (ONNX Runtime's, OpenMP's) spin a while after a run: a pause before each timed
# encode and decode keeps one variant's spinning threads from slowing the next one's
PAUSE_S = 0.2


class Skip(Exception):
    """A variant that cannot run here; the reason goes into the report."""


@dataclass(frozen=True)
class Row:
    variant: str
    backend: str
    precision: str
    device: str
    encode_ms: float
    decode_ms: float
    encode_min_ms: float
    decode_min_ms: float
    encode_mps: float
    decode_mps: float
    nbytes: int | None  # this variant's own file
    psnr: float | None  # own encode + own decode, vs the input
    max_pixel_diff: int | None  # this decoder vs the reference decoder on the same file
    decode_x_torch: float | None = None  # decode speedup over torch eager fp32
    decode_x_compressai: float | None = None
    synthesis_ms: float | None = None  # the float synthesis alone, inside decode
    synthesis_x_torch: float | None = None
    # medians of the exact part of decode (tokc): ans, h_s, contexts; and rest = decode - those
    # - synthesis (unpacking, scale tables, latents, tiling, rounding to pixels)
    decode_split_ms: dict | None = None
    encode_times_ms: list = field(default_factory=list)
    decode_times_ms: list = field(default_factory=list)


@dataclass(frozen=True)
class LatencyResult:
    image: str
    width: int
    height: int
    quality: float
    device: str
    threads: int
    warmup: int
    repeats: int
    reference: str | None  # the decoder max_pixel_diff is measured against
    rows: list
    skipped: dict  # variant -> reason
    environment: dict
    note: str
    whole_process: dict = field(default_factory=dict)  # whole_process()'s result


# One fresh interpreter's decode of a .tokc file to PNG, in the CLI's steps, timed apart.
SPLIT = """
import json, sys, time
t0 = time.perf_counter()
import tokc
from tokc.compress import pixels
t1 = time.perf_counter()
codec = tokc.open_model("tokc-image-v1")
codec.transforms  # the ONNX Runtime sessions (or torch modules), loaded on first use
t2 = time.perf_counter()
data = open(sys.argv[1], "rb").read()
out = codec.decompress(data)
t3 = time.perf_counter()
png = pixels.write(out, "x.png")
t4 = time.perf_counter()
print(json.dumps({"import_ms": 1000 * (t1 - t0), "load_ms": 1000 * (t2 - t1),
                  "decode_ms": 1000 * (t3 - t2), "write_png_ms": 1000 * (t4 - t3)}))
"""


def whole_process(image: Path, quality: float, repeats: int, log=None) -> dict:
    """Whole commands, as a user runs them (median ms of `repeats` runs, interleaved):
    `tokc compress -q Q` and `tokc decompress` to PNG beside `cwebp -q Q` and `dwebp` when
    they are on PATH, and the split of a decode in a fresh interpreter (import, model load,
    decode, PNG write)."""
    import shutil
    import subprocess
    import tempfile

    log = log or (lambda msg: None)
    tokc_cli = [sys.executable, "-c", "import sys; from tokc.cli import main; sys.argv[0] = 'tokc'; main()"]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        cmds = {
            "tokc compress": tokc_cli + ["compress", str(image), "-o", str(t / "a.tokc"), "-q", f"{quality:g}", "-f", "--quiet"],
            "tokc decompress": tokc_cli + ["decompress", str(t / "a.tokc"), "-o", str(t / "a.png"), "-f", "--quiet"],
        }
        if shutil.which("cwebp") and shutil.which("dwebp"):
            cmds["cwebp"] = ["cwebp", "-quiet", "-q", f"{quality:g}", str(image), "-o", str(t / "a.webp")]
            cmds["dwebp"] = ["dwebp", "-quiet", str(t / "a.webp"), "-o", str(t / "b.png")]
        times = {k: [] for k in cmds}
        splits = []
        for r in range(repeats + 1):  # the first round warms the file cache
            for name, cmd in cmds.items():
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                if r:
                    times[name].append(time.perf_counter() - t0)
            out = subprocess.run([sys.executable, "-c", SPLIT, str(t / "a.tokc")], check=True,
                                 capture_output=True, text=True)
            if r:
                splits.append(json.loads(out.stdout.strip().splitlines()[-1]))
            log(f"whole-process round {r}/{repeats} done")
    res = {"commands_ms": {k: round(_median_ms(v), 1) for k, v in times.items()},
           "decode_split_ms": {k: round(statistics.median(s[k] for s in splits), 1) for k in splits[0]}}
    if "cwebp" in times:
        res["tokc_over_webp"] = {"compress": round(statistics.median(times["tokc compress"]) / statistics.median(times["cwebp"]), 2),
                                 "decompress": round(statistics.median(times["tokc decompress"]) / statistics.median(times["dwebp"]), 2)}
    return res


def _median_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times)


# --- variants ------------------------------------------------------------------------------------


class TokcVariant:
    def __init__(self, name: str, weights, onnx_dir: Path, device: str, threads: int):
        from tokc.compress.base import CodecError
        from tokc.compress.image import ImageCodec
        from tokc.runtimes.base import RuntimeUnavailable, Transforms, load_parts, open_export

        backend, _, precision = name.partition("-")
        precision = precision or "fp32"
        try:
            if backend == "torch":  # the PyTorch modules themselves: no export needed
                from tokc.runtimes.torch import TorchRuntime

                transforms = Transforms({
                    p: TorchRuntime.from_weights(weights.path, p, device, precision, threads)
                    for p in ("g_a", "h_a", "g_s")
                })
            else:
                exp = open_export(onnx_dir, weights.codec_id, precision, weights.sha256)
                transforms = load_parts(exp, backend, device, threads)
        except (RuntimeUnavailable, CodecError, ImportError) as e:
            raise Skip(str(e)) from None
        self.name, self.backend, self.precision, self.device = name, backend, precision, device
        self.codec = ImageCodec(weights, transforms=_Timed(transforms))
        self.clock = _Clock()
        self.codec.latent = self.clock.latent_coder(self.codec.latent)
        self.data = None
        self.synthesis_s = 0.0  # of the last decode
        self.split_s = {}  # of the last decode: ANS, h_s, contexts (see _Clock)

    def encode(self, rgb, quality):
        self.data = self.codec.compress(rgb, quality=quality).data
        return self.data

    def decode(self, data=None):
        self.codec.transforms.seconds = 0.0
        self.clock.seconds.clear()
        out = self.codec.decompress(self.data if data is None else data)
        self.synthesis_s = self.codec.transforms.seconds
        self.split_s = dict(self.clock.seconds)
        return out


class _Clock:
    """Seconds spent in each part of the exact (integer) decode, added up: `ans` (the ANS
    decoder: constriction and its bookkeeping), `h_s` (the hyper-synthesis) and `contexts`
    (the channel and checkerboard context networks). The codec's latent coder is rebuilt on
    timed stand-ins of its networks and ANS decoder; the tokens are the same."""

    PARTS = ("ans", "h_s", "contexts")

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def timed(self, key: str, f):
        def run(*args):
            t = time.perf_counter()
            try:
                return f(*args)
            finally:
                self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t
        return run

    def latent_coder(self, coder):
        from tokc.compress.latent import LatentCoder

        clock = self

        class Networks:  # the weights, with timed networks
            def __init__(self, inner):
                self._inner = inner
                self.hs = clock.timed("h_s", inner.hs)
                self.ctx = [clock.timed("contexts", n) for n in inner.ctx]
                self.spatial = [clock.timed("contexts", n) for n in inner.spatial]

            def __getattr__(self, name):
                return getattr(self._inner, name)

        class Decoder(coder.decoder_type):
            def decode(self, tables, table):
                return clock.timed("ans", super().decode)(tables, table)

        timed = LatentCoder(Networks(coder.weights), coder.order)
        timed.decoder_type = Decoder
        return timed


class _Timed:
    """The transforms, with the time spent in synthesis added up."""

    def __init__(self, inner):
        self.inner, self.name, self.seconds = inner, inner.name, 0.0

    def run(self, part, x):
        if part != "g_s":
            return self.inner.run(part, x)
        t = time.perf_counter()
        out = self.inner.run(part, x)
        self.seconds += time.perf_counter() - t
        return out


def _import_compressai():
    """compressai 1.2.8 imports torchvision, torch_geometric and pandas at import time, for its
    dataset and transform registries only; bmshj2018-hyperprior needs none of them. When they
    are missing, stand-ins for those registry modules let the model import."""
    try:
        from compressai.zoo import bmshj2018_hyperprior
        return bmshj2018_hyperprior
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "compressai":
            raise
    for key in [k for k in sys.modules if k == "compressai" or k.startswith("compressai.")]:
        del sys.modules[key]
    for name in ("compressai.datasets", "compressai.transforms"):
        sys.modules[name] = types.ModuleType(name)
    for name in ("torchvision", "torch_geometric"):
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            parent, child = types.ModuleType(name), types.ModuleType(f"{name}.transforms")
            parent.transforms = child
            sys.modules[name], sys.modules[f"{name}.transforms"] = parent, child
    from compressai.zoo import bmshj2018_hyperprior

    return bmshj2018_hyperprior


class CompressAIVariant:
    backend, precision = "compressai", "fp32"

    def __init__(self, device: str):
        try:
            import torch

            hyperprior = _import_compressai()
        except ImportError as e:
            raise Skip(f"compressai is not importable ({e}); pip install --no-deps compressai einops") from None
        if device == "cuda" and not torch.cuda.is_available():
            raise Skip("torch here has no CUDA device")
        self.torch, self.name, self.device = torch, "compressai", device
        self.net = hyperprior(quality=COMPRESSAI_QUALITY, pretrained=False).eval().to(device)
        self.net.update(force=True)
        self.out = None

    def encode(self, rgb, quality):
        torch = self.torch
        h, w = rgb.shape[:2]
        x = np.pad(rgb, ((0, -h % 64), (0, -w % 64), (0, 0)), mode="edge")
        x = torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32) / 255).to(self.device)
        with torch.inference_mode():
            self.out = self.net.compress(x)
        return b"".join(s[0] for s in self.out["strings"])

    def decode(self, data=None):
        with self.torch.inference_mode():
            x_hat = self.net.decompress(self.out["strings"], self.out["shape"])["x_hat"]
        return x_hat.cpu().numpy()


def _sync(device: str) -> None:
    if device == "cuda" and "torch" in sys.modules:
        sys.modules["torch"].cuda.synchronize()


# --- the run -----------------------------------------------------------------------------------


def environment(threads: int) -> dict:
    env = {"python": platform.python_version(), "machine": platform.machine(),
           "processor": platform.processor() or None, "cpus": os.cpu_count(), "threads": threads}
    for mod in ("numpy", "onnxruntime", "torch", "compressai", "tensorrt"):
        if mod in sys.modules:
            env[mod] = getattr(sys.modules[mod], "__version__", None)
    return env


def run_latency(image: Path, variants: list[str], weights_path: Path | None = None,
                onnx_dir: Path | None = None, device: str = "cpu", threads: int = 2,
                warmup: int = 1, repeats: int = 5, quality: float = 75, note: str = "",
                log=None, whole: bool = True) -> LatencyResult:
    from tokc.compress.image import WEIGHTS, ImageWeights, as_image, split_alpha_gray
    from tokc.metrics.image import psnr

    log = log or (lambda msg: None)
    weights = ImageWeights(weights_path or WEIGHTS, threads)
    onnx_dir = Path(onnx_dir) if onnx_dir else Path(weights.path).parent
    rgb = split_alpha_gray(as_image(image))[0]
    h, w = rgb.shape[:2]
    if importlib.util.find_spec("torch"):
        import torch

        torch.set_num_threads(threads)  # torch eager and CompressAI
    loaded, skipped = {}, {}
    for name in variants:
        try:
            loaded[name] = CompressAIVariant(device) if name == "compressai" else \
                TokcVariant(name, weights, onnx_dir, device, threads)
        except Skip as e:
            skipped[name] = str(e)
            log(f"skip {name}: {e}")
    times = {name: ([], [], []) for name in loaded}
    splits = {name: [] for name in loaded}
    for r in range(-warmup, repeats):
        for name, v in loaded.items():
            _sync(device)
            time.sleep(PAUSE_S)  # the last variant's idle threads stop spinning first
            t0 = time.perf_counter()
            v.encode(rgb, quality)
            _sync(device)
            t1 = time.perf_counter()
            time.sleep(PAUSE_S)
            t1b = time.perf_counter()
            v.decode()
            _sync(device)
            t2 = time.perf_counter()
            if r >= 0:
                times[name][0].append(t1 - t0)
                times[name][1].append(t2 - t1b)
                times[name][2].append(getattr(v, "synthesis_s", None))
                splits[name].append(getattr(v, "split_s", None))
        log(f"round {r + 1 if r >= 0 else 'warm-up'}/{repeats} done")
    tokc_names = [n for n in loaded if n != "compressai"]
    reference = next((n for n in ("torch", "onnx-fp32") if n in loaded), tokc_names[0] if tokc_names else None)
    mp = w * h / 1e6
    base = {n: _median_ms(times[n][1]) for n in ("torch", "compressai") if n in loaded}
    synth = {n: _median_ms(t[2]) for n, t in times.items() if n != "compressai"}
    rows = []
    for name, v in loaded.items():
        enc, dec, _ = times[name]
        nbytes = quality_psnr = diff = None
        if name != "compressai":
            nbytes = len(v.data)
            own = v.decode()
            quality_psnr = round(float(psnr(rgb, own)), 3)
            diff = int(np.abs(loaded[reference].decode(v.data).astype(int) - own).max())
        dec_ms = _median_ms(dec)
        split = None
        if name != "compressai":
            split = {k: round(_median_ms([s.get(k, 0.0) for s in splits[name]]), 2) for k in _Clock.PARTS}
            split["synthesis"] = round(synth[name], 2)
            split["rest"] = round(dec_ms - sum(split.values()), 2)
        rows.append(Row(
            name, v.backend, v.precision, device,
            round(_median_ms(enc), 2), round(dec_ms, 2),
            round(1000 * min(enc), 2), round(1000 * min(dec), 2),
            round(mp / statistics.median(enc), 3), round(mp / statistics.median(dec), 3),
            nbytes, quality_psnr, diff,
            decode_x_torch=round(base["torch"] / dec_ms, 2) if "torch" in base else None,
            decode_x_compressai=round(base["compressai"] / dec_ms, 2) if "compressai" in base else None,
            synthesis_ms=round(synth[name], 2) if name in synth else None,
            synthesis_x_torch=round(synth["torch"] / synth[name], 2)
            if name in synth and "torch" in synth else None,
            decode_split_ms=split,
            encode_times_ms=[round(1000 * t, 2) for t in enc],
            decode_times_ms=[round(1000 * t, 2) for t in dec],
        ))
    return LatencyResult(str(image), w, h, quality, device, threads, warmup, repeats, reference,
                         rows, skipped, environment(threads), note,
                         whole_process(Path(image), quality, repeats, log) if whole else {})


# --- the report --------------------------------------------------------------------------------


def _fmt(x, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def to_markdown(res: LatencyResult) -> str:
    lines = [
        f"# tokc bench latency: {Path(res.image).name} ({res.width}×{res.height}), {res.device}, "
        f"{res.threads} threads",
        "",
        f"Median of {res.repeats} interleaved rounds after {res.warmup} warm-up round(s), a "
        f"{PAUSE_S:g} s pause before each timed encode and decode; "
        f"tokc at -q {res.quality:g}, effort 1. Encode and decode are whole-file: transforms, "
        "integer entropy parameters and ANS coding. Speedups are decode-median ratios measured "
        "in this same run. `synthesis`: the float synthesis g_s alone, inside decode (the rest "
        "of decode, ANS and the exact integer networks, is the same code on every backend). "
        "`max px diff`: this decoder against the "
        f"{res.reference} decoder on the same file.",
        "",
    ]
    if res.note:
        lines += [f"**Note.** {res.note}", ""]
    lines += [
        "| variant | encode ms | decode ms | encode MP/s | decode MP/s | decode × torch | "
        "decode × CompressAI | synthesis ms | synthesis × torch | bytes | PSNR dB | max px diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res.rows:
        lines.append(
            f"| {r.variant} | {r.encode_ms:.1f} | {r.decode_ms:.1f} | {r.encode_mps:.2f} | "
            f"{r.decode_mps:.2f} | {_fmt(r.decode_x_torch, '.2f')} | "
            f"{_fmt(r.decode_x_compressai, '.2f')} | {_fmt(r.synthesis_ms, '.1f')} | "
            f"{_fmt(r.synthesis_x_torch, '.2f')} | {_fmt(r.nbytes, 'd')} | "
            f"{_fmt(r.psnr, '.2f')} | {_fmt(r.max_pixel_diff, 'd')} |"
        )
    split_rows = [r for r in res.rows if r.decode_split_ms]
    if split_rows:
        keys = list(split_rows[0].decode_split_ms)
        lines += ["", "Decode split (medians over the rounds, ms): `ans` the ANS decoder (constriction "
                  "and its bookkeeping), `h_s` the integer hyper-synthesis, `contexts` the channel and "
                  "checkerboard context networks (these three are the exact part, the same on every "
                  "backend), `synthesis` g_s, `rest` the decode median less these (unpacking, scale "
                  "tables, latents, tiling, rounding to pixels; medians do not add up exactly).", "",
                  "| variant | decode ms | " + " | ".join(keys) + " |",
                  "|---|---:|" + "---:|" * len(keys)]
        lines += [f"| {r.variant} | {r.decode_ms:.1f} | " + " | ".join(f"{r.decode_split_ms[k]:.1f}" for k in keys)
                  + " |" for r in split_rows]
    if any(r.variant == "compressai" for r in res.rows):
        lines += ["", f"CompressAI: bmshj2018-hyperprior quality {COMPRESSAI_QUALITY} (N=128, M=192), "
                  "random weights (timing only: its bytes and PSNR mean nothing), "
                  "compress()/decompress() with its own ANS coder, PyTorch eager."]
    if res.whole_process:
        wp = res.whole_process
        lines += ["", "Whole process (what a user waits for: a fresh interpreter, the model loaded, "
                  "the file read and written; median ms):", "",
                  "| command | ms |", "|---|---:|"]
        lines += [f"| {k} | {v:.0f} |" for k, v in wp["commands_ms"].items()]
        split = wp["decode_split_ms"]
        lines += ["", "A decode to PNG in one fresh interpreter, step by step (ms): "
                  + ", ".join(f"{k[:-3].replace('_', ' ')} {v:.0f}" for k, v in split.items()) + "."]
        if "tokc_over_webp" in wp:
            r = wp["tokc_over_webp"]
            lines += ["", f"tokc over cwebp / dwebp: compress ×{r['compress']:.1f}, decompress ×{r['decompress']:.1f}."]
    if res.skipped:
        lines += ["", "Not run:", ""] + [f"- {k}: {v}" for k, v in res.skipped.items()]
    env = ", ".join(f"{k} {v}" for k, v in res.environment.items() if v is not None)
    lines += ["", f"Environment: {env}.", ""]
    return "\n".join(lines)


def write_report(res: LatencyResult, out: Path, name: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{name}.json", out / f"{name}.md"
    js.write_text(json.dumps(asdict(res), indent=1) + "\n")
    md.write_text(to_markdown(res))
    return js, md
