"""tokc-image-v1 codec: images <-> bytes.

Pipeline (encoder):  pixels -g_a-> y -h_a-> z -round-> z_int
                     z_int -intnet (exact integers)-> mean, log-scale
                     then slice by slice (weights with a channel-wise context model; else one
                     slice): tokens of the slices before -intnet-> mean and log-scale shifts,
                     q = round(y*gain - offset), offset = mean*gain + mean shift,
                     coded with the integer table of its scale index
Decoder: z_int from the stream, the same integer networks, q slice by slice from the stream,
                     y_hat = (q + offset) * igain -g_s-> pixels.

Only g_a, h_a and g_s run in floating point (torch or ONNX Runtime, in tiles so that memory
stays bounded); float error there moves pixels, never the token stream.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from tokc import format as fmt
from tokc.compress import entropy, intnet
from tokc.compress.base import CodecError, EncodeResult
from tokc.compress.intnet_ort import Network
from tokc.compress.pixels import (  # noqa: F401  (read_image: the old import path)
    as_image,
    merge_alpha_gray,
    read_image,
    split_alpha_gray,
)

CODEC_ID = "tokc-image-v1"
WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / f"{CODEC_ID}.safetensors"
PAD = 64  # the hyper-latent's stride
UNIT = 16  # the latent's stride
TILE = 48  # latents per tile side (768 px)
MARGIN = 4  # latents of context around each tile (64 px, more than the receptive field)
REFINE_STEPS = (0, 5, 10, 20, 30, 45, 60, 80, 100)  # latent refinement steps per effort 1..9
REFINE_MAX_PIXELS = 4 << 20
REFINE_LR = 0.003
LEVEL_MIN = -4000  # rate levels below the lowest trained one extrapolate its gains
LEVEL_Q0 = -2000  # the level of -q 0
RDOQ_WEIGHT = 2.0  # distortion weight of the token choice: BD-rate on 8 held-out training images
# -1.3 % at 1, -3.2 % at 1.5, -3.8 % at 2, -3.6 % at 3, -2.9 % at 4 (against plain rounding)


# --- weights ---------------------------------------------------------------------------------


def int_layers(tensors: dict, prefix: str, specs: list[dict], threads: int = 0) -> Network:
    """An integer network from the weights file: tensors {prefix}.{i}.weight / .bias and the
    meta's layer specs (shift: one or per channel; in_clip: absent in files before it)."""
    return Network([
        intnet.IntConv(
            tensors[f"{prefix}.{i}.weight"].astype(np.int64),
            tensors[f"{prefix}.{i}.bias"].astype(np.int64),
            np.asarray(spec["shift"], dtype=np.int64), bool(spec["relu"]), bool(spec["shuffle"]),
            int(spec.get("in_clip", 2**intnet.ACT_BITS)),
        )
        for i, spec in enumerate(specs)
    ], threads=threads)


class ImageWeights:
    """Everything in the weights file, as numpy arrays; no torch needed."""

    def __init__(self, path: Path = WEIGHTS, threads: int = 0):
        """threads: of the integer networks' ONNX Runtime sessions (0: ONNX Runtime's default)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise CodecError(f"weights file not found: {path}")
        raw = path.read_bytes()
        self.path = path
        self.digest = hashlib.sha256(raw).digest()[:8]
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads(f.metadata()["tokc"])
            self.tensors = {k: f.get_tensor(k) for k in f.keys()}
        self.meta = meta
        self.config = meta["config"]
        self.levels = int(self.config["levels"])
        self.frac = int(meta["frac_bits"])
        self.hs = int_layers(self.tensors, "hs", meta["hs_layers"], threads)
        # channel-wise context: one integer network per slice after the first
        self.ctx = [
            int_layers(self.tensors, f"ctx.{s}", specs, threads)
            for s, specs in enumerate(meta.get("ctx_layers", []), start=1)
        ]
        # checkerboard context: one integer network per slice (none in older files)
        self.spatial = [
            int_layers(self.tensors, f"spatial.{s}", specs, threads)
            for s, specs in enumerate(meta.get("spatial_layers", []))
        ]
        self.log_gain_q = self.tensors["log_gain_q"].astype(np.int64)
        self.log_igain = self.tensors["log_igain"].astype(np.float64)
        zr = int(meta["z_radius"])
        self.z_tables = entropy.Tables(
            self.tensors["z_freq"], np.full(len(self.tensors["z_freq"]), zr)
        )
        self.y_tables = entropy.Tables(self.tensors["y_freq"], self.tensors["y_offsets"])

    @property
    def slice_channels(self) -> int:
        """Latent channels per coded slice (all of them without a context model)."""
        return int(self.config["m"]) // (len(self.ctx) + 1)

    def float_state(self, prefix: str) -> dict[str, np.ndarray]:
        p = prefix + "."
        return {k[len(p):]: v.astype(np.float32) for k, v in self.tensors.items() if k.startswith(p)}

    # integer rate parameter: level in thousandths
    def log_gain_at(self, level_milli: int) -> np.ndarray:
        """Fixed-point log gains at a level, by exact integer interpolation."""
        lo = min(max(level_milli // 1000, 0), self.levels - 2)
        t = level_milli - 1000 * lo
        a, b = self.log_gain_q[lo], self.log_gain_q[lo + 1]
        return a + ((b - a) * t) // 1000

    def lambda_at(self, level_milli: int) -> float:
        """The rate-distortion trade-off the model was trained for at a level (loss = bpp +
        lambda * MSE on 0..255), geometric between the first and last level."""
        t = level_milli / 1000 / (self.levels - 1)
        return self.config["lambda_min"] ** (1 - t) * self.config["lambda_max"] ** t

    def log_igain_at(self, level_milli: int) -> np.ndarray:
        lo = min(max(level_milli // 1000, 0), self.levels - 2)
        t = (level_milli - 1000 * lo) / 1000
        return self.log_igain[lo] * (1 - t) + self.log_igain[lo + 1] * t


# --- float transforms --------------------------------------------------------------------------


class TorchTransforms:
    """g_a, h_a, g_s on PyTorch (eager, float32)."""

    name = "torch"

    def __init__(self, weights: ImageWeights):
        try:
            import torch
        except ImportError:
            raise CodecError("the torch backend needs PyTorch: pip install 'tokc-codec[torch]'") from None
        from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior

        self.torch = torch
        model = ImageHyperprior(HyperpriorConfig(**weights.config))
        for name in ("g_a", "h_a", "g_s"):
            state = {k: torch.from_numpy(v) for k, v in weights.float_state(name).items()}
            getattr(model, name).load_state_dict(state)
        self.model = model.eval()

    def _run(self, module, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return module(self.torch.from_numpy(np.ascontiguousarray(x))[None])[0].numpy()

    def analysis(self, x):
        return self._run(self.model.g_a, x)

    def hyper_analysis(self, y):
        return self._run(self.model.h_a, y)

    def synthesis(self, y_hat):
        return self._run(self.model.g_s, y_hat)


def get_transforms(weights: ImageWeights, backend: str = "auto"):
    """auto: ONNX Runtime when the shipped export matches the weights (faster, no torch),
    else PyTorch."""
    if backend not in ("auto", "onnx", "torch", "tensorrt"):
        raise CodecError(f"unknown backend {backend!r} (auto, onnx, torch, tensorrt)")
    if backend == "tensorrt":  # NVIDIA GPUs and Jetson: engines built from the shipped ONNX
        from tokc.runtimes.base import load_image_transforms, read_export, sidecar_name

        exp = read_export(Path(weights.path).parent / sidecar_name(CODEC_ID))
        if exp.weights_sha256 != hashlib.sha256(Path(weights.path).read_bytes()).hexdigest():
            raise CodecError("the shipped ONNX files were exported from other weights")
        try:
            return load_image_transforms(exp, "tensorrt", "cuda")
        except (ImportError, RuntimeError) as e:
            raise CodecError(f"the tensorrt backend is unavailable here: {e}") from None
    if backend in ("auto", "onnx"):
        from tokc.runtimes.image_onnx import OnnxTransforms

        try:
            return OnnxTransforms(weights)
        except (CodecError, ImportError):
            if backend == "onnx":
                raise
    return TorchTransforms(weights)


def tiled(fn, x: np.ndarray, r_in: int, r_out: int, tile: int = TILE, margin: int = MARGIN):
    """Apply a fully convolutional fn over x (C, H, W) in tiles of the latent grid, each with
    `margin` latents of context, keeping the tile's centre: equal to one pass over the whole
    input up to float rounding, with bounded memory."""
    _, hh, ww = x.shape
    h, w = hh // r_in, ww // r_in
    out = None
    for i0 in range(0, h, tile):
        for j0 in range(0, w, tile):
            i1, j1 = min(i0 + tile, h), min(j0 + tile, w)
            a0, a1 = max(i0 - margin, 0), min(i1 + margin, h)
            b0, b1 = max(j0 - margin, 0), min(j1 + margin, w)
            res = fn(x[:, a0 * r_in : a1 * r_in, b0 * r_in : b1 * r_in])
            if out is None:
                out = np.empty((res.shape[0], h * r_out, w * r_out), np.float32)
            out[:, i0 * r_out : i1 * r_out, j0 * r_out : j1 * r_out] = res[
                :, (i0 - a0) * r_out : (i1 - a0) * r_out, (j0 - b0) * r_out : (j1 - b0) * r_out
            ]
    return out


# --- the codec ---------------------------------------------------------------------------------


def quality_to_level(quality: float, levels: int) -> int:
    """-q 0..100 -> rate level in thousandths, linear from LEVEL_Q0 (q 0) to the highest
    trained level (q 100). Levels below 0 extrapolate the gains of the lowest trained level
    (coarser steps than any trained level) to reach about 0.1 bpp."""
    if not 0 <= quality <= 100:
        raise CodecError(f"quality must be in 0..100, got {quality}")
    top = (levels - 1) * 1000
    return int(round(LEVEL_Q0 + quality / 100 * (top - LEVEL_Q0)))


def level_to_quality(level_milli: int, levels: int) -> float:
    top = (levels - 1) * 1000
    return (level_milli - LEVEL_Q0) / (top - LEVEL_Q0) * 100


@dataclass(frozen=True)
class Analysed:
    """The encoder's level-independent work on one image, reused across rate searches."""

    rgb: np.ndarray  # (H, W, 3) uint8 as coded
    y: np.ndarray  # (M, h, w) float32
    z: np.ndarray  # (Cz, hz, wz) int64
    mean: np.ndarray  # (M, h, w) float64, ungained
    log_scale_q: np.ndarray  # (M, h, w) int64 fixed point


@dataclass(frozen=True)
class Coded:
    """The latents at one rate level, as coded."""

    q: np.ndarray  # (M, h, w) int64 tokens
    index: np.ndarray  # (M, h, w) int64 scale index: the coding table of each token
    offset: np.ndarray  # (M, h, w) float64: y*gain is coded as q + offset


class ImageCodec:
    codec_id = CODEC_ID
    modality = "image"

    def __init__(self, weights: ImageWeights | None = None, backend: str = "auto"):
        self.weights = weights or ImageWeights()
        self.backend = backend

    @cached_property
    def transforms(self):
        return get_transforms(self.weights, self.backend)

    @cached_property
    def _torch_transforms(self):  # for encoder-side refinement, whatever the backend
        return TorchTransforms(self.weights)

    # -- shared by encoder and decoder: exact integer entropy parameters --
    def _entropy_params(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.weights.hs(z)
        m = out.shape[0] // 2
        return out[:m] / 2.0**self.weights.frac, out[m:].astype(np.int64)

    def _scale_index(self, log_scale_q: np.ndarray, level_milli: int,
                     channels: slice = slice(None)) -> np.ndarray:
        meta = self.weights.meta
        lg = self.weights.log_gain_at(level_milli)[channels, None, None]
        step = int(meta["scale_step_q"])
        k = (log_scale_q + lg - int(meta["scale_base_q"]) + step // 2) // step
        return np.clip(k, 0, len(self.weights.y_tables.offsets) - 1)

    # -- encoder --
    def analyse(self, rgb: np.ndarray) -> Analysed:
        h, w = rgb.shape[:2]
        ph, pw = -h % PAD, -w % PAD
        padded = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")
        x = padded.transpose(2, 0, 1).astype(np.float32) / 255
        y = tiled(self.transforms.analysis, x, UNIT, 1)
        z = np.round(self.transforms.hyper_analysis(y)).astype(np.int64)
        mean, log_scale_q = self._entropy_params(z)
        return Analysed(rgb, y, z, mean, log_scale_q)

    def code(self, a: Analysed, level_milli: int) -> Coded:
        """The tokens of a's latents at a level, slice by slice: rounded, then, with weights
        that carry the synthesis' channel energies, each nonzero token moved one step toward
        its prediction where that lowers rate + lambda * distortion (rate-distortion optimised
        quantization; encoder only: any decoder reads the tokens the same way)."""
        w = self.weights
        yg = a.y * np.exp(w.log_gain_at(level_milli) / 2.0**w.frac)[:, None, None]
        rdoq = "synth_gain" in w.tensors
        if rdoq:  # distortion per squared token unit of each channel, in the training loss's
            # units: lambda * 255**2 * (squared error summed over 3 colours) / 3
            weight = (w.tensors["synth_gain"] * np.exp(2 * w.log_igain_at(level_milli))
                      * w.lambda_at(level_milli) * 255**2 / 3 * RDOQ_WEIGHT)[:, None]

        def tokens(ch, part, offset, index):
            r = yg[ch][:, part] - offset
            q = np.round(r).astype(np.int64)
            if not rdoq:
                return q
            q1 = q - np.sign(q)
            d_rate = w.y_tables.cost_bits(q1, index) - w.y_tables.cost_bits(q, index)
            d_dist = (r - q1) ** 2 - (r - q) ** 2
            return np.where((q != 0) & (d_rate + weight[ch] * d_dist < 0), q1, q)

        return self._slices(a.mean, a.log_scale_q, level_milli, tokens)

    def quantize(self, a: Analysed, level_milli: int) -> np.ndarray:
        return self.code(a, level_milli).q

    def _parts(self, shape: tuple[int, int]) -> list[np.ndarray]:
        """The coding order inside a slice, as boolean masks of the latent grid: all of it, or
        with the spatial context the checkerboard's anchors (row + column even), then the rest."""
        if not self.weights.spatial:
            return [np.ones(shape, dtype=bool)]
        rows, cols = np.indices(shape)
        anchor = (rows + cols) % 2 == 0
        return [anchor, ~anchor]

    def _slices(self, mean: np.ndarray, log_scale_q: np.ndarray, level_milli: int, tokens) -> Coded:
        """Walk the latents in coding order: slice by slice (one slice without a context
        model), each in its parts (see _parts). For each part: the offset (gained mean plus
        the contexts' shifts: float, used only to quantize and to reconstruct), the scale
        indices (exact integers: they choose the coding tables), then
        tokens(channels, part, offset, index) -> the part's integer tokens, (channels, count)
        (the encoder rounds, the decoder reads the stream). Encoder and decoder share this walk."""
        w = self.weights
        frac = 2.0**w.frac
        offset = mean * np.exp(w.log_gain_at(level_milli) / frac)[:, None, None]
        cs = w.slice_channels
        parts = self._parts(mean.shape[1:])
        q = np.zeros(mean.shape, dtype=np.int64)
        index = np.zeros(mean.shape, dtype=np.int64)
        for s in range(len(w.ctx) + 1):
            ch = slice(s * cs, (s + 1) * cs)
            log_scale = log_scale_q[ch]
            if s:  # channel context: the tokens of the slices before
                shift = w.ctx[s - 1](q[: s * cs])
                offset[ch] += shift[:cs] / frac
                log_scale = log_scale + shift[cs:].astype(np.int64)
            for i, part in enumerate(parts):
                if i:  # spatial context: this slice's anchor tokens
                    shift = w.spatial[s](q[ch] * parts[0])
                    offset[ch][:, part] += shift[:cs][:, part] / frac
                    log_scale = log_scale + np.where(part, shift[cs:], 0).astype(np.int64)
                index[ch] = self._scale_index(log_scale, level_milli, ch)
                q[ch][:, part] = tokens(ch, part, offset[ch][:, part], index[ch][:, part])
        return Coded(q, index, offset)

    def pack(self, a: Analysed, level_milli: int, channels: int, extra_chunks=()) -> bytes:
        enc = entropy.Encoder()
        enc.add(self.weights.z_tables, a.z, np.broadcast_to(np.arange(a.z.shape[0])[:, None, None], a.z.shape))
        c = self.code(a, level_milli)
        cs = self.weights.slice_channels
        parts = self._parts(c.q.shape[1:])
        for s in range(0, c.q.shape[0], cs):  # in the decoder's order (see _slices)
            for part in parts:
                enc.add(self.weights.y_tables, c.q[s : s + cs][:, part], c.index[s : s + cs][:, part])
        stream, escapes = enc.finish()
        chunks = [fmt.Chunk("ans ", stream)]
        if escapes:
            chunks.append(fmt.Chunk("esc ", escapes))
        chunks.extend(extra_chunks)
        header = fmt.Header(
            codec=CODEC_ID, weights_digest=self.weights.digest, modality="image",
            width=a.rgb.shape[1], height=a.rgb.shape[0], channels=channels,
            rate=(("level_milli", level_milli),),
        )
        return fmt.pack(header, chunks)

    # -- decoder --
    def latents(self, c: Coded, level_milli: int) -> np.ndarray:
        """y_hat, the input of the synthesis."""
        ig = np.exp(self.weights.log_igain_at(level_milli))[:, None, None]
        return ((c.q + c.offset) * ig).astype(np.float32)

    def reconstruct(self, c: Coded, level_milli: int, height: int, width: int) -> np.ndarray:
        y_hat = self.latents(c, level_milli)
        x = tiled(self.transforms.synthesis, y_hat, 1, UNIT)
        x = np.clip(np.round(x[:, :height, :width] * 255), 0, 255).astype(np.uint8)
        return x.transpose(1, 2, 0)

    def decode_tokens(self, data: bytes):
        """-> (header, chunks by tag, z, Coded): the tokens exactly as the encoder coded them."""
        header, chunks = fmt.unpack(data)
        if header.codec != CODEC_ID or header.modality != "image":
            raise fmt.TokcFormatError(
                f"this file was made by codec {header.codec!r} ({header.modality}); "
                f"this decoder is {CODEC_ID}"
            )
        fmt.check_weights(header, self.weights.digest)
        by_tag = {c.tag: c.payload for c in chunks}
        if "ans " not in by_tag:
            raise fmt.TokcFormatError("missing the 'ans ' chunk")
        level_milli = header.rate_dict().get("level_milli", -1)
        if not LEVEL_MIN <= level_milli <= (self.weights.levels - 1) * 1000:
            raise fmt.TokcFormatError(f"rate level {level_milli} is out of range")
        if header.channels not in (1, 3, 4):
            raise fmt.TokcFormatError(f"an image of {header.channels} channels")
        hp, wp = -(-header.height // PAD) * PAD, -(-header.width // PAD) * PAD
        cz = self.weights.z_tables.freq.shape[0]
        dec = entropy.Decoder(by_tag["ans "], by_tag.get("esc ", b""))
        zshape = (cz, hp // PAD, wp // PAD)
        z = dec.decode(self.weights.z_tables, np.broadcast_to(np.arange(cz)[:, None, None], zshape))
        mean, log_scale_q = self._entropy_params(z)
        c = self._slices(mean, log_scale_q, level_milli,
                         lambda ch, part, offset, index: dec.decode(self.weights.y_tables, index))
        dec.finish()
        return header, by_tag, z, c

    # -- public --
    def compress(self, image, quality: float = 75, size: int | None = None,
                 psnr: float | None = None, effort: int = 1) -> EncodeResult:
        from tokc.compress import ratecontrol

        img = as_image(image)
        rgb, channels, extra = split_alpha_gray(img)
        a = self.analyse(rgb)
        steps = REFINE_STEPS[effort - 1] if 1 <= effort <= 9 else None
        if steps is None:
            raise CodecError(f"effort must be 1..9, got {effort}")
        top = (self.weights.levels - 1) * 1000
        if size is not None:
            level_milli = ratecontrol.largest_fitting(lambda lv: len(self.pack(a, lv, channels, extra)), size, LEVEL_MIN, top)
            if level_milli is None:
                smallest = len(self.pack(a, LEVEL_MIN, channels, extra))
                raise CodecError(f"no quality fits in {size} bytes (smallest file: {smallest} bytes)")
        elif psnr is not None:
            level_milli = ratecontrol.smallest_reaching(
                lambda lv: self.psnr_at(a, lv), psnr, LEVEL_MIN, top
            )
            if level_milli is None:
                level_milli = top
                warnings.warn(f"PSNR {psnr} dB is out of reach; coded at the highest quality")
        else:
            level_milli = quality_to_level(quality, self.weights.levels)
        data = self.pack(self.refine(a, level_milli, steps), level_milli, channels, extra)
        if size is not None and len(data) > size:  # refinement may trade bytes for quality
            data = self.pack(a, level_milli, channels, extra)
        h, w = img.shape[:2]
        quality = min(100.0, max(0.0, level_to_quality(level_milli, self.weights.levels)))
        # level: the continuous rate level used, 0..levels-1
        return EncodeResult(data, CODEC_ID, "image", width=w, height=h,
                            rate={"level": level_milli / 1000, "quality": quality})

    def summary(self, res: EncodeResult) -> tuple[dict, str]:
        """The codec's fields of a compress summary: JSON fields and the text."""
        return {"quality": round(res.quality, 2)}, f"q {res.quality:.1f}"

    def refine(self, a: Analysed, level_milli: int, steps: int) -> Analysed:
        """Encoder-side refinement for the fixed decoder (effort > 1): gradient steps on the
        latents y to lower rate + lambda * distortion through the float synthesis, with the
        hyper-latent (and so every probability table) held fixed. Needs torch."""
        if steps <= 0:
            return a
        try:
            torch_transforms = self.transforms if isinstance(self.transforms, TorchTransforms) \
                else self._torch_transforms
        except CodecError:
            warnings.warn("effort > 1 needs PyTorch; encoding at effort 1")
            return a
        if a.rgb.shape[0] * a.rgb.shape[1] > REFINE_MAX_PIXELS:
            warnings.warn("effort > 1 is limited to images of at most 4 MP; encoding at effort 1")
            return a
        import torch

        from tokc.models.hyperprior import gaussian_likelihood, round_ste

        w, meta = self.weights, self.weights.meta
        frac = 2.0**w.frac
        g = torch.from_numpy(np.exp(w.log_gain_at(level_milli) / frac)).float()[:, None, None]
        ig = torch.from_numpy(np.exp(w.log_igain_at(level_milli))).float()[:, None, None]
        # the tables and offsets of the starting tokens, held fixed (with a context model they
        # move a little as the tokens change: pack() recomputes them, so the file stays exact)
        c = self.code(a, level_milli)
        scale = torch.from_numpy(
            np.exp((int(meta["scale_base_q"]) + int(meta["scale_step_q"]) * c.index) / frac)
        ).float()
        mean = torch.from_numpy(c.offset).float()
        lam = w.lambda_at(level_milli)
        h, wd = a.rgb.shape[:2]
        x = torch.from_numpy(a.rgb.transpose(2, 0, 1).astype(np.float32) / 255)
        y = torch.from_numpy(a.y).clone().requires_grad_()
        opt = torch.optim.Adam([y], lr=REFINE_LR)
        noise = torch.Generator().manual_seed(0)  # same input, same file
        g_s = torch_transforms.model.g_s
        best, best_y = float("inf"), a.y
        # the forward pass rounds for real, so `loss` is the true cost of the current y:
        # keep the best iterate, so refinement never ends worse than where it started
        for _ in range(steps + 1):
            r = y * g - mean
            q = round_ste(r)
            dist = lam * 255**2 * (g_s(((q + mean) * ig)[None])[0, :, :h, :wd] - x).square().mean()
            with torch.no_grad():  # the true cost: rounded symbols
                cost = -torch.log2(gaussian_likelihood(q, scale)).sum() / (h * wd) + dist
            if cost.item() < best:
                best, best_y = cost.item(), y.detach().numpy().copy()
            # the gradient: rate of the noisy relaxation, as in training
            noisy = r + torch.rand(r.shape, generator=noise) - 0.5
            loss = -torch.log2(gaussian_likelihood(noisy, scale)).sum() / (h * wd) + dist
            opt.zero_grad()
            loss.backward()
            opt.step()
        return Analysed(a.rgb, best_y, a.z, a.mean, a.log_scale_q)

    def psnr_at(self, a: Analysed, level_milli: int) -> float:
        from tokc.metrics.image import psnr as _psnr

        out = self.reconstruct(self.code(a, level_milli), level_milli, *a.rgb.shape[:2])
        return _psnr(a.rgb, out)

    def decompress(self, data: bytes) -> np.ndarray:
        header, by_tag, z, c = self.decode_tokens(data)
        level_milli = header.rate_dict()["level_milli"]
        rgb = self.reconstruct(c, level_milli, header.height, header.width)
        return merge_alpha_gray(rgb, header.channels, by_tag)


_default: dict[str, ImageCodec] = {}


def default_codec(backend: str = "auto") -> ImageCodec:
    if backend not in _default:
        _default[backend] = ImageCodec(backend=backend)
    return _default[backend]


def open_codec(*, backend: str = "auto", weights: str | Path | None = None) -> ImageCodec:
    """The registry's factory: the shipped weights (loaded once per backend) or a weights file."""
    if weights is None:
        return default_codec(backend)
    return ImageCodec(ImageWeights(Path(weights)), backend)


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t
