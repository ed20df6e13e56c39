"""The codec's view of a packed weights file (tokc.models.packed reads and writes it): the
integer networks (hyper-synthesis, channel and spatial contexts), the entropy tables and the
rate levels' gains, as numpy arrays; no torch needed. The layout is the same for any latent
rank, so an audio codec's file reads here too.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from tokc import format as fmt
from tokc.compress import entropy, intnet, versions
from tokc.compress.base import CodecError
from tokc.compress.intnet_ort import Network


def int_layers(tensors: dict, prefix: str, specs: list[dict], threads: int = 0) -> Network:
    """An integer network from the weights file: tensors {prefix}.{i}.weight / .bias and the
    meta's layer specs (intnet.IntConv.from_spec)."""
    return Network([
        intnet.IntConv.from_spec(tensors[f"{prefix}.{i}.weight"], tensors[f"{prefix}.{i}.bias"], spec)
        for i, spec in enumerate(specs)
    ], threads=threads)


def int_layer_tensors(prefix: str, layers, weight_dtype=np.int16) -> dict[str, np.ndarray]:
    """What the writer stores of an integer network (int_layers reads it back)."""
    out = {}
    for i, layer in enumerate(layers):
        out[f"{prefix}.{i}.weight"] = layer.weight.astype(weight_dtype)
        out[f"{prefix}.{i}.bias"] = layer.bias.astype(np.int64)
    return out


class LatentWeights:
    """Everything in a packed weights file, as numpy arrays. codec_id: the codec whose file
    it is (the export sidecars are named by it)."""

    codec_id = ""
    # (M,) fixed-point log gains added at every level to the trained ones (a finer quantizer
    # on chosen channels; the entropy model's scales follow), or None: with_gain_boost
    gain_boost: np.ndarray | None = None

    def __init__(self, path: Path, threads: int = 0):
        """threads: of the codec's ONNX Runtime sessions, the integer networks' and the
        transforms' (0: ONNX Runtime's default, the cores)."""
        path = Path(path)
        if not path.exists():
            raise CodecError(f"weights file not found: {path}")
        self.file = versions.read(path)  # an archive's left-out tensors taken back
        self.path = path
        self.threads = threads
        self.meta = meta = self.file.meta
        self.tensors = self.file.tensors
        self.config = meta["config"]
        self.levels = int(self.config["levels"])
        self.frac = int(meta["frac_bits"])
        self.hs = int_layers(self.tensors, "hs", meta["hs_layers"], threads)
        # channel-wise context: one integer network per slice after the first
        self.ctx = [
            int_layers(self.tensors, f"ctx.{s}", specs, threads)
            for s, specs in enumerate(meta.get("ctx_layers", []), start=1)
        ]
        # spatial (checkerboard, even/odd) context: one integer network per slice (none in older files)
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
    def sha256(self) -> str:
        """The file's sha256 (hex), computed once; of an archived version (tokc.compress.versions),
        the sha256 of the file it was archived from, whose digest its files carry."""
        return self.meta.get("archived_sha256") or self.file.sha256

    @property
    def archived(self) -> bool:
        """A decode-only archive of earlier weights (tokc.compress.versions)."""
        return "archived_sha256" in self.meta

    @property
    def digest(self) -> bytes:
        """The weights digest of .tokc headers."""
        return bytes.fromhex(self.sha256)[: fmt.DIGEST_BYTES]

    @property
    def slice_channels(self) -> int:
        """Latent channels per coded slice (all of them without a context model)."""
        return int(self.config["m"]) // (len(self.ctx) + 1)

    def float_state(self, prefix: str) -> dict[str, np.ndarray]:
        return self.file.float_state(prefix)

    # integer rate parameter: level in thousandths
    def log_gain_at(self, level_milli: int) -> np.ndarray:
        """Fixed-point log gains at a level, by exact integer interpolation."""
        lo = min(max(level_milli // 1000, 0), self.levels - 2)
        t = level_milli - 1000 * lo
        a, b = self.log_gain_q[lo], self.log_gain_q[lo + 1]
        g = a + ((b - a) * t) // 1000
        return g if self.gain_boost is None else g + self.gain_boost

    def with_gain_boost(self, boost: np.ndarray | None):
        """These weights (shared, not copied) with `boost` added to the fixed-point log gains
        of every level (and taken from the inverse gains): a view for one file's setting."""
        view = copy.copy(self)
        view.gain_boost = None if boost is None else np.asarray(boost, np.int64)
        return view

    def lambda_at(self, level_milli: int) -> float:
        """The rate-distortion trade-off the model was trained for at a level (loss = bpp +
        lambda * MSE on 0..255), geometric between the first and last level."""
        t = level_milli / 1000 / (self.levels - 1)
        return self.config["lambda_min"] ** (1 - t) * self.config["lambda_max"] ** t

    def log_igain_at(self, level_milli: int) -> np.ndarray:
        lo = min(max(level_milli // 1000, 0), self.levels - 2)
        t = (level_milli - 1000 * lo) / 1000
        g = self.log_igain[lo] * (1 - t) + self.log_igain[lo + 1] * t
        return g if self.gain_boost is None else g - self.gain_boost / 2.0**self.frac
