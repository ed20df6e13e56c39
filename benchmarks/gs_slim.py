"""A narrower synthesis (tokc.train.image_slim) against the one it replaces.

    python benchmarks/gs_slim.py speed             # g_s at 768x512 in ONNX Runtime by hidden widths
    python benchmarks/gs_slim.py compare NEW OLD   # PSNR per quality on Kodak, same tokens

speed: 2 threads, interleaved rounds, random weights (the time depends on the shapes only).
compare (torch backend for both): every image coded at -q 0 / 17 / 33 / 50 / 67 / 83 / 100 by both weights files (their
encoders are the same: the tokens must match, and it is checked), decoded by each, the mean PSNR
of each per quality and the largest loss."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tokc.models.hyperprior import Synthesis


def speed(widths=((64, 64), (64, 48), (64, 32), (48, 32), (32, 32)), rounds: int = 15) -> dict:
    """ms of g_s by (second, last) hidden width."""
    import onnxruntime as ort

    from tokc.export import subpixel
    from tokc.export.onnx import trace

    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mid, last in widths:
            g = Synthesis(64, 288, True, last, mid).eval()
            path = Path(tmp) / f"g_s{mid}_{last}.onnx"
            trace(subpixel.deployable(g), "g_s", 288, path, 18)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = 2, 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sessions[f"{mid}/{last}"] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 288, 32, 48)).astype(np.float32)
    times = {key: [] for key in sessions}
    for _ in range(rounds):  # interleaved
        for key, s in sessions.items():
            time.sleep(0.05)
            t = time.perf_counter()
            s.run(None, {s.get_inputs()[0].name: x})
            times[key].append(time.perf_counter() - t)
    return {key: round(1000 * statistics.median(t[2:]), 1) for key, t in times.items()}


def compare(new: Path, old: Path, images: Path, qualities=(0, 17, 33, 50, 67, 83, 100)) -> dict:
    from tokc.compress.image import ImageCodec, ImageWeights
    from tokc.compress.pixels import read_image
    from tokc.metrics.image import psnr

    # one backend for both: g_a in another backend may round a token the other way
    codecs = {"new": ImageCodec(ImageWeights(new), backend="torch"), "old": ImageCodec(ImageWeights(old), backend="torch")}
    res = {name: {q: [] for q in qualities} for name in codecs}
    for path in sorted(Path(images).glob("*.png")):
        rgb = read_image(path)
        for q in qualities:
            tokens = set()
            for name, codec in codecs.items():
                data = codec.compress(rgb, quality=q).data
                _, _, z, c = codec.decode_tokens(data)
                tokens.add(z.tobytes() + c.q.tobytes() + c.index.tobytes())
                res[name][q].append(psnr(rgb, codec.decompress(data)))
            if len(tokens) != 1:
                raise SystemExit(f"{path.name} -q {q}: the two encoders chose different tokens")
    mean = {name: {q: round(statistics.mean(v), 3) for q, v in r.items()} for name, r in res.items()}
    loss = {q: round(mean["old"][q] - mean["new"][q], 3) for q in qualities}
    return {"images": len(res["new"][qualities[0]]), "psnr": mean, "loss_db": loss, "max_loss_db": max(loss.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("speed")
    c = sub.add_parser("compare")
    c.add_argument("new", type=Path)
    c.add_argument("old", type=Path)
    c.add_argument("--images", type=Path, default=Path("../shared/data/images/kodak"))
    args = ap.parse_args()
    if args.cmd == "speed":
        print(json.dumps({"g_s_ms_by_second_and_last_hidden_width": speed()}))
    else:
        print(json.dumps(compare(args.new, args.old, args.images)))


if __name__ == "__main__":
    main()
