"""`tokc batch`: compress or decompress whole folder trees, or turn a dataset into token
arrays with a published tokenizer (`tokenize`), on a local process pool (default) or on a Ray
cluster (`ray=`), with one code path per item.

    run(Job("compress", src, dst, options={"quality": 60}), workers=2)

- Items: every image/audio file under SRC (a folder, searched recursively), a glob, or a
  manifest (a text file of paths, one per line); outputs mirror SRC's tree under DST
  (`a/b.png` -> `DST/a/b.tokc`; decompress: `.png` for images, `.wav` for audio).
- Resumable and idempotent: outputs are written to a temporary file and renamed; an item
  whose output exists and verifies (a .tokc header that parses with the expected codec; an
  image or sound file that opens) is skipped, so a rerun after Ctrl-C or a lost node only
  redoes the items that were in flight.
- Faults do not stop the run: a bad input is recorded as failed with its one-line error; an
  item whose worker died is retried (RETRIES times) on a fresh worker, then recorded failed.
- The codec is loaded once per worker process (a module-level cache), not per item; a task
  ships only the item's paths and the options.
- A manifest (`DST/manifest.jsonl`, one JSON line per item: input, output, status, bytes,
  bpp or kbps, quality, seconds, error) is appended as items finish; `summarize` reads it.
"""

from __future__ import annotations

import glob as globlib
import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from tokc import format as fmt

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".bmp", ".gif")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif")
RETRIES = 2  # of an item whose worker died
MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class Job:
    mode: str  # "compress" | "decompress"
    src: str
    dst: str
    options: dict = field(default_factory=dict)  # compress: quality/kbps/size/psnr/effort/tune; both: backend
    force: bool = False  # redo items whose outputs exist


@dataclass(frozen=True)
class Item:
    input: str
    output: str


def list_inputs(src: str, mode: str) -> tuple[Path, list[Path]]:
    """(the root outputs are mirrored from, the input files in order)."""
    suffixes = (".tokc",) if mode == "decompress" else IMAGE_SUFFIXES + AUDIO_SUFFIXES
    p = Path(src)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)
        return p, files
    if p.is_file() and p.suffix.lower() in (".txt", ".list", ".lst"):
        lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        files = [(p.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines]
        return Path(os.path.commonpath([f.resolve().parent for f in files])) if files else p.parent, files
    matches = sorted(Path(m) for m in globlib.glob(src, recursive=True) if Path(m).is_file())
    if not matches:
        raise FileNotFoundError(f"{src}: no such folder, manifest or files")
    root = Path(os.path.commonpath([m.resolve().parent for m in matches]))
    return root, matches


def plan(job: Job) -> list[Item]:
    root, files = list_inputs(job.src, job.mode)
    items = []
    for f in files:
        rel = f.resolve().relative_to(root.resolve()) if f.resolve().is_relative_to(root.resolve()) else Path(f.name)
        if job.mode == "compress":
            out = rel.with_suffix(".tokc")
        else:
            out = rel.with_suffix(_decoded_suffix(f))
        items.append(Item(str(f), str(Path(job.dst) / out)))
    return items


def _decoded_suffix(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            modality = fmt.read_header(f).modality
    except (OSError, fmt.TokcFormatError):
        return ".png"  # the item fails later with the reader's message
    return ".wav" if modality == "audio" else ".png"


# -- one item, in a worker ------------------------------------------------------------------

_codecs: dict = {}  # per worker process: (codec id, options) -> codec, loaded once


def _codec_for(entry, backend: str):
    key = (entry.codec_id, backend)
    if key not in _codecs:
        _codecs[key] = entry.open(backend=backend)
    return _codecs[key]


def verified(path: Path, mode: str) -> bool:
    """An output left by an earlier run that is whole: a .tokc whose header parses, or a
    decoded file that opens."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        if mode == "compress":
            with open(path, "rb") as f:
                fmt.read_header(f)
            return True
        if path.suffix == ".wav":
            import soundfile

            soundfile.info(str(path))
            return True
        from PIL import Image

        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:
        return False


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt.write_atomic(path, data)


def process(item: Item, mode: str, options: dict, force: bool = False) -> dict:
    """Do one item; never raises for a bad input: -> its manifest record."""
    from tokc.compress import registry

    t0 = time.perf_counter()
    rec = {"input": item.input, "output": item.output, "status": "ok", "pid": os.getpid()}
    out = Path(item.output)
    try:
        if not force and verified(out, mode):
            rec.update(status="skipped", bytes=out.stat().st_size)
            return rec
        raw = Path(item.input).read_bytes()
        backend = options.get("backend", "auto")
        if mode == "compress":
            entry = registry.default_for(registry.modality_of(item.input))
            rate = {k: v for k, v in options.items() if k != "backend" and v is not None}
            media = registry.media(entry.modality)
            res = _codec_for(entry, backend).compress(media.read(raw, item.input), **rate)
            _write_atomic(out, res.data)
            rec.update(bytes_in=len(raw), bytes=len(res.data), **_rate_fields(res))
        else:
            header = fmt.read_header(raw)
            entry = registry.entry_for(header)
            media = registry.media(entry.modality)
            decoded = _codec_for(entry, backend).decompress(raw)
            data = media.write(decoded, item.output)
            _write_atomic(out, data)
            rec.update(bytes_in=len(raw), bytes=len(data))
    except Exception as e:  # the item's own failure: recorded, the run goes on
        msg = (str(e) or type(e).__name__).splitlines()[0]
        if msg.startswith(item.input + ": "):
            msg = msg[len(item.input) + 2:]
        rec.update(status="failed", error=msg[:300])
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec


def _rate_fields(res) -> dict:
    out = {"codec": res.codec}
    if res.modality == "image":
        out["bpp"] = round(res.bpp, 4)
    else:
        out["kbps"] = round(res.kbps, 3)
    if "quality" in res.rate:
        out["quality"] = round(float(res.rate["quality"]), 2)
    return out


# -- schedulers -----------------------------------------------------------------------------

def run(job: Job, workers: int | None = None, ray: str | bool | None = None,
        on_record: Callable[[dict], None] | None = None, fn: Callable = process) -> list[dict]:
    """Every item of the job; records appended to DST/manifest.jsonl as they finish.
    ray: None (local process pool of `workers`), True (a local Ray instance) or a cluster
    address. fn: what runs each item (process; tests hand in one that kills its worker).
    -> the records, in the order items finished."""
    return _execute(plan(job), job, workers, ray, on_record, fn)


def _execute(items: list[Item], job: Job, workers, ray, on_record, fn: Callable) -> list[dict]:
    """items on the pool or Ray, each record appended to DST/manifest.jsonl as it comes."""
    Path(job.dst).mkdir(parents=True, exist_ok=True)
    records = []
    with open(Path(job.dst) / MANIFEST, "a") as manifest:
        def done(rec: dict) -> None:
            manifest.write(json.dumps(rec) + "\n")
            manifest.flush()
            records.append(rec)
            if on_record:
                on_record(rec)

        if ray is None:
            _run_pool(items, job, workers or os.cpu_count() or 1, done, fn)
        else:
            _run_ray(items, job, workers, None if ray is True else ray, done, fn)
    return records


_started = None  # in a pool worker: the queue its tasks announce themselves on


def _init_worker(queue) -> None:
    global _started
    _started = queue


def _announced(fn: Callable, item: Item, *args):
    _started.put(item.input)
    return fn(item, *args)


def _pool_pass(items: list[Item], job: Job, workers: int, done, fn: Callable) -> tuple[list[Item], list[Item]]:
    """Run items on one pool until they are done or a worker dies. -> (items that had started
    and not finished when the pool broke, items that had not started): ([], []) when all ran."""
    import multiprocessing

    # spawn, not fork: a parent that already runs threads (ONNX Runtime's, torch's, an app's)
    # can leave a forked worker holding a lock forever
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    futures = {}
    finished = set()
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(queue,)) as pool:
        for it in items:
            futures[pool.submit(_announced, fn, it, job.mode, job.options, job.force)] = it
        pending = set(futures)
        while pending:
            ready, pending = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            for fut in ready:
                try:
                    rec = fut.result()
                except BrokenProcessPool:  # a worker died (killed, out of memory)
                    broken = True
                    continue
                finished.add(futures[fut].input)
                for r in rec if isinstance(rec, list) else [rec]:  # a shard gives one per item
                    done(r)
            if broken:
                started = set()
                while not queue.empty():
                    started.add(queue.get())
                left = [it for it in items if it.input not in finished]
                return ([it for it in left if it.input in started],
                        [it for it in left if it.input not in started])
    return [], []


def _run_pool(items: Iterable[Item], job: Job, workers: int, done, fn: Callable) -> None:
    """Items on a process pool. When a worker dies, the items that were running are each
    retried alone on a fresh worker (so only the item that kills its worker is blamed), up to
    RETRIES times, then recorded failed; the others go on in a fresh pool."""
    queue, suspects = list(items), []
    attempts: dict[str, int] = {}
    while queue or suspects:
        if suspects:
            it = suspects.pop(0)
            running, _ = _pool_pass([it], job, 1, done, fn)
            if running:
                attempts[it.input] = attempts.get(it.input, 0) + 1
                if attempts[it.input] > RETRIES:
                    done({"input": it.input, "output": it.output, "status": "failed",
                          "error": f"the worker died on this item ({attempts[it.input]} times alone)"})
                else:
                    suspects.append(it)
            continue
        running, queue = _pool_pass(queue, job, workers, done, fn)
        suspects += running


def _run_ray(items: list[Item], job: Job, workers: int | None, address: str | None, done,
             fn: Callable) -> None:
    import ray

    started = False
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(max_retries=RETRIES, retry_exceptions=False)(fn)
        refs = {remote.remote(it, job.mode, job.options, job.force): it for it in items}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            it = refs[ready[0]]
            try:
                rec = ray.get(ready[0])
                for r in rec if isinstance(rec, list) else [rec]:
                    done(r)
            except Exception as e:  # the task's worker died more than RETRIES times
                done({"input": it.input, "output": it.output, "status": "failed",
                      "error": f"{type(e).__name__}: {e}".splitlines()[0][:300]})
    finally:
        if started:
            ray.shutdown()


def summarize(records: list[dict]) -> dict:
    ok = [r for r in records if r["status"] == "ok"]
    out = {"items": len(records), "ok": len(ok),
           "skipped": sum(r["status"] == "skipped" for r in records),
           "failed": sum(r["status"] == "failed" for r in records),
           "bytes_in": sum(r.get("bytes_in", 0) for r in ok), "bytes_out": sum(r.get("bytes", 0) for r in ok),
           "seconds": round(sum(r.get("seconds", 0) for r in ok), 2)}
    bpps = [r["bpp"] for r in ok if "bpp" in r]
    if bpps:
        out["mean_bpp"] = round(sum(bpps) / len(bpps), 4)
    kbps = [r["kbps"] for r in ok if "kbps" in r]
    if kbps:
        out["mean_kbps"] = round(sum(kbps) / len(kbps), 3)
    return out


# -- tokenize: a dataset to token arrays (sharded Parquet) -----------------------------------

TOKENIZE_ARCHS = {"one-d-piece": "image", "titok-vq": "image", "wetok": "image", "wavtokenizer": "audio"}
SHARD_PREFIX = "tokens-"


def plan_tokenize(src: str, dst: str, arch: str, shard_size: int) -> list[Item]:
    """Shards of the sorted inputs: Item(input = the shard's paths, one per line; output =
    DST/tokens-NNNNN.parquet)."""
    if arch not in TOKENIZE_ARCHS:
        raise ValueError(f"tokenize takes --arch {', '.join(TOKENIZE_ARCHS)}, not {arch!r}")
    root, files = list_inputs(src, "compress")
    suffixes = AUDIO_SUFFIXES if TOKENIZE_ARCHS[arch] == "audio" else IMAGE_SUFFIXES
    files = [f for f in files if f.suffix.lower() in suffixes]
    shards = [files[i : i + shard_size] for i in range(0, len(files), shard_size)]
    return [Item("\n".join(str(f) for f in shard), str(Path(dst) / f"{SHARD_PREFIX}{k:05d}.parquet"))
            for k, shard in enumerate(shards)]


_tokenizers: dict = {}


def _tokenizer(arch: str, checkpoint: str):
    if (arch, checkpoint) not in _tokenizers:
        import torch

        from tokc.models import load_pretrained
        from tokc.models.checkpoints import resolve

        torch.set_num_threads(1)  # one thread a worker: the same tokens on every worker and run
        model = load_pretrained(checkpoint, arch=arch).eval()
        _tokenizers[(arch, checkpoint)] = (model, fmt.sha256_file(resolve(checkpoint)[1]))
    return _tokenizers[(arch, checkpoint)]


def _model_input(arch: str, model, path: str, image_size: int):
    """One input as the tokenizer takes it: an image resized to the model's size (One-D-Piece,
    TiTok: their configured size, in [0, 1]; WeTok: image_size square, in [-1, 1]); audio as
    mono at the model's rate."""
    import numpy as np

    if TOKENIZE_ARCHS[arch] == "audio":
        import soxr

        from tokc.compress.sound import read_sound

        sound = read_sound(path)
        x = sound.samples.mean(1) if sound.samples.ndim == 2 else sound.samples
        rate = model.config.sample_rate
        if sound.sample_rate != rate:
            x = soxr.resample(x, sound.sample_rate, rate, quality="HQ")
        return np.asarray(x, np.float32)[None]
    from tokc.compress.pixels import read_image
    from tokc.compress.tokens import resize_rgb

    rgb = read_image(path)
    rgb = np.repeat(rgb[..., None], 3, 2) if rgb.ndim == 2 else rgb[..., :3]
    if arch == "wetok":
        x = resize_rgb(rgb, image_size, image_size).astype(np.float32) / 127.5 - 1
    else:
        h, w = model.config.image_size
        x = resize_rgb(rgb, w, h).astype(np.float32) / 255
    return x.transpose(2, 0, 1)[None]


def tokenize_shard(item: Item, mode: str, options: dict, force: bool = False) -> list[dict]:
    """Tokenize one shard's inputs (model calls batched by `batch_size`, same-shape inputs
    together) and write its Parquet file; -> one manifest record per input."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    paths = item.input.split("\n")
    out = Path(item.output)
    if not force and _shard_whole(out, len(paths)):
        return [{"input": p, "output": item.output, "status": "skipped"} for p in paths]
    arch, checkpoint = options["arch"], options["checkpoint"]
    model, sha = _tokenizer(arch, checkpoint)
    records, rows = [], {}
    inputs = {}
    for p in paths:
        t0 = time.perf_counter()
        try:
            inputs[p] = (_model_input(arch, model, p, options.get("image_size", 256)), t0)
        except Exception as e:
            records.append({"input": p, "output": item.output, "status": "failed",
                            "error": (str(e) or type(e).__name__).splitlines()[0][:300]})
    by_shape: dict = {}
    for p, (x, _) in inputs.items():
        by_shape.setdefault(x.shape, []).append(p)
    bs = max(1, int(options.get("batch_size", 16)))
    for group in by_shape.values():
        for i in range(0, len(group), bs):
            chunk = group[i : i + bs]
            t0 = time.perf_counter()
            with torch.no_grad():
                tokens = model.encode(torch.from_numpy(np.concatenate([inputs[p][0] for p in chunk])))
            tokens = tokens.numpy()
            if arch == "wavtokenizer":  # (n_q, B, frames) -> per item (n_q, frames)
                tokens = tokens.transpose(1, 0, 2)
            dt = (time.perf_counter() - t0) / len(chunk)
            for p, tok in zip(chunk, tokens):
                rows[p] = tok
                records.append({"input": p, "output": item.output, "status": "ok",
                                "tokens": int(tok.size), "seconds": round(dt, 4)})
    order = [p for p in paths if p in rows]
    table = pa.table({
        "id": pa.array(order, pa.string()),
        "tokens": pa.array([rows[p].reshape(-1).astype(np.int64) for p in order], pa.list_(pa.int64())),
        "shape": pa.array([list(rows[p].shape) for p in order], pa.list_(pa.int32())),
    }).replace_schema_metadata({"tokenizer": arch, "weights_sha256": sha,
                                "inputs": str(len(paths))})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    _write_atomic(out, buf.getvalue().to_pybytes())
    return records


def _shard_whole(path: Path, n_inputs: int) -> bool:
    """A shard left by an earlier run that is complete: it reads, and records every input."""
    if not path.is_file():
        return False
    try:
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
        return meta.get(b"inputs") == str(n_inputs).encode()
    except Exception:
        return False


def run_tokenize(src: str, dst: str, arch: str, checkpoint: str, workers: int | None = None,
                 ray: str | bool | None = None, batch_size: int = 16, shard_size: int = 256,
                 image_size: int = 256, force: bool = False,
                 on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Token arrays of every input under src, as sharded Parquet in dst (id = the input's path,
    tokens flattened, shape; the tokenizer's arch and weights sha256 in each file's metadata)."""
    items = plan_tokenize(src, dst, arch, shard_size)
    job = Job("tokenize", src, dst, {"arch": arch, "checkpoint": str(checkpoint), "batch_size": batch_size,
                                     "image_size": image_size}, force)
    return _execute(items, job, workers, ray, on_record, tokenize_shard)
