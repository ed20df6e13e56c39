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

What is image-specific lives here: the pixel padding and tiles, the checkerboard as the
spatial order, RDOQ's distortion in pixel units, encoder refinement through g_s and the
header's width/height/channels. The shared parts: compress.weights (the weights file),
compress.latent (latent coding), compress.ratecontrol, compress.tiling, compress.backends and
compress.pixels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

import numpy as np

from tokc import format as fmt
from tokc.compress import ratecontrol, versions
from tokc.compress.backends import TorchTransforms, get_transforms  # noqa: F401  (old paths)
from tokc.compress.base import CodecError, EncodeResult
from tokc.compress.latent import Coded, LatentCoder, checkerboard
from tokc.compress.pixels import (  # noqa: F401  (read_image: the old import path)
    ImageMetadata,
    as_image,
    merge_alpha_gray,
    metadata_chunks,
    read_image,
    split_alpha_gray,
)
from tokc.compress.ratecontrol import LEVEL_MIN, level_to_quality, quality_to_level  # noqa: F401
from tokc.compress.tiling import tiled
from tokc.compress.weights import LatentWeights, int_layers  # noqa: F401  (int_layers: old path)
from tokc.models import packed

CODEC_ID = "tokc-image-v1"
WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / f"{CODEC_ID}.safetensors"
PAD = 64  # the hyper-latent's stride
UNIT = 16  # the latent's stride
TILE = 48  # latents per tile side (768 px)
MARGIN = 4  # latents of context around each tile (64 px, more than the receptive field)
REFINE_STEPS = (0, 5, 10, 20, 30, 45, 60, 80, 100)  # latent refinement steps per effort 1..9
REFINE_MAX_PIXELS = 4 << 20
REFINE_LR = 0.003
# synthesis tunes, by the header's rate parameter `tune` (absent: 0). A tune is a second g_s
# for the same tokens, in its own file beside the weights (tune_path); the bitstream, the
# encoder's token choice and the rate are the same for every tune.
TUNES = ("psnr", "perceptual")
DEFAULT_TUNE = "psnr"
RDOQ_WEIGHT = 2.0  # distortion weight of the token choice: BD-rate on 8 held-out training images
# -1.3 % at 1, -3.2 % at 1.5, -3.8 % at 2, -3.6 % at 3, -2.9 % at 4 (against plain rounding)


class ImageWeights(LatentWeights):
    """The weights file of tokc-image-v1 (the shipped one by default)."""

    codec_id = CODEC_ID

    def __init__(self, path: Path = WEIGHTS, threads: int = 0):
        super().__init__(path, threads)


def tune_path(weights_path: Path, tune: str) -> Path:
    """The synthesis file of a tune, beside the weights: tokc-image-v1.perceptual.safetensors
    for tokc-image-v1.safetensors."""
    weights_path = Path(weights_path)
    return weights_path.with_name(f"{weights_path.stem}.{tune}.safetensors")


class TuneWeights:
    """A tune's synthesis: a packed file with g_s only, made for one weights file (its meta's
    base_sha256). Its ONNX export is named by codec_id (tokc-image-v1.perceptual.*)."""

    def __init__(self, weights: ImageWeights, tune: str):
        self.path = tune_path(weights.path, tune)
        self.codec_id = f"{CODEC_ID}.{tune}"
        if not self.path.exists():
            raise CodecError(f"the {tune} tune needs {self.path.name} beside {weights.path.name}")
        self.file = packed.read(self.path)
        if self.file.meta.get("base_sha256") != weights.sha256:
            raise CodecError(f"{self.path.name} is a {tune} tune of other weights than "
                             f"{weights.path.name}")
        self.sha256 = self.file.sha256


@dataclass(frozen=True)
class Analysed:
    """The encoder's level-independent work on one image, reused across rate searches."""

    rgb: np.ndarray  # (H, W, 3) uint8 as coded
    y: np.ndarray  # (M, h, w) float32
    z: np.ndarray  # (Cz, hz, wz) int64
    mean: np.ndarray  # (M, h, w) float64, ungained
    log_scale_q: np.ndarray  # (M, h, w) int64 fixed point


class ImageCodec:
    codec_id = CODEC_ID
    modality = "image"

    def __init__(self, weights: ImageWeights | None = None, backend: str = "auto", transforms=None):
        """transforms: g_a, h_a, g_s on a backend of the caller's choosing (an object with
        name and run(part, x), e.g. tokc.runtimes.base.load_parts(...)); default: by backend."""
        self.weights = weights or ImageWeights()
        self.backend = backend
        self.latent = LatentCoder(self.weights, checkerboard)
        self._tunes = {}
        self._versions = {}
        if transforms is not None:
            self.transforms = transforms
        elif self.weights.archived:
            self.transforms = versions.synthesis(self.weights.file, backend)

    @cached_property
    def transforms(self):
        return get_transforms(self.weights, self.backend)

    @cached_property
    def _torch_transforms(self):  # for encoder-side refinement, whatever the backend
        return TorchTransforms(self.weights)

    def synthesis(self, tune: str = DEFAULT_TUNE):
        """The transforms whose g_s decodes a tune (psnr: the weights' own)."""
        if tune not in TUNES:
            raise CodecError(f"unknown tune {tune!r} (tunes: {', '.join(TUNES)})")
        if tune == "psnr":
            return self.transforms
        if tune not in self._tunes:
            tuned = TuneWeights(self.weights, tune)
            self._tunes[tune] = (versions.synthesis(tuned.file, self.backend) if self.weights.archived
                                 else get_transforms(tuned, self.backend, build=packed.synthesis_model))
        return self._tunes[tune]

    def for_digest(self, digest: bytes) -> ImageCodec:
        """The codec of the weights a file names: these, or an earlier version archived in
        weights/versions/ beside them (tokc.compress.versions); WeightsMismatchError if none."""
        if digest == self.weights.digest:
            return self
        if digest not in self._versions:
            path = versions.find(self.weights.path.parent / "versions", CODEC_ID, digest)
            if path is None:
                raise fmt.WeightsMismatchError(
                    f"{CODEC_ID} file made by weights {digest.hex()}, which this install does not "
                    f"have (it has {self.weights.digest.hex()} and the versions in "
                    f"{self.weights.path.parent / 'versions'})")
            self._versions[digest] = ImageCodec(ImageWeights(path), self.backend)
        return self._versions[digest]

    # -- encoder --
    def analyse(self, rgb: np.ndarray) -> Analysed:
        h, w = rgb.shape[:2]
        ph, pw = -h % PAD, -w % PAD
        padded = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")
        x = padded.transpose(2, 0, 1).astype(np.float32) / 255
        y = tiled(partial(self.transforms.run, "g_a"), x, UNIT, 1, TILE, MARGIN)
        z = np.round(self.transforms.run("h_a", y)).astype(np.int64)
        mean, log_scale_q = self.latent.entropy_params(z)
        return Analysed(rgb, y, z, mean, log_scale_q)

    def rdoq_weight(self, level_milli: int) -> np.ndarray | None:
        """Distortion per squared token unit of each channel, in the training loss's units:
        lambda * 255**2 * (squared error summed over 3 colours) / 3; None (plain rounding) for
        weights without the synthesis' channel energies."""
        w = self.weights
        if "synth_gain" not in w.tensors:
            return None
        return (w.tensors["synth_gain"] * np.exp(2 * w.log_igain_at(level_milli))
                * w.lambda_at(level_milli) * 255**2 / 3 * RDOQ_WEIGHT)

    def code(self, a: Analysed, level_milli: int) -> Coded:
        """The tokens of a's latents at a level (compress.latent.LatentCoder.code), with RDOQ
        where the weights carry the synthesis' channel energies."""
        return self.latent.code(a.y, a.mean, a.log_scale_q, level_milli, self.rdoq_weight(level_milli))

    def pack(self, a: Analysed, level_milli: int, channels: int, extra_chunks=(),
             tune: str = "psnr") -> bytes:
        chunks = [*self.latent.chunks(a.z, self.code(a, level_milli)), *extra_chunks]
        rate = (("level_milli", level_milli),)
        if tune != "psnr":  # absent means psnr: files without a tune are as they always were
            rate += (("tune", TUNES.index(tune)),)
        header = fmt.Header(
            codec=CODEC_ID, weights_digest=self.weights.digest, modality="image",
            width=a.rgb.shape[1], height=a.rgb.shape[0], channels=channels, rate=rate,
        )
        return fmt.pack(header, chunks)

    # -- decoder --
    def latents(self, c: Coded, level_milli: int) -> np.ndarray:
        """y_hat, the input of the synthesis."""
        return self.latent.latents(c, level_milli)

    def reconstruct(self, c: Coded, level_milli: int, height: int, width: int,
                    tune: str = "psnr") -> np.ndarray:
        y_hat = self.latents(c, level_milli)
        x = tiled(partial(self.synthesis(tune).run, "g_s"), y_hat, 1, UNIT, TILE, MARGIN)
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
        if not 0 <= header.rate_dict().get("tune", 0) < len(TUNES):
            raise fmt.TokcFormatError(f"synthesis tune {header.rate_dict()['tune']} is unknown to "
                                      f"this tokc (it knows {', '.join(TUNES)})")
        if header.channels not in (1, 2, 3, 4):
            raise fmt.TokcFormatError(f"an image of {header.channels} channels")
        hp, wp = -(-header.height // PAD) * PAD, -(-header.width // PAD) * PAD
        z, c = self.latent.read(by_tag, (hp // PAD, wp // PAD), level_milli)
        return header, by_tag, z, c

    # -- public --
    def compress(self, image, quality: float = 75, size: int | None = None,
                 psnr: float | None = None, effort: int = 1, metadata=True,
                 tune: str | None = None) -> EncodeResult:
        """tune: the synthesis the file asks its decoder for (TUNES; default DEFAULT_TUNE):
        the same tokens and bytes but for the header's `tune`; psnr= targets the PSNR of that
        synthesis. metadata: keep the ICC profile, EXIF and PNG colour chunks of a path or PIL image
        (True), none (False), or an ImageMetadata; chunks after the tokens', which they leave
        as they are (a size= budget counts them)."""
        tune = DEFAULT_TUNE if tune is None else tune
        if self.weights.archived:
            raise CodecError(f"{self.weights.path.name} is an archived version: it only decodes")
        self.synthesis(tune)  # an unknown or missing tune fails before any work
        img = as_image(image)
        rgb, channels, extra = split_alpha_gray(img)
        extra = (*extra, *metadata_chunks(image, metadata, channels))
        a = self.analyse(rgb)
        steps = REFINE_STEPS[effort - 1] if 1 <= effort <= 9 else None
        if steps is None:
            raise CodecError(f"effort must be 1..9, got {effort}")
        level_milli = ratecontrol.choose_level(
            self.weights.levels, lambda lv: len(self.pack(a, lv, channels, extra, tune)),
            lambda lv: self.psnr_at(a, lv, tune), quality, size, psnr)
        data = self.pack(self.refine(a, level_milli, steps), level_milli, channels, extra, tune)
        if size is not None and len(data) > size:  # refinement may trade bytes for quality
            data = self.pack(a, level_milli, channels, extra, tune)
        h, w = img.shape[:2]
        quality = min(100.0, max(0.0, level_to_quality(level_milli, self.weights.levels)))
        # level: the continuous rate level used, 0..levels-1
        return EncodeResult(data, CODEC_ID, "image", width=w, height=h,
                            rate={"level": level_milli / 1000, "quality": quality, "tune": tune})

    def summary(self, res: EncodeResult) -> tuple[dict, str]:
        """The codec's fields of a compress summary: JSON fields and the text."""
        tune = res.rate.get("tune", "psnr")
        return ({"quality": round(res.quality, 2), "tune": tune},
                f"q {res.quality:.1f}" + ("" if tune == "psnr" else f", {tune} tune"))

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

    def psnr_at(self, a: Analysed, level_milli: int, tune: str = "psnr") -> float:
        from tokc.metrics.image import psnr as _psnr

        out = self.reconstruct(self.code(a, level_milli), level_milli, *a.rgb.shape[:2], tune)
        return _psnr(a.rgb, out)

    def decompress(self, data: bytes) -> np.ndarray:
        codec = self.for_digest(fmt.read_header(data).weights_digest)
        if codec is not self:  # a file of earlier weights
            return codec.decompress(data)
        header, by_tag, z, c = self.decode_tokens(data)
        ImageMetadata.from_chunks(by_tag)  # a bad metadata chunk is an error, as in the CLI
        level_milli = header.rate_dict()["level_milli"]
        tune = TUNES[header.rate_dict().get("tune", 0)]
        rgb = self.reconstruct(c, level_milli, header.height, header.width, tune)
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
