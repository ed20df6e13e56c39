"""The packed weights file of tokc-image-v1: safetensors (no pickle), its JSON meta under the
key "tokc". One reader and one writer, used by the packer (tokc.train.pack_image), the codec
(tokc.compress.weights) and the torch backend (tokc.runtimes.torch); the file's sha256 is
computed once, here. The float parts (g_a, h_a, g_s) load into the model as torch modules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from tokc import format as fmt

META_KEY = "tokc"


@dataclass(frozen=True)
class Packed:
    path: Path
    meta: dict
    tensors: dict[str, np.ndarray]

    @cached_property
    def sha256(self) -> str:
        """The file's sha256 (hex): what an export sidecar records."""
        return fmt.sha256_file(self.path)

    @property
    def digest(self) -> bytes:
        """The weights digest of .tokc headers."""
        return bytes.fromhex(self.sha256)[: fmt.DIGEST_BYTES]

    def float_state(self, prefix: str) -> dict[str, np.ndarray]:
        """The float32 state dict of one float part (its tensors {prefix}.*)."""
        p = prefix + "."
        return {k[len(p):]: v.astype(np.float32) for k, v in self.tensors.items() if k.startswith(p)}


def read(path: str | Path) -> Packed:
    """Read a packed weights file (FileNotFoundError when it is missing)."""
    from safetensors import safe_open

    path = Path(path)
    with safe_open(str(path), framework="numpy") as f:
        meta = json.loads(f.metadata()[META_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return Packed(path, meta, tensors)


def write(path: str | Path, tensors: dict[str, np.ndarray], meta: dict) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, str(path), metadata={META_KEY: json.dumps(meta)})


def float_model(packed: Packed, parts=("g_a", "h_a", "g_s")):
    """The hyperprior model with its float parts loaded from the file (eval mode; the other
    parts keep their initial values: the codec runs them as integer networks)."""
    import torch

    from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior

    model = ImageHyperprior(HyperpriorConfig(**packed.meta["config"]))
    for name in parts:
        state = {k: torch.from_numpy(v) for k, v in packed.float_state(name).items()}
        getattr(model, name).load_state_dict(state)
    return model.eval()


def synthesis_model(packed: Packed):
    """float_model with g_s alone: what a tune file or an archived version decodes with."""
    return float_model(packed, parts=("g_s",))
