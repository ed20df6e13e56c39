"""ONNX export of tokc-image-v1's float transforms (g_a, h_a, g_s) with the dynamo exporter.

`python -m tokc.export.onnx [WEIGHTS] -o DIR` writes <codec>.<part>.onnx for each part and
<codec>.onnx.json: input/output names, dynamic axes, opset, the sha256 of the weights file
they were made from, and the validation against PyTorch at a shape different from the traced
one. The integer hyper-synthesis is not exported: it runs in numpy everywhere
(tokc.compress.intnet), which is what keeps token streams identical across backends.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

OPSET = 18
TOLERANCE = 1e-3  # max abs difference to PyTorch, in the units of each output
# part -> (input name, output name, spatial multiple of the input, channels in, traced hw,
#          validation hw)
PARTS = {
    "g_a": ("x", "y", 16, 3, (128, 192), (208, 144)),
    "h_a": ("y", "z", 4, None, (8, 12), (12, 8)),
    "g_s": ("y_hat", "x_hat", 1, None, (8, 12), (13, 9)),
}


class ExportError(RuntimeError):
    pass


def export_image(weights_path: Path, out_dir: Path, opset: int = OPSET) -> dict:
    import onnxruntime as ort
    import torch

    from tokc.compress.image import CODEC_ID, ImageWeights, TorchTransforms

    weights = ImageWeights(weights_path)
    model = TorchTransforms(weights).model
    m = int(weights.config["m"])
    out_dir.mkdir(parents=True, exist_ok=True)
    sidecar = {
        "codec": CODEC_ID,
        "weights_sha256": hashlib.sha256(Path(weights_path).read_bytes()).hexdigest(),
        "opset": opset,
        "tolerance": TOLERANCE,
        "parts": {},
    }
    gen = torch.Generator().manual_seed(0)
    for part, (inp, outp, mult, cin, traced, check) in PARTS.items():
        module = getattr(model, part)
        cin = cin or m
        x = torch.rand(1, cin, *traced, generator=gen)
        h = torch.export.Dim("height", min=1, max=8192)
        w = torch.export.Dim("width", min=1, max=8192)
        dims = {2: mult * h, 3: mult * w} if mult > 1 else {2: h, 3: w}
        path = out_dir / f"{CODEC_ID}.{part}.onnx"
        program = torch.onnx.export(module, (x,), dynamo=True, opset_version=opset,
                                    input_names=[inp], output_names=[outp],
                                    dynamic_shapes=(dims,), verbose=False)
        program.save(str(path), external_data=False)  # one self-contained file per part
        # validate at another shape: names, shapes, then values
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names_in = [i.name for i in sess.get_inputs()]
        names_out = [o.name for o in sess.get_outputs()]
        if names_in != [inp] or names_out != [outp]:
            raise ExportError(f"{part}: names {names_in} -> {names_out}, expected [{inp}] -> [{outp}]")
        xv = torch.rand(1, cin, *check, generator=gen)
        with torch.inference_mode():
            ref = module(xv).numpy()
        got = sess.run(None, {inp: xv.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"{part}: shape {got.shape}, PyTorch gives {ref.shape}")
        err = float(np.abs(got - ref).max())
        rel = err / max(float(np.abs(ref).max()), 1e-12)
        if err > TOLERANCE:
            raise ExportError(f"{part}: max abs error {err:.3g} > {TOLERANCE}")
        sidecar["parts"][part] = {
            "file": path.name, "input": inp, "output": outp,
            "dynamic_axes": {"height": 2, "width": 3}, "spatial_multiple": mult,
            "validated_shape": list(xv.shape), "max_abs_err": err, "max_rel_err": rel,
        }
    (out_dir / f"{CODEC_ID}.onnx.json").write_text(json.dumps(sidecar, indent=1) + "\n")
    return sidecar


def main(argv=None) -> None:
    from tokc.compress.image import WEIGHTS

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("weights", type=Path, nargs="?", default=WEIGHTS)
    ap.add_argument("-o", "--out", type=Path, default=WEIGHTS.parent)
    ap.add_argument("--opset", type=int, default=OPSET)
    args = ap.parse_args(argv)
    side = export_image(args.weights, args.out, args.opset)
    print(json.dumps({p: {k: v[k] for k in ("max_abs_err", "validated_shape")} for p, v in side["parts"].items()}))


if __name__ == "__main__":
    main()
