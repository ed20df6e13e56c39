"""Rate-distortion benchmark over a folder of images or audio clips.

Every registered codec (tokc.baselines) is run at each point of its grid on every item;
the result holds per-item points and mean curves (CompressAI convention: the mean of the
per-item rates and metrics at each grid point). `write_report` turns a result into
<name>.json, <name>.png (mean curves) and <name>.md (BD-rate tables and the curves).
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
AUDIO_METRICS = (
    MetricSpec("pesq", "PESQ-WB", True),
    MetricSpec("stoi", "STOI", True),
    MetricSpec("mel_distance", "log-mel distance", False),
    MetricSpec("si_sdr", "SI-SDR (dB)", True),
)


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

    @property
    def metric_specs(self) -> tuple[MetricSpec, ...]:
        return IMAGE_METRICS if self.kind == "image" else AUDIO_METRICS

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


def list_files(folder: Path, suffixes: Sequence[str], limit: int | None = None) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in suffixes)
    return files[:limit] if limit else files


def load_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 (channels averaged) and the sample rate."""
    import soundfile

    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(rate)


# --- running ---------------------------------------------------------------------------------


def _mean_points(points: Sequence[RDPoint], kind: str) -> tuple[RDPoint, ...]:
    from tokc.metrics.image import ms_ssim_db

    groups: dict[tuple[str, float], list[RDPoint]] = {}
    for p in points:
        groups.setdefault((p.codec, p.setting), []).append(p)
    means = []
    for (codec, setting), group in groups.items():
        metrics = {k: float(np.mean([p.metrics[k] for p in group])) for k in group[0].metrics}
        if kind == "image":
            metrics["ms_ssim_db"] = ms_ssim_db(metrics["ms_ssim"])
        decode = [p.decode_s for p in group]
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


def audio_grids(codecs: Sequence[str], sample_rate: int, given: GridsIn | None = None) -> Grids:
    """Each codec's kbps grid: the given one, else its default bitrates valid at sample_rate."""
    from tokc.baselines.audio import audio_codec

    grids = {}
    for c in codecs:
        codec = audio_codec(c)
        allowed = codec.bitrate_choices(sample_rate)
        grid = (given or {}).get(c) or [b for b in codec.bitrates if b in allowed]
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


def run_audio_rd(
    paths: Sequence[Path],
    codecs: Sequence[str],
    bitrates: GridsIn | None = None,
    progress: Progress | None = None,
) -> RDResult:
    """Run each codec over its kbps grid on each clip (mono; stereo files are averaged).

    A codec's default grid keeps only bitrates valid at the clip's sample rate, so
    the clips of one run should share a sample rate.
    """
    from tokc.baselines.audio import audio_codec, compress_audio
    from tokc.metrics.audio import audio_metrics

    start = time.perf_counter()
    clips = [(path, *load_audio(path)) for path in paths]
    grids = audio_grids(codecs, clips[0][2] if clips else 48000, bitrates)
    points = []
    for path, audio, rate in clips:
        for c in codecs:
            for kbps in grids[c]:
                out = compress_audio(c, audio, rate, kbps)
                m = audio_metrics(audio, out.decoded, rate)
                metrics = {
                    "pesq": m.pesq,
                    "stoi": m.stoi,
                    "mel_distance": m.mel_distance,
                    "si_sdr": m.si_sdr,
                }
                points.append(
                    RDPoint(
                        c,
                        kbps,
                        path.name,
                        out.nbytes,
                        out.actual_kbps,
                        metrics,
                        out.encode_s,
                        out.decode_s,
                    )
                )
                if progress:
                    progress(1)
    return RDResult(
        kind="audio",
        rate_unit="kbps",
        source=str(Path(paths[0]).parent) if paths else "",
        items=tuple(p.name for p in paths),
        codecs=tuple(codecs),
        grids=grids,
        settings={c: audio_codec(c).settings for c in codecs},
        points=tuple(points),
        means=_mean_points(points, "audio"),
        runtime_s=time.perf_counter() - start,
    )


# --- BD-rates ----------------------------------------------------------------------------------


def bd_table(result: RDResult, anchor: str | None = None) -> BDTable:
    """BD-rate of every codec against every other codec, for each metric of the result."""
    from tokc.metrics.bdrate import bd_rate

    anchor = anchor or result.codecs[0]
    if anchor not in result.codecs:
        raise ValueError(f"anchor {anchor!r} is not among the codecs {list(result.codecs)}")

    def curve(codec: str, spec: MetricSpec) -> tuple[list[float], list[float]]:
        """Mean rates and qualities; a lower-is-better metric is negated."""
        sign = 1.0 if spec.higher_is_better else -1.0
        pts = result.curve(codec)
        return [p.rate for p in pts], [sign * p.metrics[spec.key] for p in pts]

    entries = []
    for spec in result.metric_specs:
        for codec in result.codecs:
            for ref in result.codecs:
                if codec == ref:
                    continue
                values, note = [], ""
                for method in ("cubic", "pchip"):
                    try:
                        values.append(
                            bd_rate(*curve(ref, spec), *curve(codec, spec), method=method)
                        )
                    except ValueError as e:
                        values.append(None)
                        note = str(e)
                entries.append(BDEntry(codec, ref, spec.key, values[0], values[1], note))
    return BDTable(anchor, tuple(entries))


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
    return {
        "codec": p.codec,
        "setting": p.setting,
        "item": p.item,
        "bytes": p.nbytes,
        "rate": p.rate,
        **p.metrics,
        "encode_s": p.encode_s,
        "decode_s": p.decode_s,
    }


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
    return versions


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def _bd_cell(e: BDEntry) -> str:
    if e.bd_rate is None and e.bd_rate_pchip is None:
        return "n/a"
    return f"{_fmt(e.bd_rate, 1)} ({_fmt(e.bd_rate_pchip, 1)})"


def _markdown(result: RDResult, table: BDTable, name: str) -> str:
    specs = result.metric_specs
    noun = "images" if result.kind == "image" else "clips"
    knob = "quality" if result.kind == "image" else "kbps asked"
    lines = [
        f"# RD benchmark: {name}",
        "",
        f"{len(result.items)} {noun} from `{result.source}`; runtime "
        f"{result.runtime_s / 60:.1f} min. Mean curves average the per-item rate and metrics "
        f"at each grid point.",
        "",
        "| codec | settings | grid |",
        "|---|---|---|",
    ]
    for c in result.codecs:
        grid = ", ".join(f"{g:g}" for g in result.grids[c])
        lines.append(f"| {c} | {result.settings[c]} | {grid} |")
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
        lines += [
            f"### {c}",
            "",
            f"| {knob} | {result.rate_unit} | "
            + " | ".join(s.label for s in specs)
            + " | encode ms | decode ms |",
            "|---|---|" + "---|" * len(specs) + "---|---|",
        ]
        for p in sorted(result.curve(c), key=lambda p: p.rate):
            cells = [
                _fmt(p.metrics[s.key], 3 if s.key in ("stoi", "mel_distance") else 2) for s in specs
            ]
            dec = "n/a" if p.decode_s is None else f"{1000 * p.decode_s:.1f}"
            lines.append(
                f"| {p.setting:g} | {p.rate:.3f} | "
                + " | ".join(cells)
                + f" | {1000 * p.encode_s:.1f} | {dec} |"
            )
        lines.append("")
    return "\n".join(lines)


def _plot(result: RDResult, path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = result.metric_specs
    fig, axes = plt.subplots(1, len(specs), figsize=(5 * len(specs), 4.2))
    for ax, s in zip(axes, specs, strict=True):
        for c in result.codecs:
            pts = sorted(result.curve(c), key=lambda p: p.rate)
            ax.plot([p.rate for p in pts], [p.metrics[s.key] for p in pts], "o-", ms=3, label=c)
        ax.set_xlabel(result.rate_unit)
        ax.set_ylabel(s.label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    noun = "images" if result.kind == "image" else "clips"
    fig.suptitle(f"{name}: mean over {len(result.items)} {noun}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_result(path: Path) -> RDResult:
    """An RDResult back from the JSON that write_report wrote (null metrics read as +inf,
    the only non-finite value the metrics produce)."""
    doc = json.loads(Path(path).read_text())
    fixed = ("codec", "setting", "item", "bytes", "rate", "encode_s", "decode_s")

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
        "versions": library_versions(),
        "runtime_s": result.runtime_s,
        "mean": {c: [_point_json(p) for p in result.curve(c)] for c in result.codecs},
        "bd_rate": {
            "anchor": table.anchor,
            "unit": "percent",
            "entries": [asdict(e) for e in table.entries],
        },
        "points": [_point_json(p) for p in result.points],
    }
    paths.json.write_text(json.dumps(_finite(doc), indent=1, allow_nan=False) + "\n")
    paths.md.write_text(_markdown(result, table, name) + "\n")
    _plot(result, paths.png, name)
    return paths
