"""Nearest-codeword vector quantization on :mod:`tokc.kernels.vq_lookup`.

- :class:`VectorQuantizer`: TiTok's VQ, one codebook (``embedding.weight``), cosine on
  L2-normalised codewords or Euclidean; latents (B, C, 1, N) <-> tokens (B, 1, N).
- :class:`EuclideanVQ`: WavTokenizer's residual EMA codebooks (buffers
  ``vq.layers.<i>._codebook.embed``), lookup only; latents (B, D, T) <-> codes (n_q, B, T).

Both drop the per-row constant |z|^2 of the published ``|z|^2 + |e|^2 - 2 z.e`` (the kernel's
spec), which can only change an index on a tie at rounding level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tokc.kernels.vq_lookup import vq_lookup

__all__ = ["VectorQuantizer", "EuclideanVQ"]


class VectorQuantizer(nn.Module):
    """The TiTok VQ: argmin of ||z||^2 + ||e||^2 - 2 z.e (optionally on L2-normalised z and e)."""

    def __init__(self, codebook_size: int, token_size: int, use_l2_norm: bool):
        super().__init__()
        self.use_l2_norm = use_l2_norm
        self.embedding = nn.Embedding(codebook_size, token_size)

    def _codebook(self) -> torch.Tensor:
        e = self.embedding.weight
        return F.normalize(e, dim=-1) if self.use_l2_norm else e

    def codes_to_indices(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, C, 1, N) -> indices (B, 1, N) int64 (first index wins ties).

        Runs ``tokc.kernels.vq_lookup`` (Triton on CUDA, the torch reference elsewhere and
        whenever a graph is traced for export): cosine for the L2-normalised VQ, Euclidean
        otherwise. The official ``|z|^2 + |e|^2 - 2 z.e`` has the same argmin; the kernel drops
        the per-row constant ``|z|^2`` (and, for cosine, uses ``-z.e``), which can only change
        an index on a tie at rounding level (the parity fixtures' smallest margins are far above).
        """
        b, c, h, n = z.shape
        flat = z.float().permute(0, 2, 3, 1).reshape(-1, c)
        metric = "cosine" if self.use_l2_norm else "euclidean"
        return vq_lookup(flat, self.embedding.weight, metric).reshape(b, h, n)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, 1, k) -> codebook vectors (B, C, 1, k) (normalised when use_l2_norm)."""
        b, h, k = indices.shape
        codes = F.embedding(indices.reshape(b, h * k), self._codebook())  # (B, hk, C)
        return codes.reshape(b, h, k, -1).permute(0, 3, 1, 2)


class _Codebook(nn.Module):
    def __init__(self, bins: int, dim: int):
        super().__init__()
        self.register_buffer("embed", torch.zeros(bins, dim))


class _VQLayer(nn.Module):
    def __init__(self, bins: int, dim: int):
        super().__init__()
        self._codebook = _Codebook(bins, dim)


class EuclideanVQ(nn.Module):
    """EMA codebooks (buffers ``vq.layers.<i>._codebook.embed``); lookup only."""

    def __init__(self, n_q: int, bins: int, dim: int):
        super().__init__()
        self.vq = nn.Module()
        self.vq.layers = nn.ModuleList([_VQLayer(bins, dim) for _ in range(n_q)])

    def codes_to_indices(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, T) latents -> int64 (1, B, T) with the first codebook (n_q = 1 as encode_infer)."""
        b, d, t = x.shape
        e = self.vq.layers[0]._codebook.embed
        flat = x.transpose(1, 2).reshape(b * t, d)
        return vq_lookup(flat, e, "euclidean").reshape(1, b, t)

    def indices_to_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """int64 (n_q, B, T) -> features (B, D, T): the codebook rows (summed over layers)."""
        out = None
        for i in range(codes.shape[0]):
            q = F.embedding(codes[i], self.vq.layers[i]._codebook.embed).transpose(1, 2)
            out = q if out is None else out + q
        return out
