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

Tiles: an image of more than one file tile (TILE_SIDE latents, 1024 px, a side) is coded tile
by tile, each tile's hyper-latent, tokens and contexts on their own, one 'tile' chunk each (the
header's rate parameter `tile` gives the side); smaller images are one tile in the 'ans '
chunk as they always were. The analysis sees across tiles (g_a runs on the whole image in
overlapping pieces), and so does the synthesis: the decoder reads a row of tiles, then
synthesises the row before it with the latents around it, and writes it into the output. So
the encoder holds the image and its latents y, the decoder the output and three rows of
latents, and each works on one tile at a time.

What is image-specific lives here: the pixel padding and tiles, the checkerboard as the
spatial order, RDOQ's distortion in pixel units, encoder refinement through g_s and the
header's width/height/channels. The shared parts: compress.weights (the weights file),
compress.latent (latent coding), compress.ratecontrol, compress.tiling, compress.backends and
compress.pixels.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property, partial
from itertools import chain
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
from tokc.compress.tiling import EdgePadded, tiled
from tokc.compress.weights import LatentWeights, int_layers  # noqa: F401  (int_layers: old path)
from tokc.models import packed

CODEC_ID = "tokc-image-v1"
WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / f"{CODEC_ID}.safetensors"
PAD = 64  # the hyper-latent's stride
UNIT = 16  # the latent's stride
TILE = 48  # latents per tile side (768 px)
MARGIN = 4  # latents of context around each tile (64 px, more than the receptive field)
TILE_SIDE = 64  # latents per side of a file's tile (1024 px): larger images are coded in tiles
TILE_TAG = "tile"
MAX_TILE_SIDE = 256  # the largest tile side a decoder reads (4096 px)
REFINE_STEPS = (0, 5, 10, 20, 30, 45, 60, 80, 100)  # latent refinement steps per effort 1..9
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
    """The encoder's level-independent work on one image (or one tile of it), reused across
    rate searches."""

    rgb: np.ndarray  # (H, W, 3) uint8 as coded
    y: np.ndarray  # (M, h, w) float32
    z: np.ndarray  # (Cz, hz, wz) int64
    mean: np.ndarray  # (M, h, w) float64, ungained
    log_scale_q: np.ndarray  # (M, h, w) int64 fixed point


@dataclass(frozen=True)
class Tile:
    rows: slice  # of the latent grid
    cols: slice
    z: np.ndarray  # the tile's hyper-latent (Cz, rows / 4, cols / 4) int64


@dataclass(frozen=True)
class Tiled:
    """The encoder's level-independent work on a whole image, tile by tile: the latents y of
    the image and the hyper-latent of each tile (a tile's entropy parameters are worked out
    when it is coded: they would take four times the memory of y)."""

    rgb: np.ndarray  # (H, W, 3) uint8 as coded
    y: np.ndarray  # (M, h, w) float32
    rows: list[list[Tile]]  # rows of tiles; one tile: the untiled layout

    @property
    def untiled(self) -> bool:
        return len(self.rows) == 1 and len(self.rows[0]) == 1


def padded(height: int, width: int) -> tuple[int, int]:
    """An image's size padded to PAD, as it is coded."""
    return -(-height // PAD) * PAD, -(-width // PAD) * PAD


def tile_grid(h: int, w: int, side: int) -> list[list[tuple[slice, slice]]]:
    """The file tiles of an (h, w) latent grid, rows of (rows, cols) in raster order."""
    return [[(slice(i, min(i + side, h)), slice(j, min(j + side, w))) for j in range(0, w, side)]
            for i in range(0, h, side)]


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
        self._versions = {}  # digest -> the codec of an archived version (versions.for_digest)
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
        return versions.for_digest(self, digest)

    # -- encoder --
    def analysis(self, rgb: np.ndarray) -> np.ndarray:
        """The latents y (M, h, w) of an image, edge-padded to PAD, g_a in overlapping pieces."""
        h, w = rgb.shape[:2]
        x = EdgePadded(rgb, *padded(h, w))
        return tiled(lambda crop: self.transforms.run("g_a", crop.astype(np.float32) / 255),
                     x, UNIT, 1, TILE, MARGIN)

    def hyper(self, y: np.ndarray) -> np.ndarray:
        return np.round(self.transforms.run("h_a", y)).astype(np.int64)

    def analyse(self, rgb: np.ndarray) -> Analysed:
        """The whole image as one tile."""
        y = self.analysis(rgb)
        z = self.hyper(y)
        mean, log_scale_q = self.latent.entropy_params(z)
        return Analysed(rgb, y, z, mean, log_scale_q)

    def analyse_tiles(self, rgb: np.ndarray) -> Tiled:
        """The image in file tiles (one tile when it fits in one)."""
        y = self.analysis(rgb)
        rows = [[Tile(r, c, self.hyper(y[:, r, c])) for r, c in row]
                for row in tile_grid(*y.shape[1:], TILE_SIDE)]
        return Tiled(rgb, y, rows)

    def tile(self, t: Tiled, tile: Tile) -> Analysed:
        """One tile of t with its entropy parameters, its pixels those of the image it covers."""
        mean, log_scale_q = self.latent.entropy_params(tile.z)
        rgb = t.rgb[tile.rows.start * UNIT : tile.rows.stop * UNIT, tile.cols.start * UNIT : tile.cols.stop * UNIT]
        return Analysed(rgb, t.y[:, tile.rows, tile.cols], tile.z, mean, log_scale_q)

    def whole(self, a: Analysed | Tiled) -> Analysed | Tiled:
        """An image of one tile as the Analysed of the untiled layout; anything else as it is."""
        return self.tile(a, a.rows[0][0]) if isinstance(a, Tiled) and a.untiled else a

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

    def pack(self, a: Analysed | Tiled, level_milli: int, channels: int, extra_chunks=(),
             tune: str = "psnr") -> bytes:
        rate = (("level_milli", level_milli),)
        if tune != "psnr":  # absent means psnr: files without a tune are as they always were
            rate += (("tune", TUNES.index(tune)),)
        a = self.whole(a)
        if isinstance(a, Analysed):
            chunks = self.latent.chunks(a.z, self.code(a, level_milli))
        else:  # absent means untiled: files of one tile are as they always were
            rate += (("tile", TILE_SIDE),)
            chunks = [fmt.Chunk(TILE_TAG, self.latent.payload(tile.z, self.code(self.tile(a, tile), level_milli)))
                      for row in a.rows for tile in row]
        header = fmt.Header(
            codec=CODEC_ID, weights_digest=self.weights.digest, modality="image",
            width=a.rgb.shape[1], height=a.rgb.shape[0], channels=channels, rate=rate,
        )
        return fmt.pack(header, [*chunks, *extra_chunks])

    # -- decoder --
    def latents(self, c: Coded, level_milli: int) -> np.ndarray:
        """y_hat, the input of the synthesis."""
        return self.latent.latents(c, level_milli)

    def reconstruct(self, c: Coded, level_milli: int, height: int, width: int,
                    tune: str = "psnr") -> np.ndarray:
        return self.synthesise([self.latents(c, level_milli)], height, width, tune)

    def synthesised_rows(self, rows: Iterable[np.ndarray], tune: str = "psnr") -> Iterator[tuple[int, np.ndarray]]:
        """y_hat in rows of tiles (M, rows, w), top to bottom -> per row, its first pixel row
        and its pixels (16 rows, 16 w, 3) uint8: each row synthesised with MARGIN latent rows
        of the rows around it, so that there are no seams (it waits for the next row)."""
        g_s = partial(self.synthesis(tune).run, "g_s")
        prev = cur = None
        row = 0
        for nxt in chain(rows, [None]):
            if cur is not None:
                above = prev[:, -MARGIN:] if prev is not None else cur[:, :0]
                below = nxt[:, :MARGIN] if nxt is not None else cur[:, :0]
                x = tiled(g_s, np.concatenate([above, cur, below], axis=1), 1, UNIT, TILE, MARGIN)
                x = x[:, above.shape[1] * UNIT : (above.shape[1] + cur.shape[1]) * UNIT]
                x *= 255  # in place: a row's pixels are hundreds of MB in a large image
                yield row, np.clip(np.round(x, out=x), 0, 255, out=x).astype(np.uint8).transpose(1, 2, 0)
                row += cur.shape[1] * UNIT
            prev, cur = cur, nxt

    def synthesise(self, rows: Iterable[np.ndarray], height: int, width: int,
                   tune: str = "psnr") -> np.ndarray:
        """synthesised_rows written into the (height, width, 3) image as they come."""
        out = np.empty((height, width, 3), np.uint8)
        for row, pixels in self.synthesised_rows(rows, tune):
            n = max(0, min(len(pixels), height - row))
            out[row : row + n] = pixels[:n, :width]
        return out

    def check_header(self, header: fmt.Header) -> int:
        """A file's header as this decoder reads it -> its level (thousandths)."""
        if header.codec != CODEC_ID or header.modality != "image":
            raise fmt.TokcFormatError(
                f"this file was made by codec {header.codec!r} ({header.modality}); "
                f"this decoder is {CODEC_ID}"
            )
        fmt.check_weights(header, self.weights.digest)
        level_milli = header.rate_dict().get("level_milli", -1)
        if not LEVEL_MIN <= level_milli <= (self.weights.levels - 1) * 1000:
            raise fmt.TokcFormatError(f"rate level {level_milli} is out of range")
        if not 0 <= header.rate_dict().get("tune", 0) < len(TUNES):
            raise fmt.TokcFormatError(f"synthesis tune {header.rate_dict()['tune']} is unknown to "
                                      f"this tokc (it knows {', '.join(TUNES)})")
        if header.channels not in (1, 2, 3, 4):
            raise fmt.TokcFormatError(f"an image of {header.channels} channels")
        side = header.rate_dict().get("tile")
        if side is not None and not (PAD // UNIT <= side <= MAX_TILE_SIDE and side % (PAD // UNIT) == 0):
            raise fmt.TokcFormatError(f"a tile side of {side} latents (this tokc reads multiples of "
                                      f"{PAD // UNIT} up to {MAX_TILE_SIDE})")
        return level_milli

    def decode_tokens(self, data: bytes):
        """-> (header, chunks by tag, z, Coded): the tokens exactly as the encoder coded them
        (a file of one tile; tile_tokens reads any file)."""
        header, chunks = fmt.unpack(data)
        level_milli = self.check_header(header)
        if "tile" in header.rate_dict():
            raise CodecError("a file in tiles: read it with tile_tokens")
        tile, c = next(self._tile_tokens(header, chunks, level_milli))
        return header, {ch.tag: ch.payload for ch in chunks}, tile.z, c

    def tile_tokens(self, header: fmt.Header, chunks: list[fmt.Chunk]) -> Iterator[tuple[Tile, Coded]]:
        """The tokens of a file, tile by tile in raster order (one tile, the whole image, in a
        file without the rate parameter `tile`), exactly as the encoder coded them."""
        return self._tile_tokens(header, chunks, self.check_header(header))

    def _tile_tokens(self, header: fmt.Header, chunks: list[fmt.Chunk], level_milli: int) -> Iterator[tuple[Tile, Coded]]:
        hp, wp = padded(header.height, header.width)
        side = header.rate_dict().get("tile")
        if side is None:
            z, c = self.latent.read({c.tag: c.payload for c in chunks}, (hp // PAD, wp // PAD), level_milli)
            yield Tile(slice(0, hp // UNIT), slice(0, wp // UNIT), z), c
            return
        grid = tile_grid(hp // UNIT, wp // UNIT, side)
        payloads = [c.payload for c in chunks if c.tag == TILE_TAG]
        if len(payloads) != sum(map(len, grid)):  # before any work: a forged size fails here
            raise fmt.CorruptError(f"{len(payloads)} {TILE_TAG!r} chunks for an image of "
                                   f"{sum(map(len, grid))} tiles")
        k = PAD // UNIT
        for payload, (r, c) in zip(payloads, (tile for row in grid for tile in row)):
            z, coded = self.latent.read_payload(
                payload, ((r.stop - r.start) // k, (c.stop - c.start) // k), level_milli,
                f"a {TILE_TAG!r} chunk")
            yield Tile(r, c, z), coded

    def latent_rows(self, header: fmt.Header, chunks: list[fmt.Chunk], level_milli: int) -> Iterator[np.ndarray]:
        """y_hat of a file whose header check_header passed (level_milli: what it returned),
        row of tiles by row of tiles (each tile's tokens kept no longer than it takes to make
        its latents)."""
        width = padded(header.height, header.width)[1] // UNIT
        row = []
        for tile, c in self._tile_tokens(header, chunks, level_milli):
            row.append(self.latents(c, level_milli))
            if tile.cols.stop == width:  # the row's last tile
                yield np.concatenate(row, axis=2)
                row = []

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
        versions.check_encodes(self.weights)
        self.synthesis(tune)  # an unknown or missing tune fails before any work
        img = as_image(image)
        rgb, channels, extra = split_alpha_gray(img)
        extra = (*extra, *metadata_chunks(image, metadata, channels))
        a = self.analyse_tiles(rgb)
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

    def refine(self, a: Analysed | Tiled, level_milli: int, steps: int) -> Analysed | Tiled:
        """Encoder-side refinement for the fixed decoder (effort > 1): gradient steps on the
        latents y to lower rate + lambda * distortion through the float synthesis, with the
        hyper-latent (and so every probability table) held fixed; tile by tile (each tile's
        synthesis on its own). Needs torch."""
        if steps <= 0:
            return a
        try:
            torch_transforms = self.transforms if isinstance(self.transforms, TorchTransforms) \
                else self._torch_transforms
        except CodecError:
            warnings.warn("effort > 1 needs PyTorch; encoding at effort 1")
            return a
        if isinstance(a, Analysed):
            return self.refine_tile(a, level_milli, steps, torch_transforms)
        y = a.y.copy()
        for row in a.rows:
            for tile in row:
                y[:, tile.rows, tile.cols] = self.refine_tile(self.tile(a, tile), level_milli, steps,
                                                              torch_transforms).y
        return Tiled(a.rgb, y, a.rows)

    def refine_tile(self, a: Analysed, level_milli: int, steps: int, torch_transforms) -> Analysed:
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

    def psnr_at(self, a: Analysed | Tiled, level_milli: int, tune: str = "psnr") -> float:
        from tokc.metrics.image import psnr as _psnr

        a = self.whole(a)
        if isinstance(a, Analysed):
            out = self.reconstruct(self.code(a, level_milli), level_milli, *a.rgb.shape[:2], tune)
            return _psnr(a.rgb, out)
        rows = (np.concatenate([self.latents(self.code(self.tile(a, t), level_milli), level_milli)
                                for t in row], axis=2) for row in a.rows)
        sse = 0.0  # row by row: no whole decoded image
        for r0, pixels in self.synthesised_rows(rows, tune):
            ref = a.rgb[r0 : r0 + len(pixels)]
            sse += float(np.sum((ref.astype(np.float64) - pixels[: len(ref), : ref.shape[1]]) ** 2))
        return math.inf if sse == 0 else float(10 * np.log10(255.0**2 * a.rgb.size / sse))

    def decompress(self, data: bytes) -> np.ndarray:
        codec = self.for_digest(fmt.read_header(data).weights_digest)
        if codec is not self:  # a file of earlier weights
            return codec.decompress(data)
        header, chunks = fmt.unpack(data)
        level_milli = self.check_header(header)
        by_tag = {c.tag: c.payload for c in chunks}
        ImageMetadata.from_chunks(by_tag)  # a bad metadata chunk is an error, as in the CLI
        tune = TUNES[header.rate_dict().get("tune", 0)]
        rgb = self.synthesise(self.latent_rows(header, chunks, level_milli), header.height, header.width, tune)
        return merge_alpha_gray(rgb, header.channels, by_tag)


_default: dict[str, ImageCodec] = {}


def default_codec(backend: str = "auto") -> ImageCodec:
    if backend not in _default:
        _default[backend] = ImageCodec(backend=backend)
    return _default[backend]


def open_codec(*, backend: str = "auto", weights: str | Path | None = None, threads: int = 0) -> ImageCodec:
    """The registry's factory: the shipped weights (loaded once per backend) or a weights file;
    threads > 0: a codec of its own whose ONNX Runtime sessions use that many threads each."""
    if weights is None and not threads:
        return default_codec(backend)
    return ImageCodec(ImageWeights(Path(weights) if weights else WEIGHTS, threads), backend)
