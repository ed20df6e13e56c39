"""Rate-distortion benchmark over a folder of images or audio clips.

Every registered codec (tokc.baselines) is run at each point of its grid on every item;
the result holds per-item points and mean curves (CompressAI convention: the mean of the
per-item rates and metrics at each grid point). `write_report` turns a result into
<name>.json, <name>.png (mean curves) and <name>.md (BD-rate tables and the curves).

Audio has two profiles. "speech": PESQ-WB, STOI, ViSQOL (speech mode), log-mel distance and
SI-SDR on mono clips, plus BD-rates (pchip) against the anchor (Opus voip) over the rate
ranges of issue 15 (`AUDIO_BD_RANGES`) and the issue's bar. "music": ViSQOL audio mode at
48 kHz and log-mel distance, the clips' channels kept (metrics on the mono downmix), at
`MUSIC_KBPS`. Audio codecs run on one thread (BLAS limited by threadpoolctl; the codecs'
own sessions are single-thread) and each point reports encode/decode speed as a multiple of
real time (xRT = clip seconds / wall seconds). A point a codec cannot reach (below its lowest
rate) is skipped with a note; a grid point missing on any clip has no mean point.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")

Progress = Callable[[int], None]
GridsIn = Mapping[str, Sequence[float]]  # codec -> quality (or kbps) grid
Grids = dict[str, tuple[float, ...]]


@dataclass(frozen=True)
class MetricSpec:
    key: str
    label: str
    higher_is_better: bool


IMAGE_METRICS = (
    MetricSpec("psnr", "PSNR (dB)", True),
    MetricSpec("ms_ssim_db", "MS-SSIM (dB)", True),
    MetricSpec("ssimulacra2", "SSIMULACRA2", True),
)
AUDIO_METRICS = (  # the speech profile
    MetricSpec("pesq", "PESQ-WB", True),
    MetricSpec("stoi", "STOI", True),
    MetricSpec("visqol", "ViSQOL speech", True),
    MetricSpec("mel_distance", "log-mel distance", False),
    MetricSpec("si_sdr", "SI-SDR (dB)", True),
)
MUSIC_METRICS = (
    MetricSpec("visqol_audio", "ViSQOL audio (48 kHz)", True),
    MetricSpec("mel_distance", "log-mel distance", False),
)
SPEECH_MAX_KBPS = 32.0  # the speech profile's default grids stop here
MUSIC_KBPS = (24.0, 32.0, 48.0)  # the music profile's default grid, for every codec
# Anchors of the audio BD-rate table, the first present one (else the first codec).
AUDIO_ANCHORS = ("opus-voip", "opus")


@dataclass(frozen=True)
class BDRange:
    """BD-rate (pchip) over the anchor's points whose asked kbps is in [lo, hi]; the test
    codec's whole curve is interpolated over the quality interval those points span."""

    label: str
    lo: float
    hi: float
    metrics: tuple[str, ...]


# issue 15's bar: BD-rate < 0 against Opus over 6-16 kbps (PESQ-WB, STOI, ViSQOL) and over
# Opus's wideband points alone (10, 12, 16 kbps; PESQ-WB, ViSQOL)
AUDIO_BD_RANGES = (
    BDRange("6-16 kbps", 6.0, 16.0, ("pesq", "stoi", "visqol")),
    BDRange("Opus wideband 10-16 kbps", 10.0, 16.0, ("pesq", "visqol")),
)
BAR_DECODE_XRT = 20.0  # tokc decodes faster than 20x real time on one thread
BAR_ENCODE_XRT = 10.0
MIN_SECONDS = 1.0  # shorter clips are left out of an audio run (too short for the metrics)


@dataclass(frozen=True)
class RDPoint:
    codec: str
    setting: float  # the codec's quality (images) or the asked bitrate in kbps (audio)
    item: str  # file name, or "mean"
    nbytes: float  # a mean over items for "mean" points
    rate: float  # bpp (images) or kbps of the whole file (audio)
    metrics: Mapping[str, float]
    encode_s: float
    decode_s: float | None  # None when the codec decodes inside encode
    duration_s: float | None = None  # audio: the clip's seconds (mean for "mean")

    @property
    def encode_xrt(self) -> float | None:
        """Encode speed as a multiple of real time (audio)."""
        return _xrt(self.duration_s, self.encode_s)

    @property
    def decode_xrt(self) -> float | None:
        return _xrt(self.duration_s, self.decode_s)


def _xrt(seconds: float | None, taken: float | None) -> float | None:
    if seconds is None or taken is None:
        return None
    return math.inf if taken <= 0 else seconds / taken


@dataclass(frozen=True)
class Skipped:
    codec: str
    setting: float
    item: str
    reason: str


@dataclass(frozen=True)
class RDResult:
    kind: str  # "image" or "audio"
    rate_unit: str  # "bpp" or "kbps"
    source: str  # the folder the items came from
    items: tuple[str, ...]
    codecs: tuple[str, ...]
    grids: Mapping[str, tuple[float, ...]]
    settings: Mapping[str, str]
    points: tuple[RDPoint, ...]
    means: tuple[RDPoint, ...]
    runtime_s: float
    profile: str = ""  # audio: "speech" or "music"
    notes: tuple[str, ...] = ()  # what the reader must know (skipped points, missing metrics)
    skipped: tuple[Skipped, ...] = ()

    @property
    def metric_specs(self) -> tuple[MetricSpec, ...]:
        if self.kind == "image":
            return IMAGE_METRICS
        return MUSIC_METRICS if self.profile == "music" else AUDIO_METRICS

    def curve(self, codec: str) -> tuple[RDPoint, ...]:
        return tuple(p for p in self.means if p.codec == codec)


@dataclass(frozen=True)
class BDEntry:
    codec: str
    reference: str
    metric: str
    bd_rate: float | None  # percent, cubic fit (VCEG-M33); None when it cannot be computed
    bd_rate_pchip: float | None  # percent, piecewise-cubic variant
    note: str  # why it is None, else ""


@dataclass(frozen=True)
class RangeBD:
    codec: str
    reference: str
    metric: str
    range: str  # the BDRange's label
    anchor_settings: tuple[float, ...]  # the anchor's points used
    quality: tuple[float, float] | None  # the quality interval integrated over
    bd_rate: float | None  # percent, pchip
    note: str


@dataclass(frozen=True)
class BDTable:
    anchor: str
    entries: tuple[BDEntry, ...]

    def get(self, codec: str, reference: str, metric: str) -> BDEntry:
        for e in self.entries:
            if (e.codec, e.reference, e.metric) == (codec, reference, metric):
                return e
        raise KeyError((codec, reference, metric))


@dataclass(frozen=True)
class ReportPaths:
    json: Path
    png: Path
    md: Path


# --- inputs ----------------------------------------------------------------------------------


def list_files(
    folder: Path, suffixes: Sequence[str], limit: int | None = None, recursive: bool = False
) -> list[Path]:
    found = Path(folder).rglob("*") if recursive else Path(folder).iterdir()
    files = sorted(p for p in found if p.suffix.lower() in suffixes and p.is_file())
    return files[:limit] if limit else files


def split_files(folder: Path, split: str, limit: int | None = None) -> list[Path]:
    """The files of one split of folder/index.tsv (tab-separated, a header row with the
    columns `path`, relative to folder, and `split`), in the index's order."""
    index = Path(folder) / "index.tsv"
    if not index.is_file():
        raise ValueError(f"{index} not found (--split reads the folder's index.tsv)")
    lines = [line.split("\t") for line in index.read_text().splitlines() if line.strip()]
    if not lines or not {"path", "split"} <= set(lines[0]):
        raise ValueError(f"{index} has no 'path' and 'split' columns")
    col_path, col_split = lines[0].index("path"), lines[0].index("split")
    files = [Path(folder) / row[col_path] for row in lines[1:] if row[col_split] == split]
    if not files:
        known = sorted({row[col_split] for row in lines[1:]})
        raise ValueError(f"no files in split {split!r} of {index} (splits: {', '.join(known)})")
    return files[:limit] if limit else files


def load_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_audio(path: Path, mono: bool = True) -> tuple[np.ndarray, int]:
    """Float32 and the sample rate: mono (channels averaged), or with mono=False (n,) for one
    channel and (n, 2) for two (more channels are averaged)."""
    import soundfile

    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if mono or audio.shape[1] not in (1, 2):
        return audio.mean(axis=1), int(rate)
    return (audio[:, 0] if audio.shape[1] == 1 else audio), int(rate)


# --- running ---------------------------------------------------------------------------------


def _mean_points(
    points: Sequence[RDPoint], kind: str, complete: int | None = None
) -> tuple[RDPoint, ...]:
    """Mean points per (codec, setting); with `complete`, only over groups of that many items
    (a point missing on some item would bias the mean)."""
    from tokc.metrics.image import ms_ssim_db

    groups: dict[tuple[str, float], list[RDPoint]] = {}
    for p in points:
        groups.setdefault((p.codec, p.setting), []).append(p)
    means = []
    for (codec, setting), group in groups.items():
        if complete is not None and len(group) < complete:
            continue
        metrics = {k: float(np.mean([p.metrics[k] for p in group])) for k in group[0].metrics}
        if kind == "image":
            metrics["ms_ssim_db"] = ms_ssim_db(metrics["ms_ssim"])
        decode = [p.decode_s for p in group]
        durations = [p.duration_s for p in group]
        means.append(
            RDPoint(
                codec,
                setting,
                "mean",
                nbytes=float(np.mean([p.nbytes for p in group])),
                rate=float(np.mean([p.rate for p in group])),
                metrics=metrics,
                encode_s=float(np.mean([p.encode_s for p in group])),
                decode_s=None if None in decode else float(np.mean(decode)),
                duration_s=None if None in durations else float(np.mean(durations)),
            )
        )
    return tuple(means)


def image_grids(codecs: Sequence[str], given: GridsIn | None = None) -> Grids:
    """Each codec's quality grid: the given one, else the codec's default."""
    from tokc.baselines.image import image_codec

    grids = {
        c: tuple(float(q) for q in (given or {}).get(c) or image_codec(c).qualities) for c in codecs
    }
    for c, grid in grids.items():
        if not grid:
            raise ValueError(f"codec {c!r} has no default quality grid; give one")
    return grids


def audio_grids(
    codecs: Sequence[str],
    sample_rate: int,
    given: GridsIn | None = None,
    profile: str = "",
) -> Grids:
    """Each codec's kbps grid: the given one, else its default bitrates valid at sample_rate
    (profile "speech": those up to SPEECH_MAX_KBPS; "music": MUSIC_KBPS)."""
    from tokc.baselines.audio import audio_codec

    grids = {}
    for c in codecs:
        codec = audio_codec(c)
        allowed = codec.bitrate_choices(sample_rate)
        default: Sequence[float] = codec.bitrates
        if profile == "speech":
            default = [b for b in codec.bitrates if b <= SPEECH_MAX_KBPS]
        elif profile == "music":
            default = MUSIC_KBPS
        grid = (given or {}).get(c) or [b for b in default if b in allowed]
        if not grid:
            raise ValueError(f"codec {c!r} has no default bitrate grid at {sample_rate} Hz")
        grids[c] = tuple(float(b) for b in grid)
    return grids


def run_image_rd(
    paths: Sequence[Path],
    codecs: Sequence[str],
    grids: GridsIn | None = None,
    progress: Progress | None = None,
) -> RDResult:
    """Run each codec over its quality grid (default: the codec's own) on each image."""
    from tokc.baselines.image import compress_image, image_codec
    from tokc.metrics.image import image_metrics, ms_ssim_db

    start = time.perf_counter()
    grids = image_grids(codecs, grids)
    points = []
    for path in paths:
        image = load_image(path)
        for c in codecs:
            for q in grids[c]:
                out = compress_image(c, image, q)
                m = image_metrics(image, out.decoded)
                metrics = {
                    "psnr": m.psnr,
                    "ms_ssim": m.ms_ssim,
                    "ms_ssim_db": ms_ssim_db(m.ms_ssim),
                    "ssimulacra2": m.ssimulacra2,
                }
                points.append(
                    RDPoint(
                        c, q, path.name, out.nbytes, out.bpp, metrics, out.encode_s, out.decode_s
                    )
                )
                if progress:
                    progress(1)
    return RDResult(
        kind="image",
        rate_unit="bpp",
        source=str(Path(paths[0]).parent) if paths else "",
        items=tuple(p.name for p in paths),
        codecs=tuple(codecs),
        grids=grids,
        settings={c: image_codec(c).settings for c in codecs},
        points=tuple(points),
        means=_mean_points(points, "image"),
        runtime_s=time.perf_counter() - start,
    )


def _one_thread():
    """A context that limits BLAS/OpenMP pools to one thread (threadpoolctl), and a note."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext(), "threadpoolctl is not installed: BLAS threads not limited"
    return threadpool_limits(limits=1), ""


def _speech_metrics(ref: np.ndarray, deg: np.ndarray, rate: int, visqol: bool) -> dict:
    from tokc.metrics.audio import audio_metrics

    m = audio_metrics(ref, deg, rate, with_visqol=visqol)
    return {
        "pesq": m.pesq,
        "stoi": m.stoi,
        "visqol": m.visqol,
        "mel_distance": m.mel_distance,
        "si_sdr": m.si_sdr,
    }


def _music_metrics(ref: np.ndarray, deg: np.ndarray, rate: int, visqol: bool) -> dict:
    from tokc.metrics.audio import log_mel_distance
    from tokc.metrics.audio import visqol as visqol_mos

    ref = ref.mean(axis=1) if ref.ndim == 2 else ref
    deg = deg.mean(axis=1) if deg.ndim == 2 else deg
    return {
        "visqol_audio": visqol_mos(ref, deg, rate, "audio") if visqol else math.nan,
        "mel_distance": log_mel_distance(ref, deg, rate),
    }


def run_audio_rd(
    paths: Sequence[Path],
    codecs: Sequence[str],
    bitrates: GridsIn | None = None,
    progress: Progress | None = None,
    profile: str = "speech",
    visqol: bool = True,
    max_seconds: float | None = None,
    min_seconds: float = MIN_SECONDS,
) -> RDResult:
    """Run each codec over its kbps grid on each clip, on one thread.

    profile "speech": mono clips (stereo files averaged), PESQ-WB, STOI, ViSQOL speech, log-mel
    distance, SI-SDR; "music": the clips' channels kept, ViSQOL audio mode (48 kHz) and log-mel
    distance on the mono downmix. visqol=False (or visqol-python missing) leaves ViSQOL nan with
    a note. max_seconds crops each clip to its start; clips shorter than min_seconds are left
    out with a note (ViSQOL needs about 0.1 s at 48 kHz, PESQ a quarter second). A codec's default grid keeps only
    bitrates valid at the first clip's sample rate, so
    the clips of one run should share a sample rate. The rate of a point is the codec's counted
    bytes (tokc.baselines.audio.CompressedAudio.counted_kbps).
    """
    from tokc.baselines.audio import Unreachable, audio_codec, compress_audio
    from tokc.metrics.audio import visqol_available

    if profile not in ("speech", "music"):
        raise ValueError(f"unknown audio profile {profile!r}; use 'speech' or 'music'")
    start = time.perf_counter()
    notes = []
    if visqol:
        why = visqol_available()
        if why:
            notes.append(f"ViSQOL not measured: {why}")
            visqol = False
    else:
        notes.append("ViSQOL not measured (switched off)")
    measure = _speech_metrics if profile == "speech" else _music_metrics
    clips = [(path, *load_audio(path, mono=profile == "speech")) for path in paths]
    short = [path.name for path, x, rate in clips if x.shape[0] < min_seconds * rate]
    if short:
        clips = [c for c in clips if c[0].name not in short]
        notes.append(f"{len(short)} clip(s) shorter than {min_seconds:g} s left out: "
                     + ", ".join(short))
        if not clips:
            raise ValueError(f"every clip is shorter than {min_seconds:g} s")
    if max_seconds:
        clips = [(path, x[: max(1, int(max_seconds * rate))], rate) for path, x, rate in clips]
        notes.append(f"clips cropped to their first {max_seconds:g} s")
    grids = audio_grids(codecs, clips[0][2] if clips else 48000, bitrates, profile)
    points, skipped = [], []
    limit, why = _one_thread()
    if why:
        notes.append(why)
    with limit:
        # warm-up: load weights and libraries outside the timed runs
        for c in codecs:
            if clips:
                _, x, rate = clips[0]
                try:
                    compress_audio(c, x[: rate // 2 + 1], rate, max(grids[c]))
                except Unreachable:
                    pass
        for path, audio, rate in clips:
            seconds = audio.shape[0] / rate
            for c in codecs:
                for kbps in grids[c]:
                    try:
                        out = compress_audio(c, audio, rate, kbps)
                    except Unreachable as e:
                        skipped.append(Skipped(c, kbps, path.name, str(e)))
                        if progress:
                            progress(1)
                        continue
                    metrics = measure(audio, out.decoded, rate, visqol)
                    metrics["file_kbps"] = out.actual_kbps
                    points.append(
                        RDPoint(
                            c,
                            kbps,
                            path.name,
                            out.counted_bytes if out.counted_bytes is not None else out.nbytes,
                            out.counted_kbps,
                            metrics,
                            out.encode_s,
                            out.decode_s,
                            seconds,
                        )
                    )
                    if progress:
                        progress(1)
    missing: dict[tuple[str, float], int] = {}
    for sk in skipped:
        missing[(sk.codec, sk.setting)] = missing.get((sk.codec, sk.setting), 0) + 1
    for (c, kbps), n in sorted(missing.items()):
        notes.append(
            f"{c} at {kbps:g} kbps: not reached on {n} of {len(clips)} clips (below the "
            "codec's lowest rate), no mean point"
        )
    return RDResult(
        kind="audio",
        rate_unit="kbps",
        source=_source(paths),
        items=tuple(path.name for path, _, _ in clips),
        codecs=tuple(codecs),
        grids=grids,
        settings={c: audio_codec(c).settings for c in codecs},
        points=tuple(points),
        means=_mean_points(points, "audio", complete=len(clips)),
        runtime_s=time.perf_counter() - start,
        profile=profile,
        notes=tuple(notes),
        skipped=tuple(skipped),
    )


def _source(paths: Sequence[Path]) -> str:
    """The folder the items came from (their common parent)."""
    if not paths:
        return ""
    import os

    return os.path.commonpath([str(Path(p).parent) for p in paths])


# --- BD-rates ----------------------------------------------------------------------------------


def bd_table(result: RDResult, anchor: str | None = None) -> BDTable:
    """BD-rate of every codec against every other codec, for each metric of the result."""
    from tokc.metrics.bdrate import bd_rate

    anchor = anchor or default_anchor(result)
    if anchor not in result.codecs:
        raise ValueError(f"anchor {anchor!r} is not among the codecs {list(result.codecs)}")

    def curve(codec: str, spec: MetricSpec) -> tuple[list[float], list[float]]:
        """Mean rates and qualities; a lower-is-better metric is negated."""
        sign = 1.0 if spec.higher_is_better else -1.0
        pts = result.curve(codec)
        return [p.rate for p in pts], [sign * p.metrics.get(spec.key, math.nan) for p in pts]

    entries = []
    for spec in result.metric_specs:
        for codec in result.codecs:
            for ref in result.codecs:
                if codec == ref:
                    continue
                values, note = [], ""
                for method in ("cubic", "pchip"):
                    try:
                        # whole curves: 4 points for both fits, as VCEG-M33 asks
                        values.append(
                            bd_rate(*curve(ref, spec), *curve(codec, spec), method, min_points=4)
                        )
                    except ValueError as e:
                        values.append(None)
                        note = str(e)
                entries.append(BDEntry(codec, ref, spec.key, values[0], values[1], note))
    return BDTable(anchor, tuple(entries))


def default_anchor(result: RDResult) -> str:
    """Audio: the first of AUDIO_ANCHORS among the codecs; else the first codec."""
    if result.kind == "audio":
        for c in AUDIO_ANCHORS:
            if c in result.codecs:
                return c
    return result.codecs[0]


def range_bd(
    result: RDResult, anchor: str | None = None, ranges: Sequence[BDRange] = AUDIO_BD_RANGES
) -> tuple[RangeBD, ...]:
    """BD-rate (pchip) of every other codec against `anchor` over each range's anchor points
    (see BDRange), for the range's metrics that the result has."""
    from tokc.metrics.bdrate import bd_rate

    anchor = anchor or default_anchor(result)
    keys = {s.key for s in result.metric_specs}
    entries = []
    for rng in ranges:
        ref = [p for p in result.curve(anchor) if rng.lo <= p.setting <= rng.hi]
        ref.sort(key=lambda p: p.setting)
        settings = tuple(p.setting for p in ref)
        for codec in result.codecs:
            if codec == anchor:
                continue
            test = result.curve(codec)
            for key in rng.metrics:
                if key not in keys:
                    continue
                qa = [p.metrics.get(key, math.nan) for p in ref]
                qt = [p.metrics.get(key, math.nan) for p in test]
                fa = [q for q in qa if math.isfinite(q)]
                ft = [q for q in qt if math.isfinite(q)]
                quality = (min(fa), max(fa)) if fa else None
                try:
                    value = bd_rate([p.rate for p in ref], qa, [p.rate for p in test], qt,
                                    method="pchip")
                    note = ""
                    lo, hi = max(min(fa), min(ft)), min(max(fa), max(ft))
                    if quality and (lo > quality[0] or hi < quality[1]):
                        note = f"over {lo:.3f}..{hi:.3f} only (the curves' shared range)"
                        quality = (lo, hi)
                except ValueError as e:
                    value, note = None, str(e)
                entries.append(
                    RangeBD(codec, anchor, key, rng.label, settings, quality, value, note)
                )
    return tuple(entries)


@dataclass(frozen=True)
class BarCheck:
    what: str
    value: float | None
    passed: bool | None  # None: could not be measured
    note: str = ""


def bar_checks(
    result: RDResult, ranges: Sequence[RangeBD], codec: str = "tokc"
) -> tuple[BarCheck, ...]:
    """Issue 15's bar for `codec` (speech profile): every range BD-rate below 0, decode faster
    than BAR_DECODE_XRT and encode faster than BAR_ENCODE_XRT real time (the slowest grid
    point, one thread)."""
    if result.kind != "audio" or result.profile != "speech" or codec not in result.codecs:
        return ()
    checks = []
    for e in ranges:
        if e.codec != codec:
            continue
        passed = None if e.bd_rate is None else e.bd_rate < 0
        checks.append(BarCheck(f"BD-rate {e.metric} vs {e.reference}, {e.range} < 0 %",
                               e.bd_rate, passed, e.note))
    curve = result.curve(codec)
    for what, attr, need in (("decode", "decode_xrt", BAR_DECODE_XRT),
                             ("encode", "encode_xrt", BAR_ENCODE_XRT)):
        speeds = [getattr(p, attr) for p in curve]
        speeds = [v for v in speeds if v is not None]
        low = min(speeds) if speeds else None
        checks.append(BarCheck(f"{what} > {need:g}x real time, 1 thread (slowest point)", low,
                               None if low is None else low > need))
    return tuple(checks)


# --- reports -------------------------------------------------------------------------------------


def _finite(x: object) -> object:
    """JSON has no inf/nan: write them as null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _point_json(p: RDPoint) -> dict:
    doc = {
        "codec": p.codec,
        "setting": p.setting,
        "item": p.item,
        "bytes": p.nbytes,
        "rate": p.rate,
        **p.metrics,
        "encode_s": p.encode_s,
        "decode_s": p.decode_s,
    }
    if p.duration_s is not None:
        doc |= {"duration_s": p.duration_s, "encode_xrt": p.encode_xrt,
                "decode_xrt": p.decode_xrt}
    return doc


def library_versions() -> dict[str, str]:
    versions = {}
    try:
        import imagecodecs

        wanted = ("libjpeg_turbo", "libwebp", "libavif", "libjxl", "imagecodecs")
        for part in imagecodecs.version().split(", "):
            name, _, ver = part.partition("-")
            if name in wanted:
                versions[name] = ver
    except ImportError:
        pass
    try:
        import av

        versions["pyav"] = av.__version__
        versions["libavcodec"] = ".".join(map(str, av.library_versions.get("libavcodec", ())))
    except ImportError:
        pass
    from importlib import metadata

    for dist in ("visqol-python", "ai-edge-litert", "pesq", "pystoi", "threadpoolctl"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def _bd_cell(e: BDEntry) -> str:
    if e.bd_rate is None and e.bd_rate_pchip is None:
        return "n/a"
    return f"{_fmt(e.bd_rate, 1)} ({_fmt(e.bd_rate_pchip, 1)})"


TIMING_NOTE = (
    "Encode/decode: wall time per clip on one thread (BLAS and OpenMP pools limited to 1 by "
    "threadpoolctl; tokc's ONNX Runtime sessions have 1 intra-op thread; PyAV's audio encoders "
    "and decoders are single-threaded), averaged over clips; xRT = clip seconds / wall seconds "
    "(the mean clip length over the mean time). Timings include resampling to and from the "
    "codec's rate and, for PyAV codecs, the container; the machine may have been shared."
)
METRIC_NOTE = {
    "speech": "PESQ-WB: ITU-T P.862.2 (pesq) at 16 kHz. STOI: pystoi. ViSQOL speech: "
    "visqol-python (ViSQOL v3 port), speech mode at 16 kHz, deep-lattice mapper. log-mel "
    "distance: mean |log10 mel| difference (80 mels, 1024/256). SI-SDR in dB.",
    "music": "ViSQOL audio: visqol-python (ViSQOL v3 port), audio mode at 48 kHz (SVR mapper), "
    "on the mono downmix of reference and decoded audio; the codecs code the clips' own "
    "channels (mono or stereo). log-mel distance on the same downmix.",
}


def _range_markdown(entries: Sequence[RangeBD]) -> list[str]:
    lines = [
        "| codec | vs | range (anchor points) | metric | BD-rate % (pchip) | quality interval "
        "| note |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        pts = ", ".join(f"{s:g}" for s in e.anchor_settings)
        q = "n/a" if e.quality is None else f"{e.quality[0]:.3f}..{e.quality[1]:.3f}"
        lines.append(f"| {e.codec} | {e.reference} | {e.range} ({pts}) | {e.metric} | "
                     f"{_fmt(e.bd_rate, 1)} | {q} | {e.note} |")
    return lines


def _markdown(
    result: RDResult,
    table: BDTable,
    name: str,
    ranges: Sequence[RangeBD] = (),
    bar: Sequence[BarCheck] = (),
) -> str:
    specs = result.metric_specs
    audio = result.kind == "audio"
    noun = "images" if result.kind == "image" else "clips"
    knob = "quality" if result.kind == "image" else "kbps asked"
    lines = [
        f"# RD benchmark: {name}",
        "",
        f"{len(result.items)} {noun} from `{result.source}`; runtime "
        f"{result.runtime_s / 60:.1f} min. Mean curves average the per-item rate and metrics "
        f"at each grid point.",
        "",
    ]
    if audio:
        profile = result.profile or "speech"
        lines += [f"Profile: {profile}. {METRIC_NOTE.get(profile, '')}", "", TIMING_NOTE, ""]
    if result.notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in result.notes] + [""]
    lines += [
        "| codec | settings | grid |",
        "|---|---|---|",
    ]
    for c in result.codecs:
        grid = ", ".join(f"{g:g}" for g in result.grids[c])
        lines.append(f"| {c} | {result.settings[c]} | {grid} |")
    if bar:
        lines += ["", "## Issue 15 bar (tokc, speech)", "", "| check | value | passed | note |",
                  "|---|---|---|---|"]
        for b in bar:
            verdict = "n/a" if b.passed is None else ("yes" if b.passed else "NO")
            lines.append(f"| {b.what} | {_fmt(b.value, 1)} | {verdict} | {b.note} |")
    if ranges:
        lines += [
            "",
            f"## BD-rate over rate ranges vs {ranges[0].reference} (%, pchip)",
            "",
            "The anchor's points whose asked kbps is in the range set the quality interval; "
            "the other codec's whole mean curve is interpolated (piecewise-cubic, PCHIP: "
            "Opus's curve has a jump where it goes from narrowband to wideband) over it. "
            "Negative = fewer bits for the same quality.",
            "",
            *_range_markdown(ranges),
        ]
    lines += [
        "",
        f"## BD-rate vs {table.anchor} (%)",
        "",
        "Cubic fit of log-rate against quality (VCEG-M33) over the shared quality range, with "
        "the piecewise-cubic (pchip) variant in parentheses; negative = fewer bits for the same "
        "quality. When the two disagree much, the curves are too irregular for a cubic fit.",
        "",
        "| codec | " + " | ".join(s.label for s in specs) + " |",
        "|---|" + "---|" * len(specs),
    ]
    for c in result.codecs:
        if c == table.anchor:
            continue
        cells = [_bd_cell(table.get(c, table.anchor, s.key)) for s in specs]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    for s in specs:
        lines += [
            "",
            f"### BD-rate (%), {s.label}: row codec vs column reference",
            "",
            "| codec | " + " | ".join(result.codecs) + " |",
            "|---|" + "---|" * len(result.codecs),
        ]
        for c in result.codecs:
            cells = ["—" if c == r else _bd_cell(table.get(c, r, s.key)) for r in result.codecs]
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += ["", "## Mean curves", ""]
    for c in result.codecs:
        speed = " encode xRT | decode xRT |" if audio else ""
        lines += [
            f"### {c}",
            "",
            f"| {knob} | {result.rate_unit} | "
            + " | ".join(s.label for s in specs)
            + " | encode ms | decode ms |"
            + speed,
            "|---|---|" + "---|" * len(specs) + "---|---|" + ("---|---|" if audio else ""),
        ]
        for p in sorted(result.curve(c), key=lambda p: p.rate):
            cells = [
                _fmt(p.metrics.get(s.key, math.nan), 3 if s.key in ("stoi", "mel_distance") else 2)
                for s in specs
            ]
            dec = "n/a" if p.decode_s is None else f"{1000 * p.decode_s:.1f}"
            row = (
                f"| {p.setting:g} | {p.rate:.3f} | "
                + " | ".join(cells)
                + f" | {1000 * p.encode_s:.1f} | {dec} |"
            )
            if audio:
                row += f" {_fmt(p.encode_xrt, 1)} | {_fmt(p.decode_xrt, 1)} |"
            lines.append(row)
        lines.append("")
    if result.skipped:
        lines += ["## Skipped points", "", "| codec | kbps | clip | why |", "|---|---|---|---|"]
        lines += [f"| {k.codec} | {k.setting:g} | {k.item} | {k.reason} |" for k in result.skipped]
        lines.append("")
    return "\n".join(lines)


def _plot(result: RDResult, path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    specs = result.metric_specs
    fig, axes = plt.subplots(1, len(specs), figsize=(5 * len(specs), 4.2))
    for ax, s in zip(axes, specs, strict=True):
        for c in result.codecs:
            pts = sorted(result.curve(c), key=lambda p: p.rate)
            ax.plot([p.rate for p in pts], [p.metrics.get(s.key, math.nan) for p in pts], "o-",
                    ms=3, label=c)
        ax.set_xlabel(result.rate_unit)
        ax.set_ylabel(s.label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    if result.kind == "audio":
        for ax in axes:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    noun = "images" if result.kind == "image" else "clips"
    fig.suptitle(f"{name}: mean over {len(result.items)} {noun}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_result(path: Path) -> RDResult:
    """An RDResult back from the JSON that write_report wrote (null metrics read as +inf,
    the only non-finite value the metrics produce)."""
    doc = json.loads(Path(path).read_text())
    fixed = ("codec", "setting", "item", "bytes", "rate", "encode_s", "decode_s", "duration_s",
             "encode_xrt", "decode_xrt")

    def point(d: dict) -> RDPoint:
        metrics = {k: math.inf if v is None else v for k, v in d.items() if k not in fixed}
        return RDPoint(
            d["codec"],
            d["setting"],
            d["item"],
            d["bytes"],
            d["rate"],
            metrics,
            d["encode_s"],
            d["decode_s"],
            d.get("duration_s"),
        )

    return RDResult(
        kind=doc["kind"],
        rate_unit=doc["rate_unit"],
        source=doc["source"],
        items=tuple(doc["items"]),
        codecs=tuple(doc["codecs"]),
        grids={c: tuple(g) for c, g in doc["grids"].items()},
        settings=doc["settings"],
        points=tuple(point(d) for d in doc["points"]),
        means=tuple(point(d) for c in doc["codecs"] for d in doc["mean"][c]),
        runtime_s=doc["runtime_s"],
        profile=doc.get("profile", ""),
        notes=tuple(doc.get("notes", ())),
        skipped=tuple(Skipped(**k) for k in doc.get("skipped", ())),
    )


def write_report(
    result: RDResult, out_dir: Path, name: str, anchor: str | None = None, overwrite: bool = False
) -> ReportPaths:
    """Write <name>.json, <name>.png and <name>.md into out_dir."""
    out_dir = Path(out_dir)
    paths = ReportPaths(out_dir / f"{name}.json", out_dir / f"{name}.png", out_dir / f"{name}.md")
    if not overwrite:
        for p in (paths.json, paths.png, paths.md):
            if p.exists():
                raise FileExistsError(f"{p} exists (use -f to overwrite)")
    table = bd_table(result, anchor)
    ranges = range_bd(result, table.anchor) if result.profile == "speech" else ()
    bar = bar_checks(result, ranges)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "name": name,
        "kind": result.kind,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": result.source,
        "items": list(result.items),
        "rate_unit": result.rate_unit,
        "codecs": list(result.codecs),
        "settings": dict(result.settings),
        "grids": {c: list(g) for c, g in result.grids.items()},
        "profile": result.profile,
        "notes": list(result.notes),
        **({"timing": TIMING_NOTE, "metrics_note": METRIC_NOTE.get(result.profile or "speech")}
           if result.kind == "audio" else {}),
        "versions": library_versions(),
        "runtime_s": result.runtime_s,
        "mean": {c: [_point_json(p) for p in result.curve(c)] for c in result.codecs},
        "bd_rate": {
            "anchor": table.anchor,
            "unit": "percent",
            "entries": [asdict(e) for e in table.entries],
        },
        "bd_rate_ranges": [asdict(e) for e in ranges],
        "bar": [asdict(b) for b in bar],
        "skipped": [asdict(k) for k in result.skipped],
        "points": [_point_json(p) for p in result.points],
    }
    paths.json.write_text(json.dumps(_finite(doc), indent=1, allow_nan=False) + "\n")
    paths.md.write_text(_markdown(result, table, name, ranges, bar) + "\n")
    _plot(result, paths.png, name)
    return paths
