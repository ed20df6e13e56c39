"""Pack a training checkpoint into the shipped weights file of tokc-image-v1.

`python -m tokc.train.pack_image runs/image_v1/ckpt.pt -o src/tokc/weights/tokc-image-v1.safetensors`

The file (safetensors, no pickle) holds:
- the float transforms g_a, h_a, g_s in fp16;
- the hyper-synthesis, and the channel-wise and spatial context networks when the model has
  them, as integer networks (tokc.compress.intnet), calibrated on training images (never Kodak);
- the integer frequency tables of the hyper-latent prior and of the 64 Gaussian scales;
- the gains as fixed-point log values (encoder side) and floats (decoder side, pixel domain);
- the synthesis' energy per latent channel (the encoder's token choice).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from tokc.compress import entropy, intnet
from tokc.compress.image import CODEC_ID
from tokc.compress.weights import int_layer_tensors
from tokc.models import packed
from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior, checkerboard
from tokc.train.common import load_resume
from tokc.train.image import DEFAULT_DATA, center_crops, list_images, load
from tokc.train.surgery import upgrade_state_dict

FRAC_BITS = 12  # fraction bits of the log-scale / mean output and of the log gains
SCALE_COUNT = 64
SCALE_MAX = 64.0
Z_RADIUS = 48
NARROW = {"weight_bits": 7, "act_bits": 8}  # integer networks in 8 bits (see pack)
Q_CLIP = 511  # the context networks' clip on their token input: 511 * 128 * 240 < 2**24


def load_checkpoint(path: Path) -> tuple[ImageHyperprior, int]:
    """A run's ckpt.pt or a committed model-only resume file (.safetensors) -> (model, step)."""
    if path.suffix == ".safetensors":
        config, weights, step = load_resume(path)
    else:
        state = torch.load(path, weights_only=True, map_location="cpu")
        config, weights, step = state["config"], state["model"], int(state["step"])
    model = ImageHyperprior(HyperpriorConfig(**config))
    model.load_state_dict(upgrade_state_dict(weights))
    return model.eval(), step


def hs_convs(model: ImageHyperprior) -> list:
    """h_s as (weight, bias, relu, depth-to-space) layers; the model's `hs_shuffle` gives the
    factor (the image model's True: 2x2; the audio model's (1, 2))."""
    hs, shuf = model.h_s, getattr(model, "hs_shuffle", True)
    shuf = list(shuf) if isinstance(shuf, tuple) else shuf
    parts = [(hs[0][0], True, shuf), (hs[2][0], True, shuf), (hs[4], False, False)]
    return [
        (c.weight.detach().double().numpy(), c.bias.detach().double().numpy(), relu, shuf)
        for c, relu, shuf in parts
    ]


def ctx_convs(net) -> list:
    parts = [(net[0], True, False), (net[2], True, False), (net[4], False, False)]
    return [
        (c.weight.detach().double().numpy(), c.bias.detach().double().numpy(), relu, shuf)
        for c, relu, shuf in parts
    ]


def calibration_crops(data: Path) -> list[torch.Tensor]:
    """256x256 centre crops of every 6th training image (never Kodak)."""
    train, _ = list_images(data)
    return center_crops([load(p) for p in train[::6]], 256)


@torch.no_grad()
def calibrate(model: ImageHyperprior, crops) -> tuple[list[float], list[np.ndarray]]:
    """Largest activation of each hyper-synthesis layer on the crops, and their z's."""
    zs = [torch.round(model.h_a(model.g_a(x))) for x in crops]
    convs = model.h_s
    maxes = [0.0, 0.0, 0.0]
    for z in zs:
        a = convs[1](convs[0](z))
        maxes[0] = max(maxes[0], a.abs().max().item())
        b = convs[3](convs[2](a))
        maxes[1] = max(maxes[1], b.abs().max().item())
        maxes[2] = max(maxes[2], convs[4](b).abs().max().item())
    return maxes, [z[0].numpy() for z in zs]


CTX_CALIB_LEVELS = (0.0, 1.0, 2.5, 4.0, 5.0)


def context_inputs(model: ImageHyperprior, q: torch.Tensor) -> list[tuple[str, object, torch.Tensor]]:
    """(name in the weights file, network, its input) of every context network, for the tokens
    q of a whole image: the channel context of slice s reads the slices before it, the spatial
    context of a slice reads that slice's anchor tokens (the others set to 0)."""
    cs = model.config.m // max(model.config.ctx_slices, 1)
    anchor = checkerboard(*q.shape[2:])
    return [(f"ctx.{s}", net, q[:, : cs * s]) for s, net in enumerate(model.ctx or [], start=1)] + [
        (f"spatial.{s}", net, q[:, cs * s : cs * (s + 1)] * anchor)
        for s, net in enumerate(model.spatial or [])
    ]


@torch.no_grad()
def calibrate_ctx(model: ImageHyperprior, crops) -> tuple[list[list[float]], list[torch.Tensor]]:
    """Largest activation of each layer of each context network (in context_inputs' order),
    over the crops' tokens at several levels, and a few token tensors to measure the integer
    networks' error on."""
    maxes = [[0.0, 0.0, 0.0] for _ in [*(model.ctx or []), *(model.spatial or [])]]
    samples = []
    for i, x in enumerate(crops):
        y = model.g_a(x)
        mean, log_scale = model.entropy_params(torch.round(model.h_a(y)))
        for lv in CTX_CALIB_LEVELS:
            q = model.code_latents(y, mean, log_scale, torch.tensor([lv]))["q"]
            if i < 2:
                samples.append(q)
            for mx, (_, net, inp) in zip(maxes, context_inputs(model, q)):
                a = net[1](net[0](inp))
                b = net[3](net[2](a))
                for j, t in enumerate((a, b, net[4](b))):
                    mx[j] = max(mx[j], t.abs().max().item())
    return maxes, samples


def scale_table() -> tuple[int, int, np.ndarray]:
    base = round(math.log(HyperpriorConfig.scale_min) * 2**FRAC_BITS)
    step = round(math.log(SCALE_MAX / HyperpriorConfig.scale_min) / (SCALE_COUNT - 1) * 2**FRAC_BITS)
    scales = np.exp((base + step * np.arange(SCALE_COUNT)) / 2**FRAC_BITS)
    return base, step, scales


@torch.no_grad()
def pack(model: ImageHyperprior, crops, out: Path, extra_meta: dict | None = None,
         narrow: bool = True, codec_id: str = CODEC_ID, synth_gain: bool = True) -> dict:
    """crops: inputs of model.g_a (calibration). codec_id: what the meta names (the audio
    packer reuses this). synth_gain: measure the image synthesis' channel energies. narrow: 8-bit weights and hidden activations, run exactly in float32 (intnet), the
    context networks' token input clipped to +-Q_CLIP; otherwise 14-bit weights and
    activations with float64 sums."""
    bits = NARROW if narrow else {}
    ctx_bits = {**NARROW, "in_clip": Q_CLIP} if narrow else {}
    maxes, zs = calibrate(model, crops)
    layers, fracs = intnet.quantize_layers(hs_convs(model), maxes, FRAC_BITS, **bits)
    # how far the integer network is from the float one (log-scale units)
    err = 0.0
    for z in zs[:4]:
        ref = model.h_s(torch.from_numpy(z)[None]).numpy()[0]
        got = intnet.run(layers, z) / 2**FRAC_BITS
        err = max(err, float(np.abs(ref - got).max()))

    specs = {"ctx_layers": [], "spatial_layers": []}
    tensors: dict[str, np.ndarray] = {}
    if model.ctx is not None or model.spatial is not None:
        ctx_max, samples = calibrate_ctx(model, crops)
        sample_inputs = [context_inputs(model, q) for q in samples]
        for k, ((name, net, _), mx) in enumerate(zip(sample_inputs[0], ctx_max)):
            clayers, _ = intnet.quantize_layers(ctx_convs(net), mx, FRAC_BITS, **ctx_bits)
            for inputs in sample_inputs:
                inp = inputs[k][2]
                ref = net(inp).numpy()[0]
                got = intnet.run(clayers, inp[0].numpy().astype(np.int64)) / 2**FRAC_BITS
                err = max(err, float(np.abs(ref - got).max()))
            tensors.update(int_layer_tensors(name, clayers))
            specs[name.split(".")[0] + "_layers"].append([la.spec() for la in clayers])
    for prefix in ("g_a", "h_a", "g_s"):
        for k, v in getattr(model, prefix).state_dict().items():
            tensors[f"{prefix}.{k}"] = v.numpy().astype(np.float16)
    tensors.update(int_layer_tensors("hs", layers))  # |w| <= 2**14
    z_pmf = model.z_prior.pmf(Z_RADIUS).double().numpy()
    tail = np.clip(1 - z_pmf.sum(1, keepdims=True), 1e-9, None)
    tensors["z_freq"] = entropy.quantize_pmf(np.concatenate([z_pmf, tail], 1))
    base, step, scales = scale_table()
    y_freq, y_off = entropy.gaussian_tables(scales)
    tensors["y_freq"], tensors["y_offsets"] = y_freq, y_off
    tensors["log_gain_q"] = np.round(model.log_gain.detach().double().numpy() * 2**FRAC_BITS).astype(np.int64)
    tensors["log_igain"] = model.log_igain.detach().numpy().astype(np.float32)
    meta = {
        "codec": codec_id,
        "config": model.config.to_dict(),
        "hs_layers": [la.spec() for la in layers],
        **specs,
        "frac_bits": FRAC_BITS,
        "scale_base_q": base,
        "scale_step_q": step,
        "z_radius": Z_RADIUS,
        "intnet_max_err": err,
        **(extra_meta or {}),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    packed.write(out, tensors, meta)
    if not synth_gain:
        return meta
    # the synthesis' channel energies (for the encoder's token choice), measured with the
    # codec the file makes, then added
    tensors["synth_gain"] = measure_synth_gain(out, crops[:SYNTH_GAIN_CROPS]).astype(np.float32)
    packed.write(out, tensors, meta)
    return meta


SYNTH_GAIN_CROPS = 6
SYNTH_GAIN_LEVEL = 2500


@torch.no_grad()
def measure_synth_gain(path: Path, crops) -> np.ndarray:
    """(M,): for each latent channel, the squared pixel error (0..1, summed over colours) per
    squared unit of change of y_hat at one position: the mean over the crops of
    ||g_s(y_hat + d*s_c) - g_s(y_hat)||^2 / (d^2 * positions), s_c random signs on channel c
    (their cross terms cancel on average). y_hat as decoded at a middle level."""
    from tokc.compress.image import ImageCodec, ImageWeights

    codec = ImageCodec(ImageWeights(path), backend="torch")
    g_s = codec.transforms.model.g_s
    m, d = codec.weights.config["m"], 0.25
    gain = np.zeros(m)
    for x in crops:
        a = codec.analyse((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        y_hat = torch.from_numpy(codec.latents(codec.code(a, SYNTH_GAIN_LEVEL), SYNTH_GAIN_LEVEL))[None]
        ref = g_s(y_hat)
        signs = torch.from_numpy(
            np.random.default_rng(0).choice([-d, d], y_hat.shape[2:]).astype(np.float32))
        for c in range(m):
            moved = y_hat.clone()
            moved[0, c] += signs
            gain[c] += (g_s(moved) - ref).square().sum().item() / (d * d * signs.numel())
    return gain / len(crops)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args(argv)
    torch.set_flush_denormal(True)
    model, step = load_checkpoint(args.checkpoint)
    meta = pack(model, calibration_crops(args.data), args.out, {"train_steps": step})
    print(json.dumps({k: meta[k] for k in ("hs_layers", "intnet_max_err", "train_steps")}))


if __name__ == "__main__":
    main()
