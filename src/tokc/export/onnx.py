"""ONNX export of tokc-image-v1's float transforms (g_a, h_a, g_s) with the dynamo exporter.

`tokc export MODEL -o DIR [--precision fp32|fp16|int8]` (or `python -m tokc.export.onnx
[WEIGHTS] -o DIR`) writes one graph per part and a JSON sidecar:

    fp32  <codec>.<part>.onnx         <codec>.onnx.json        (the files shipped beside the weights)
    fp16  <codec>.<part>.fp16.onnx    <codec>.fp16.onnx.json   (float16 weights and compute, float32 inputs/outputs)
    int8  <codec>.<part>.int8.onnx    <codec>.int8.onnx.json   (ONNX Runtime static QDQ quantization of the convs)

The sidecar holds input/output names and shapes with their dynamic axes (batch, height,
width), the opset, the tolerance, the sha256 of the weights file and each part's validation
against PyTorch at a shape different from the traced one: names, then shapes, then values
(max abs / rel error), each failure its own error class. int8 is calibrated on crops of
training images (never Kodak) and validated on other training crops.

The integer networks (hyper-synthesis, channel-wise context) are not exported: they run in
numpy everywhere (tokc.compress.intnet), which is what keeps token streams identical across
backends.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from tokc.export import subpixel
from tokc.runtimes.base import PRECISIONS, part_file_name, sidecar_name

OPSET = 18
# A part passes when max |onnx - torch| <= atol + rtol * max |torch|, in the output's units.
TOLERANCES = {"fp32": (1e-3, 0.0), "fp16": (1e-3, 1e-2), "int8": (1e-2, 0.1)}
INT8_SCHEMES = {
    # activations, symmetric activations: u8s8 is what ONNX Runtime's CPU kernels are fast at;
    # TensorRT's explicit quantization needs zero points of 0 (s8s8).
    "u8s8": ("QUInt8", False),
    "s8s8": ("QInt8", True),
}
INT8_OPS = ("Conv", "ConvTranspose")
# part -> (input name, output name, input's spatial multiple, output's spatial multiple,
#          channels in (None: the latent's m), traced (h, w), validation (h, w))
PARTS = {
    "g_a": ("x", "y", 16, 1, 3, (128, 192), (208, 144)),
    "h_a": ("y", "z", 4, 1, None, (8, 12), (12, 8)),
    "g_s": ("y_hat", "x_hat", 1, 16, None, (8, 12), (13, 9)),
}
TRACED_BATCH, CHECK_BATCH = 2, 1
CALIB_CROP = 256  # pixels; calibration and int8 validation crops
CALIB_IMAGES = 8
CALIB_LEVELS = (0, 2500, 5000)  # rate levels (thousandths) at which g_s sees y_hat
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".ppm", ".tif", ".tiff", ".bmp")


class ExportError(RuntimeError):
    """An export that failed or did not validate."""


class NameMismatchError(ExportError):
    """The graph's input/output names are not the ones the runtimes look up."""


class ShapeMismatchError(ExportError):
    """At the validation shape, the graph's output shape differs from PyTorch's."""


class ValueMismatchError(ExportError):
    """At the validation shape, the graph's values differ from PyTorch's beyond the tolerance."""


class CalibrationError(ExportError):
    """No usable calibration images for int8."""


def _dim(name: str, mult: int):
    return name if mult == 1 else f"{mult}*{name}"


def _axes(mult: int, channels: int) -> list:
    return ["batch", channels, _dim("height", mult), _dim("width", mult)]


def trace(module, part: str, channels: int, path: Path, opset: int) -> None:
    """Export one part with the dynamo exporter, batch, height and width dynamic, and name the
    output's axes like the input's (the exporter calls them s12, s34...)."""
    import onnx
    import torch

    inp, outp, m_in, m_out, _, traced, _ = PARTS[part]
    x = torch.rand(TRACED_BATCH, channels, *traced, generator=torch.Generator().manual_seed(0))
    b = torch.export.Dim("batch", min=1, max=64)
    h = torch.export.Dim("height", min=1, max=8192)
    w = torch.export.Dim("width", min=1, max=8192)
    dims = {0: b, 2: m_in * h if m_in > 1 else h, 3: m_in * w if m_in > 1 else w}
    log = logging.getLogger("torch.onnx")  # "torchvision is not installed", once per export
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.onnx.export(module, (x,), dynamo=True, opset_version=opset,
                                        input_names=[inp], output_names=[outp],
                                        dynamic_shapes=(dims,), verbose=False)
    finally:
        log.setLevel(level)
    program.save(str(path), external_data=False)  # one self-contained file per part
    model = onnx.load(str(path))
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    for d, name in zip(out_dims, ("batch", None, _dim("height", m_out), _dim("width", m_out)), strict=True):
        if name is not None:
            d.dim_param = name
    onnx.save(model, str(path))


def to_fp16(src: Path, dst: Path) -> None:
    """float16 weights and compute; inputs and outputs stay float32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))


def to_int8(src: Path, dst: Path, input_name: str, calibration: list[np.ndarray], scheme: str) -> None:
    """ONNX Runtime static quantization, QDQ format, per-channel int8 weights of the convs,
    activation ranges from the calibration inputs (min/max)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{input_name: x} for x in calibration])

        def get_next(self):
            return next(self.feeds, None)

    act, _ = INT8_SCHEMES[scheme]
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=getattr(QuantType, act), weight_type=QuantType.QInt8,
                        per_channel=True, op_types_to_quantize=list(INT8_OPS),
                        extra_options=int8_options(scheme))


def int8_options(scheme: str) -> dict:
    """quantize_static's extra options for a scheme. s8s8 (TensorRT): biases stay float;
    quantized, they become DequantizeLinear nodes with int32 inputs, which TensorRT's ONNX
    parser refuses (its DequantizeLinear takes INT8/FP8/INT4)."""
    _, symmetric = INT8_SCHEMES[scheme]
    options = {"ActivationSymmetric": symmetric, "WeightSymmetric": True}
    if scheme == "s8s8":
        options["QuantizeBias"] = False
    return options


def calibration_files(folder: Path, n: int = CALIB_IMAGES) -> tuple[list[Path], list[Path]]:
    """n images spread over the sorted folder for calibration, and one other for validation."""
    folder = Path(folder)
    if "kodak" in str(folder.resolve()).lower():
        raise CalibrationError(f"{folder}: calibrate on training images, never on the Kodak benchmark")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < n + 1:
        raise CalibrationError(f"int8 calibration needs at least {n + 1} images in {folder}, found {len(files)}")
    step = len(files) // (n + 1)
    picked = files[: step * (n + 1) : step]
    return picked[:n], picked[n:]


def centre_crop(path: Path, size: int = CALIB_CROP) -> np.ndarray:
    """(size, size, 3) uint8, edge-padded when the image is smaller."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    rgb = np.pad(rgb, ((0, max(size - h, 0)), (0, max(size - w, 0)), (0, 0)), mode="edge")
    h, w = rgb.shape[:2]
    return rgb[(h - size) // 2 : (h - size) // 2 + size, (w - size) // 2 : (w - size) // 2 + size]


def part_inputs(weights, crops: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """What each part sees in the codec, on these crops: pixels for g_a, latents y for h_a,
    dequantized latents y_hat at a few rate levels for g_s. Each (1, C, H, W) float32."""
    from tokc.compress.image import ImageCodec

    codec = ImageCodec(weights, backend="torch")
    feeds = {"g_a": [], "h_a": [], "g_s": []}
    for rgb in crops:
        a = codec.analyse(rgb)
        feeds["g_a"].append((rgb.transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32))
        feeds["h_a"].append(a.y[None].astype(np.float32))
        for level in CALIB_LEVELS:
            y_hat = codec.latents(codec.code(a, level), level)
            feeds["g_s"].append(y_hat[None].astype(np.float32))
    return feeds


def validate(path: Path, module, inp: str, outp: str, x: np.ndarray, tolerance: tuple[float, float]) -> dict:
    """Run the graph on ONNX Runtime and the module on PyTorch on x (a shape other than the
    traced one): names, then shapes, then values. -> the measured errors."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names_in = [i.name for i in sess.get_inputs()]
    names_out = [o.name for o in sess.get_outputs()]
    if names_in != [inp] or names_out != [outp]:
        raise NameMismatchError(f"{path.name}: names {names_in} -> {names_out}, expected [{inp}] -> [{outp}]")
    with torch.inference_mode():
        ref = module(torch.from_numpy(x)).numpy()
    got = sess.run(None, {inp: x})[0]
    if got.shape != ref.shape:
        raise ShapeMismatchError(f"{path.name}: shape {got.shape} at input {x.shape}, PyTorch gives {ref.shape}")
    err = float(np.abs(got.astype(np.float64) - ref).max())
    scale = float(np.abs(ref).max())
    atol, rtol = tolerance
    if not err <= atol + rtol * scale:  # also catches NaN
        raise ValueMismatchError(
            f"{path.name}: max abs error {err:.3g} > {atol:g} + {rtol:g} * {scale:.3g} at input {x.shape}"
        )
    return {"max_abs_err": err, "max_rel_err": err / max(scale, 1e-12), "output_channels": ref.shape[1]}


def export_image(weights_path: Path, out_dir: Path, opset: int = OPSET, precision: str = "fp32",
                 calib_dir: Path | None = None, int8_scheme: str = "u8s8",
                 tune: str | None = None) -> dict:
    """Export g_a, h_a, g_s of a weights file at a precision into out_dir; validate each part;
    write the sidecar. tune: export instead the g_s of that tune's file beside the weights
    (tokc-image-v1.<tune>.g_s.onnx and .onnx.json). -> the sidecar as a dict."""
    import torch

    from tokc.compress.image import CODEC_ID, ImageWeights, TorchTransforms, TuneWeights
    from tokc.models import packed

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} ({', '.join(PRECISIONS)})")
    if int8_scheme not in INT8_SCHEMES:
        raise ValueError(f"unknown int8 scheme {int8_scheme!r} ({', '.join(INT8_SCHEMES)})")
    weights_path, out_dir = Path(weights_path), Path(out_dir)
    weights = ImageWeights(weights_path)
    codec_id, parts = CODEC_ID, PARTS
    if tune is None:
        model = TorchTransforms(weights).model
    else:
        if precision == "int8":
            raise ValueError("a tune is exported in fp32 or fp16")
        tuned = TuneWeights(weights, tune)
        weights_path, codec_id = tuned.path, tuned.codec_id
        model = packed.float_model(tuned.file, parts=("g_s",))
        parts = {"g_s": PARTS["g_s"]}
    m = int(weights.config["m"])
    feeds = checks = None
    if precision == "int8":
        if calib_dir is None:
            raise CalibrationError("int8 needs calibration images (a folder of training images)")
        calib, held_out = calibration_files(calib_dir)
        feeds = part_inputs(weights, [centre_crop(p) for p in calib])
        checks = part_inputs(weights, [centre_crop(p) for p in held_out])
    out_dir.mkdir(parents=True, exist_ok=True)
    sidecar = {
        "codec": codec_id,
        "precision": precision,
        "weights_sha256": hashlib.sha256(weights_path.read_bytes()).hexdigest(),
        "weights_file": weights_path.name,
        "opset": opset,
        "tolerance": {"atol": TOLERANCES[precision][0], "rtol": TOLERANCES[precision][1]},
        "validation_input": "training crops held out from calibration" if precision == "int8"
        else "uniform noise in [0, 1)",
        "parts": {},
    }
    if precision == "int8":
        sidecar["int8_scheme"] = int8_scheme
        sidecar["calibration"] = {"images": [str(p) for p in calib], "crop": CALIB_CROP,
                                  "levels_milli": list(CALIB_LEVELS), "ops": list(INT8_OPS)}
    gen = torch.Generator().manual_seed(1)
    # everything is written to a temporary folder beside the outputs, then renamed into place
    # (the sidecar last): a failed export never leaves a half-written or mismatched set
    with tempfile.TemporaryDirectory(prefix=".tokc-export-", dir=out_dir) as tmp:
        for part, (inp, outp, m_in, m_out, cin, traced, check) in parts.items():
            module = getattr(model, part)
            cin = cin or m
            path = Path(tmp) / part_file_name(codec_id, part, precision)
            fp32 = path if precision == "fp32" else Path(tmp) / f"{part}.traced.onnx"
            # transposed convs as sub-pixel convs (exact; checked against `module` below)
            trace(subpixel.deployable(module), part, cin, fp32, opset)
            if precision == "fp16":
                to_fp16(fp32, path)
            elif precision == "int8":
                to_int8(fp32, path, inp, feeds[part], int8_scheme)
            hh, ww = check
            if checks is None:
                x = torch.rand(CHECK_BATCH, cin, hh, ww, generator=gen).numpy()
            else:
                x = np.ascontiguousarray(checks[part][-1][:, :, :hh, :ww])
            errors = validate(path, module, inp, outp, x, TOLERANCES[precision])
            sidecar["parts"][part] = {
                "file": path.name, "input": inp, "output": outp,
                "input_shape": _axes(m_in, cin), "output_shape": _axes(m_out, errors.pop("output_channels")),
                "dynamic_axes": {"batch": 0, "height": 2, "width": 3}, "spatial_multiple": m_in,
                "traced_shape": [TRACED_BATCH, cin, *traced],
                "validated_shape": list(x.shape), **errors,
            }
        side_name = sidecar_name(codec_id, precision)
        (Path(tmp) / side_name).write_text(json.dumps(sidecar, indent=1) + "\n")
        for name in [spec["file"] for spec in sidecar["parts"].values()] + [side_name]:
            os.replace(Path(tmp) / name, out_dir / name)
    return sidecar


def main(argv=None) -> None:
    from tokc.compress.image import WEIGHTS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path, nargs="?", default=WEIGHTS)
    ap.add_argument("-o", "--out", type=Path, default=WEIGHTS.parent)
    ap.add_argument("--opset", type=int, default=OPSET)
    ap.add_argument("--precision", choices=PRECISIONS, default="fp32")
    ap.add_argument("--calib", type=Path, default=None, help="training images for int8 calibration")
    ap.add_argument("--int8-scheme", choices=list(INT8_SCHEMES), default="u8s8")
    ap.add_argument("--tune", help="export the g_s of this tune's file beside the weights "
                    "(e.g. perceptual)")
    args = ap.parse_args(argv)
    side = export_image(args.weights, args.out, args.opset, args.precision, args.calib,
                        args.int8_scheme, args.tune)
    print(json.dumps({p: {k: v[k] for k in ("max_abs_err", "validated_shape")} for p, v in side["parts"].items()}))


if __name__ == "__main__":
    main()
