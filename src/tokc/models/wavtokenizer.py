"""WavTokenizer (jishengpeng/WavTokenizer), 24 kHz: SEANet encoder, EMA VQ, Vocos decoder.

An independent implementation that loads the official state dict as it is. What it reproduces
(see shared/fixtures/wavtokenizer/NOTES.md):

- SEANet ``SConv1d``: non-causal reflect padding computed per conv on its own input length,
  with the extra right padding that makes the last window full and the zero-pad-then-reflect
  fallback for inputs shorter than the pad; old-API weight norm (``weight_g``/``weight_v``)
  folded into a plain conv weight when the checkpoint is loaded;
- encoder layout conv7 -> [ResBlock(k3, k1, conv shortcut) -> ELU -> strided conv] per
  reversed ratio -> 2-layer LSTM with skip -> ELU -> conv7;
- VQ: argmax of ``-(|x|^2 - 2 x.e + |e|^2)`` over the EMA codebook buffer, features = embed[code];
- Vocos backbone: embed conv -> pos_net (ResBlocks, attention, GroupNorm) BEFORE the first
  AdaLayerNorm -> ConvNeXt blocks -> final LayerNorm; the bandwidth embedding row is a constant;
- ISTFT head with "same" padding written as a real DFT basis (matmul) and an overlap-add by
  shifted sums — no complex tensors, no ``torch.istft``/``fold`` — so it exports to ONNX:
  irfft(n_fft) * periodic Hann, overlap-add to (T-1)*hop + n_fft, trim (n_fft-hop)/2 at each
  end, divide by the overlap-added squared window. Output length T*hop.

``encode(audio (B, T))`` returns int64 codes (n_q=1, B, frames); ``decode(codes)`` returns
audio (B, frames*hop).
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tokc.quantizers.vq import EuclideanVQ

from .graphs import CHECK_BATCH, TRACED_BATCH, Graph, batch_dim

ARCH = "wavtokenizer"
_FE = "feature_extractor.encodec."


@dataclass(frozen=True)
class WavTokenizerConfig:
    ratios: tuple[int, ...] = (8, 5, 4, 2)  # as in the config (`dowmsamples`); encoder reverses
    n_filters: int = 32
    dimension: int = 512
    lstm_layers: int = 2
    codebook_size: int = 4096
    n_q: int = 1  # codebook layers present in the weights (encode uses 1, as the official)
    input_channels: int = 512
    dim: int = 768
    intermediate_dim: int = 2304
    num_layers: int = 12
    adanorm_num_embeddings: int = 4
    n_fft: int = 1280
    hop_length: int = 320
    sample_rate: int = 24000

    @property
    def hop(self) -> int:
        return math.prod(self.ratios)


# ------------------------------------------------------------------------------ encoder


class SConv1d(nn.Module):
    """Conv1d with SEANet's non-causal reflect padding (weight norm already folded)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, dilation=dilation)
        self.k_eff = (kernel - 1) * dilation + 1
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        total = self.k_eff - self.stride
        right = total // 2
        left = total - right
        num = length - self.k_eff + total
        # ceil(num / stride) + 1, written with a non-negative numerator (num + stride - 1 =
        # length - 1): ONNX integer Div truncates, so -(-num // stride) would export wrongly
        n_frames = (num + self.stride - 1) // self.stride + 1
        extra = (n_frames - 1) * self.stride + (self.k_eff - total) - length
        right = right + extra
        max_pad = max(left, right)
        fill = 0
        if length <= max_pad:  # the repo's fallback: zero-pad, reflect, drop the zeros again
            fill = max_pad - length + 1
            x = F.pad(x, (0, fill))
        x = F.pad(x, (left, right), mode="reflect")
        if fill:
            x = x[..., : x.shape[-1] - fill]
        return self.conv(x)


class _SConvWrap(nn.Module):
    """Key layout ``<i>.conv.conv.*`` of the official SConv1d -> NormConv1d -> Conv1d."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.conv = SConv1d(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SEANetResnetBlock(nn.Module):
    def __init__(self, dim: int, kernel: int = 3, compress: int = 2):
        super().__init__()
        hidden = dim // compress
        self.block = nn.ModuleList(
            [nn.ELU(), _SConvWrap(dim, hidden, kernel), nn.ELU(), _SConvWrap(hidden, dim, 1)]
        )
        self.shortcut = _SConvWrap(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.block:
            h = layer(h)
        return self.shortcut(x) + h


class SLSTM(nn.Module):
    """LSTM over time with a skip connection; (B, C, T) in and out.

    Written as explicit gate arithmetic (same parameters and key names as nn.LSTM) so that the
    exported ONNX graph is plain MatMul/Sigmoid/Tanh, unrolled over the traced length.
    """

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.permute(2, 0, 1)  # (T, B, C)
        if not torch.compiler.is_exporting() and not torch.onnx.is_in_onnx_export():
            y, _ = self.lstm(seq)
            return (y + seq).permute(1, 2, 0)
        return (self.unrolled(seq) + seq).permute(1, 2, 0)

    def unrolled(self, seq: torch.Tensor) -> torch.Tensor:
        """The LSTM on (T, B, C) with explicit gates (i, f, g, o as nn.LSTM), for export."""
        h_in = seq
        for layer in range(self.lstm.num_layers):
            w_ih = getattr(self.lstm, f"weight_ih_l{layer}")
            w_hh = getattr(self.lstm, f"weight_hh_l{layer}")
            b = getattr(self.lstm, f"bias_ih_l{layer}") + getattr(self.lstm, f"bias_hh_l{layer}")
            pre = h_in @ w_ih.t() + b  # (T, B, 4H)
            hid = self.lstm.hidden_size
            h = seq.new_zeros(seq.shape[1], hid)
            c = seq.new_zeros(seq.shape[1], hid)
            outs = []
            for t in range(pre.shape[0]):
                g = pre[t] + h @ w_hh.t()
                i, f, gg, o = g.chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
                h = torch.sigmoid(o) * torch.tanh(c)
                outs.append(h)
            h_in = torch.stack(outs, 0)
        return h_in


class SEANetEncoder(nn.Module):
    def __init__(self, cfg: WavTokenizerConfig):
        super().__init__()
        mult = 1
        nf = cfg.n_filters
        layers: list[nn.Module] = [_SConvWrap(1, nf, 7)]
        for ratio in reversed(cfg.ratios):
            layers += [
                SEANetResnetBlock(mult * nf),
                nn.ELU(),
                _SConvWrap(mult * nf, mult * nf * 2, ratio * 2, stride=ratio),
            ]
            mult *= 2
        layers += [SLSTM(mult * nf, cfg.lstm_layers), nn.ELU(), _SConvWrap(mult * nf, cfg.dimension, 7)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# ------------------------------------------------------------------------------ decoder


def _swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, c, eps=1e-6)
        self.conv1 = nn.Conv1d(c, c, 3, padding=1)
        self.norm2 = nn.GroupNorm(32, c, eps=1e-6)
        self.conv2 = nn.Conv1d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(_swish(self.norm2(h)))
        return x + h


class AttnBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.norm = nn.GroupNorm(32, c, eps=1e-6)
        self.q = nn.Conv1d(c, c, 1)
        self.k = nn.Conv1d(c, c, 1)
        self.v = nn.Conv1d(c, c, 1)
        self.proj_out = nn.Conv1d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        c = q.shape[1]
        w = torch.bmm(q.permute(0, 2, 1), k) * (int(c) ** -0.5)
        w = torch.softmax(w, dim=2)
        h = torch.bmm(v, w.permute(0, 2, 1))
        return x + self.proj_out(h)


class _Embedding(nn.Module):
    def __init__(self, n: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n, dim))


class AdaLayerNorm(nn.Module):
    def __init__(self, n: int, dim: int):
        super().__init__()
        self.dim = dim
        self.scale = _Embedding(n, dim)
        self.shift = _Embedding(n, dim)

    def forward(self, x: torch.Tensor, bandwidth_id: int) -> torch.Tensor:
        x = F.layer_norm(x, (self.dim,), eps=1e-6)
        return x * self.scale.weight[bandwidth_id] + self.shift.weight[bandwidth_id]


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, inter: int, n_emb: int):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = AdaLayerNorm(n_emb, dim)
        self.pwconv1 = nn.Linear(dim, inter)
        self.pwconv2 = nn.Linear(inter, dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, bandwidth_id: int) -> torch.Tensor:
        h = self.dwconv(x).transpose(1, 2)
        h = self.norm(h, bandwidth_id)
        h = self.pwconv2(F.gelu(self.pwconv1(h)))
        return x + (self.gamma * h).transpose(1, 2)


class VocosBackbone(nn.Module):
    def __init__(self, cfg: WavTokenizerConfig):
        super().__init__()
        d = cfg.dim
        self.embed = nn.Conv1d(cfg.input_channels, d, 7, padding=3)
        self.pos_net = nn.Sequential(
            ResnetBlock(d), ResnetBlock(d), AttnBlock(d), ResnetBlock(d), ResnetBlock(d),
            nn.GroupNorm(32, d, eps=1e-6),
        )
        self.norm = AdaLayerNorm(cfg.adanorm_num_embeddings, d)
        self.convnext = nn.ModuleList(
            [ConvNeXtBlock(d, cfg.intermediate_dim, cfg.adanorm_num_embeddings)
             for _ in range(cfg.num_layers)]
        )
        self.final_layer_norm = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x: torch.Tensor, bandwidth_id: int = 0) -> torch.Tensor:
        x = self.pos_net(self.embed(x))
        x = self.norm(x.transpose(1, 2), bandwidth_id).transpose(1, 2)
        for blk in self.convnext:
            x = blk(x, bandwidth_id)
        return self.final_layer_norm(x.transpose(1, 2))  # (B, T, dim)


def overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """(B, T, N) frames placed every ``hop`` samples and summed -> (B, (T-1)*hop + N)."""
    b, t, n = frames.shape
    r = -(-n // hop)
    if r * hop != n:
        frames = F.pad(frames, (0, r * hop - n))
    parts = frames.reshape(b, t, r, hop)
    out = None
    for j in range(r):
        shifted = F.pad(parts[:, :, j, :], (0, 0, j, r - 1 - j))  # (B, T + r - 1, hop)
        out = shifted if out is None else out + shifted
    return out.reshape(b, (t + r - 1) * hop)[:, : (t - 1) * hop + n]


class ISTFT(nn.Module):
    """Inverse STFT with "same" padding as a real DFT basis + overlap-add (ONNX friendly)."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        if (n_fft - hop) % 2:
            raise ValueError(f"ISTFT 'same' padding needs n_fft - hop even ({n_fft}, {hop})")
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True))
        nb = n_fft // 2 + 1
        k = torch.arange(nb, dtype=torch.float64)[:, None]
        n = torch.arange(n_fft, dtype=torch.float64)[None, :]
        ang = 2 * math.pi * torch.remainder(k * n, n_fft) / n_fft
        w = torch.full((nb, 1), 2.0, dtype=torch.float64)
        w[0] = 1.0
        if n_fft % 2 == 0:
            w[-1] = 1.0
        basis = torch.cat([w * torch.cos(ang), -w * torch.sin(ang)], 0) / n_fft  # (2F, N)
        self.register_buffer("basis", basis.float(), persistent=False)

    def forward(self, re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
        """re, im: (B, T, n_fft/2+1) -> audio (B, T*hop)."""
        t = re.shape[1]
        frames = torch.cat([re, im], dim=-1) @ self.basis  # irfft, (B, T, N)
        frames = frames * self.window
        pad = (self.n_fft - self.hop) // 2
        y = overlap_add(frames, self.hop)
        env = overlap_add((self.window * self.window).expand(1, t, self.n_fft), self.hop)
        end = y.shape[-1] - pad
        return y[:, pad:end] / env[:, pad:end]


class ISTFTHead(nn.Module):
    def __init__(self, dim: int, n_fft: int, hop: int):
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.out(x)  # (B, T, n_fft + 2)
        nb = h.shape[-1] // 2
        mag = torch.clamp(torch.exp(h[..., :nb]), max=1e2)
        p = h[..., nb:]
        return self.istft(mag * torch.cos(p), mag * torch.sin(p))


# ------------------------------------------------------------------------------ model


class _Encodec(nn.Module):
    def __init__(self, cfg: WavTokenizerConfig):
        super().__init__()
        self.encoder = SEANetEncoder(cfg)
        self.quantizer = EuclideanVQ(cfg.n_q, cfg.codebook_size, cfg.dimension)


class WavTokenizer(nn.Module):
    arch = ARCH

    def __init__(self, cfg: WavTokenizerConfig):
        super().__init__()
        self.config = cfg
        self.feature_extractor = nn.Module()
        self.feature_extractor.encodec = _Encodec(cfg)
        self.backbone = VocosBackbone(cfg)
        self.head = ISTFTHead(cfg.dim, cfg.n_fft, cfg.hop_length)
        self.bandwidth_id = 0

    @property
    def encoder(self) -> SEANetEncoder:
        return self.feature_extractor.encodec.encoder

    @property
    def quantizer(self) -> EuclideanVQ:
        return self.feature_extractor.encodec.quantizer

    @torch.no_grad()
    def encode_latents(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (B, T) -> pre-quantisation latents (B, dimension, frames)."""
        return self.encoder(audio.unsqueeze(1))

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (B, T) at 24 kHz -> int64 codes (1, B, ceil(T / hop))."""
        return self.quantizer.codes_to_indices(self.encode_latents(audio))

    @torch.no_grad()
    def codes_to_features(self, codes: torch.Tensor) -> torch.Tensor:
        return self.quantizer.indices_to_codes(codes)

    @torch.no_grad()
    def decode_features(self, features: torch.Tensor, bandwidth_id: int | None = None) -> torch.Tensor:
        bw = self.bandwidth_id if bandwidth_id is None else int(bandwidth_id)
        return self.head(self.backbone(features, bw))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, bandwidth_id: int | None = None) -> torch.Tensor:
        """int64 codes (n_q, B, frames) -> audio (B, frames * hop)."""
        return self.decode_features(self.codes_to_features(codes), bandwidth_id)


# ------------------------------------------------------------------------------ loading


def _find_init(cfg: dict) -> dict:
    """``model.init_args`` of the Lightning-CLI style config (also accepts it directly)."""
    for key in ("model", "init_args"):
        if key in cfg and isinstance(cfg[key], dict) and "feature_extractor" not in cfg:
            cfg = cfg[key]
    for key in ("init_args",):
        if key in cfg and "feature_extractor" not in cfg:
            cfg = cfg[key]
    if "feature_extractor" not in cfg:
        raise ValueError("WavTokenizer config: no model.init_args.feature_extractor")
    return cfg


def _args(section: dict | None) -> dict:
    if not section:
        return {}
    return section.get("init_args", section)


def _fold_weight_norm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if k.endswith(".weight_g"):
            base = k[: -len("_g")]
            vk = base + "_v"
            if vk not in sd:
                out[k] = v  # reported as unexpected
                continue
            out[base] = torch._weight_norm(sd[vk], v, 0)  # g * v / ||v|| (norm over dims != 0)
        elif k.endswith(".weight_v") and k[: -len("_v")] + "_g" in sd:
            continue
        else:
            out[k] = v
    return out


def _resolve(path: str | Path) -> tuple[Path, Path | None]:
    p = Path(path)
    if p.is_dir():
        c = p / "config.json"
        return p / "model.safetensors", (c if c.exists() else None)
    c = p.with_name("config.json")
    return p, (c if c.exists() else None)


def config_from(cfg_json: dict, sd: dict[str, torch.Tensor]) -> WavTokenizerConfig:
    init = _find_init(cfg_json)
    fe = _args(init.get("feature_extractor"))
    bb = _args(init.get("backbone"))
    hd = _args(init.get("head"))
    emb_key = _FE + "quantizer.vq.layers.0._codebook.embed"
    bins, dim_w = sd[emb_key].shape if emb_key in sd else (4096, 512)
    n_q = len({k for k in sd if k.startswith(_FE + "quantizer.vq.layers.") and k.endswith(".embed")})
    lstm = {k for k in sd if ".lstm.weight_ih_l" in k and k.startswith(_FE + "encoder.")}
    if "n_fft" not in hd or "hop_length" not in hd:
        raise ValueError("WavTokenizer config: head.init_args needs n_fft and hop_length")
    if hd.get("padding", "same") != "same":
        raise ValueError(f"WavTokenizer: ISTFT padding {hd.get('padding')!r} is not supported")
    cfg = WavTokenizerConfig(
        ratios=tuple(int(r) for r in fe.get("dowmsamples", (8, 5, 4, 2))),
        n_filters=int(fe.get("fixture_n_filters", 32)),
        dimension=int(fe.get("fixture_dimension", dim_w if emb_key in sd else 512)),
        lstm_layers=len(lstm) or 2,
        codebook_size=int(bins),
        n_q=max(n_q, 1),
        input_channels=int(bb.get("input_channels", dim_w)),
        dim=int(bb["dim"]),
        intermediate_dim=int(bb["intermediate_dim"]),
        num_layers=int(bb["num_layers"]),
        adanorm_num_embeddings=int(bb.get("adanorm_num_embeddings") or 4),
        n_fft=int(hd["n_fft"]),
        hop_length=int(hd["hop_length"]),
        sample_rate=int(init.get("sample_rate", 24000)),
    )
    if cfg.hop != cfg.hop_length:
        raise ValueError(
            f"WavTokenizer config: encoder hop {cfg.hop} (prod of {cfg.ratios}) != head hop {cfg.hop_length}"
        )
    return cfg


def load(folder_or_file: str | Path, arch: str | None = None) -> WavTokenizer:
    """Build WavTokenizer from model.safetensors + config.json (a folder or the weights file)."""
    from safetensors.torch import load_file

    if arch is not None and arch.lower().replace("-", "") != ARCH:
        raise ValueError(f"wavtokenizer.load: arch {arch!r} is not {ARCH!r}")
    weights, config = _resolve(folder_or_file)
    if config is None:
        raise ValueError(f"WavTokenizer: no config.json next to {weights}")
    sd = load_file(str(weights))
    sd = {k.removeprefix("state_dict."): v for k, v in sd.items()}
    # as from_pretrained0802: only the generator's keys; the SEANet decoder and the EMA training
    # state of the codebook are never used by encode/decode
    sd = {k: v for k, v in sd.items() if k.startswith(("backbone.", "head.", "feature_extractor."))}
    skip = (_FE + "decoder.",)
    sd = {
        k: v for k, v in sd.items()
        if not k.startswith(skip) and not k.endswith(("._codebook.embed_avg", "._codebook.cluster_size", "._codebook.inited"))
    }
    cfg = config_from(json.loads(config.read_text()), sd)
    model = WavTokenizer(cfg)
    sd = _fold_weight_norm(sd)
    from tokc.models.wetok import _load_checked

    _load_checked(model, sd, "WavTokenizer", weights)
    return model.eval()


# ------------------------------------------------------------------------------ export


class EncoderGraph(nn.Module):
    """audio (B, T) -> (int64 codes (1, B, frames), latents (B, D, frames)): the reference the
    exported encoder (written by ``_encoder_onnx``) is validated against."""

    def __init__(self, model: WavTokenizer):
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        latents = m.encoder(audio.unsqueeze(1))
        return m.quantizer.codes_to_indices(latents), latents


class DecoderGraph(nn.Module):
    """int64 codes (n_q, B, frames) and bandwidth_id (1,) int64 -> audio (B, frames*hop). The
    bandwidth id picks the adaptive layer norms' rows: a graph input, not a constant, so a
    checkpoint decoded with another id than 0 gives the torch decode."""

    def __init__(self, model: WavTokenizer):
        super().__init__()
        self.model = model

    def forward(self, codes: torch.Tensor, bandwidth_id: torch.Tensor) -> torch.Tensor:
        m = self.model
        return m.head(m.backbone(m.quantizer.indices_to_codes(codes), bandwidth_id))


MIN_SAMPLES_HOPS = 8  # the encoder graph takes at least 8 hops of audio (SEANet's reflect pads)


def onnx_graphs(model: WavTokenizer, token_axis: str = "dynamic") -> list[Graph]:
    """audio (batch, samples) -> codes (1, batch, frames), latents, and codes -> audio; batch,
    samples (>= MIN_SAMPLES_HOPS hops) and frames dynamic (one token-axis form)."""
    from torch.export import Dim

    cfg = model.config
    hop = cfg.hop
    batch = batch_dim()
    rng = np.random.default_rng(1)
    gen = torch.Generator().manual_seed(0)
    traced, checked = 24 * hop, 17 * hop + 123  # samples; any length >= MIN_SAMPLES_HOPS * hop
    enc = Graph(
        "encoder", EncoderGraph(model).eval(), ("audio",), ("codes", "latents"),
        (("batch", "samples"),), ((1, "batch", "frames"), ("batch", cfg.dimension, "frames")),
        (0.1 * torch.randn(TRACED_BATCH, traced, generator=gen),), (),
        ((0.1 * rng.standard_normal((CHECK_BATCH, checked))).astype(np.float32),),
        build=lambda path, opset, export: _encoder_onnx(model, path, opset, export),
    )
    f = Dim("frames", min=2, max=100000)
    n_ids = cfg.adanorm_num_embeddings
    dec = Graph(
        "decoder", DecoderGraph(model).eval(), ("codes", "bandwidth_id"), ("audio",),
        ((1, "batch", "frames"), (1,)), (("batch", f"{hop}*frames"),),
        (torch.randint(0, cfg.codebook_size, (1, TRACED_BATCH, 16), generator=gen),
         torch.tensor([0], dtype=torch.int64)),
        ({1: batch, 2: f}, None),
        # validated at the last id (another than the traced one, where the model has several)
        (rng.integers(0, cfg.codebook_size, (1, CHECK_BATCH, 11), dtype=np.int64),
         np.array([n_ids - 1], dtype=np.int64)),
    )
    return [enc, dec]


def onnx_constraints(model: WavTokenizer) -> dict:
    return {"sample_rate": model.config.sample_rate, "hop": model.config.hop,
            "min_samples": MIN_SAMPLES_HOPS * model.config.hop, "min_frames": 2,
            "codebook_size": model.config.codebook_size,
            "bandwidth_ids": model.config.adanorm_num_embeddings,
            "bandwidth_id_default": model.bandwidth_id}


class _Seq(nn.Module):
    def __init__(self, layers, quantizer=None, unsqueeze=False):
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.quantizer = quantizer
        self.unsqueeze = unsqueeze

    def forward(self, x: torch.Tensor):
        y = self.layers(x.unsqueeze(1) if self.unsqueeze else x)
        if self.quantizer is None:
            return y
        return self.quantizer.codes_to_indices(y), y


def _lstm_onnx(slstm: SLSTM, ir_version: int, opset: int):
    """The SEANet LSTM (with its skip) as ONNX LSTM nodes: (B, C, T) 'pre' -> 'post', any T.

    torch.onnx unrolls nn.LSTM over the traced length, so the loop is written here as ONNX's own
    LSTM op (gates reordered from torch's i, f, g, o to ONNX's i, o, f, c)."""
    from onnx import TensorProto, helper, numpy_helper

    lstm = slstm.lstm
    hid = lstm.hidden_size
    order = [0, 3, 1, 2]
    nodes = [helper.make_node("Transpose", ["pre"], ["lstm_seq"], perm=[2, 0, 1])]
    inits = [numpy_helper.from_array(np.array([1], dtype=np.int64), "lstm_axis1")]
    x = "lstm_seq"
    for layer in range(lstm.num_layers):
        def blocks(t):
            t = t.detach().float().numpy().reshape(4, hid, *t.shape[1:])
            return np.concatenate([t[i] for i in order], 0)

        w = blocks(getattr(lstm, f"weight_ih_l{layer}"))[None]
        r = blocks(getattr(lstm, f"weight_hh_l{layer}"))[None]
        b = np.concatenate([blocks(getattr(lstm, f"bias_ih_l{layer}")),
                            blocks(getattr(lstm, f"bias_hh_l{layer}"))])[None]
        names = [f"lstm_w{layer}", f"lstm_r{layer}", f"lstm_b{layer}"]
        inits += [numpy_helper.from_array(np.ascontiguousarray(v, dtype=np.float32), n)
                  for v, n in zip((w, r, b), names, strict=True)]
        nodes.append(helper.make_node("LSTM", [x, *names], [f"lstm_y{layer}"], hidden_size=hid))
        nodes.append(helper.make_node("Squeeze", [f"lstm_y{layer}", "lstm_axis1"], [f"lstm_h{layer}"]))
        x = f"lstm_h{layer}"
    nodes.append(helper.make_node("Add", [x, "lstm_seq"], ["lstm_sum"]))
    nodes.append(helper.make_node("Transpose", ["lstm_sum"], ["post"], perm=[1, 2, 0]))
    c = lstm.input_size
    graph = helper.make_graph(
        nodes, "slstm", [helper.make_tensor_value_info("pre", TensorProto.FLOAT, ["batch", c, "frames"])],
        [helper.make_tensor_value_info("post", TensorProto.FLOAT, ["batch", c, "frames"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def _rename(model, old: str, new: str) -> None:
    g = model.graph
    for v in list(g.input) + list(g.output):
        if v.name == old:
            v.name = new
    for node in g.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


def _encoder_onnx(model: WavTokenizer, path: Path, opset: int, export) -> None:
    """audio (batch, samples) -> codes, latents with the number of samples dynamic: the SEANet
    convolutions before and after the LSTM are traced (``export``, the exporter's tracer) with
    symbolic lengths (their reflect padding is computed in the graph) and joined to the LSTM
    written as ONNX LSTM nodes."""
    import onnx
    from onnx import compose
    from torch.export import Dim

    layers = list(model.encoder.model)
    i = next(j for j, layer in enumerate(layers) if isinstance(layer, SLSTM))
    hop = model.config.hop
    batch = batch_dim()
    samples = Dim("samples", min=MIN_SAMPLES_HOPS * hop, max=1 << 26)
    frames = Dim("frames", min=4, max=1 << 20)
    gen = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(TRACED_BATCH, 24 * hop, generator=gen)
    with torch.no_grad():
        pre = _Seq(layers[:i], unsqueeze=True)(audio)
    front = _Seq(layers[:i], unsqueeze=True).eval()
    back = _Seq(layers[i + 1 :], quantizer=model.quantizer).eval()
    with tempfile.TemporaryDirectory() as tmp:
        f_path, b_path = Path(tmp) / "front.onnx", Path(tmp) / "back.onnx"
        export(front, (audio,), ["audio"], ["pre"], ({0: batch, 1: samples},), f_path, opset)
        export(back, (pre,), ["post"], ["codes", "latents"], ({0: batch, 2: frames},), b_path, opset)
        f_model, b_model = onnx.load(str(f_path)), onnx.load(str(b_path))
    f_model = compose.add_prefix(f_model, "front/")
    b_model = compose.add_prefix(b_model, "back/")
    mid = _lstm_onnx(layers[i], f_model.ir_version, opset)
    mid = compose.add_prefix(mid, "lstm/")
    merged = compose.merge_models(f_model, mid, io_map=[("front/pre", "lstm/pre")])
    merged = compose.merge_models(merged, b_model, io_map=[("lstm/post", "back/post")])
    for old, new in (("front/audio", "audio"), ("back/codes", "codes"), ("back/latents", "latents")):
        _rename(merged, old, new)
    onnx.checker.check_model(merged)
    onnx.save(merged, str(path))
