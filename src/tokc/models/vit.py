"""Plain-torch ViT blocks shared by the published 1D tokenizers (TiTok / One-D-Piece).

Parameter names follow the CLIP-style blocks those releases use (``attn.in_proj_weight``,
``attn.out_proj``, ``mlp.c_fc``, ``mlp.c_proj``, ``ln_1``, ``ln_2``) so their checkpoints load
as they are. Attention is written out (no ``nn.MultiheadAttention``) so the exported ONNX
graph is made of plain MatMul/Softmax nodes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ViTSize", "vit_size", "Attention", "MLP", "ResidualAttentionBlock"]


@dataclass(frozen=True)
class ViTSize:
    width: int
    layers: int
    heads: int


# The official size tables (hard-coded in TiTok / One-D-Piece), plus the fixture convention.
_NAMED_SIZES = {
    "small": ViTSize(512, 8, 8),
    "base": ViTSize(768, 12, 12),
    "large": ViTSize(1024, 24, 16),
    "tiny": ViTSize(64, 2, 2),
}
_TINY_RE = re.compile(r"^tiny_w(\d+)_l(\d+)_h(\d+)$")


def vit_size(name: str) -> ViTSize:
    """Width / depth / heads for a size name: small, base, large, tiny, tiny_w{W}_l{L}_h{H}."""
    key = str(name).strip().lower()
    if key in _NAMED_SIZES:
        return _NAMED_SIZES[key]
    m = _TINY_RE.match(key)
    if m:
        width, layers, heads = (int(g) for g in m.groups())
        if heads <= 0 or width % heads:
            raise ValueError(f"ViT size {name!r}: width {width} is not divisible by {heads} heads")
        return ViTSize(width, layers, heads)
    raise ValueError(
        f"unknown ViT size {name!r}; expected one of {sorted(_NAMED_SIZES)} or tiny_w{{W}}_l{{L}}_h{{H}}"
    )


class Attention(nn.Module):
    """Multi-head self-attention with a packed q|k|v projection (nn.MultiheadAttention's layout)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L, W); bias: an optional additive key bias (B, 1, 1, L), e.g. a mask."""
        b, n, w = x.shape
        h = self.heads
        d = w // h
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(b, n, 3, h, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = torch.matmul(q * (1.0 / math.sqrt(d)), k.transpose(-2, -1))
        att = (att if bias is None else att + bias).softmax(dim=-1)
        out = torch.matmul(att, v).transpose(1, 2).reshape(b, n, w)
        return self.out_proj(out)


class MLP(nn.Module):
    def __init__(self, width: int, ratio: float = 4.0):
        super().__init__()
        hidden = int(width * ratio)
        self.c_fc = nn.Linear(width, hidden)
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))  # exact (erf) GELU


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)); LayerNorm eps 1e-5."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-5)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = MLP(width, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))
