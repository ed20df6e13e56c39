"""Earlier weights of tokc-image-v1 and tokc-audio-v1, kept so that every file a released
tokc wrote keeps decoding after the shipped weights are replaced.

Each shipped weights set is a codec version, named in a file's header by its digest. When the
weights are replaced, the old file is archived (`archive`, `python -m tokc.compress.versions
OLD.safetensors`) into weights/versions/ as a decode-only file: the synthesis g_s (fp16), the
integer networks (8-bit weights stored as int8), the entropy tables and the gains, without the
encoder's g_a, h_a and synth_gain; its meta keeps the original file's sha256, so it answers
to the original digest. A decoder that meets a digest other than its weights' looks there
(`for_digest`) and decodes with that version (an audio version is its whole decoder: the
transform is fixed, and its noise-fill settings are in the file's config). Its g_s runs in ONNX Runtime from a graph written from
the weights when first used (`synthesis_graph`; no export files), or in torch with
--backend torch. A tune file beside the old weights is archived beside the archive.

An archive made with --delta-of NEW (the weights replacing it) leaves out the tensors NEW holds
unchanged (a new synthesis alone keeps every table and integer network): its meta names NEW's
sha256, the keys left out and a digest of their values, and `read` takes them back from NEW
(the install's weights, or NEW's own archive once NEW is replaced in turn).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from tokc import format as fmt
from tokc.compress import onnx_proto as pb
from tokc.compress.base import CodecError
from tokc.models import packed

ENCODER_ONLY = ("g_a.", "h_a.", "synth_gain")
DELTA = "archived_delta_of"  # meta of an archive stored as a delta: {"sha256", "keys", "values_sha256"}
GDN_EPS = 1e-6  # tokc.models.hyperprior.SimplifiedGDN's beta floor


def archive_name(codec_id: str, digest: bytes, tune: str | None = None) -> str:
    return f"{codec_id}.{digest.hex()}" + (f".{tune}" if tune else "") + ".safetensors"


def find(folder: Path, codec_id: str, digest: bytes) -> Path | None:
    """The archived weights of this digest in folder, or None."""
    path = Path(folder) / archive_name(codec_id, digest)
    return path if path.is_file() else None


def for_digest(codec, digest: bytes):
    """The codec of the weights a file names: codec itself, or one (of the same class, on the
    same backend) over an earlier version archived in weights/versions/ beside its weights,
    kept in codec._versions; WeightsMismatchError if none."""
    w = codec.weights
    if digest == w.digest:
        return codec
    cache = codec._versions
    if digest not in cache:
        folder = w.path.parent / "versions"
        path = find(folder, w.codec_id, digest)
        if path is None:
            raise fmt.WeightsMismatchError(
                f"{w.codec_id} file made by weights {digest.hex()}, which this install does not "
                f"have (it has {w.digest.hex()} and the versions in {folder})")
        cache[digest] = type(codec)(type(w)(path), codec.backend)
    return cache[digest]


def check_encodes(weights) -> None:
    """CodecError for an archived version: its file holds no encoder."""
    if weights.archived:
        raise CodecError(f"{weights.path.name} is an archived version: it only decodes")


def _narrow(key: str, v: np.ndarray) -> np.ndarray:
    """Integer network weights that fit in int8 are stored so (int_layers reads any int)."""
    if v.dtype == np.int16 and key.endswith(".weight") and v.size and np.abs(v).max() <= 127:
        return v.astype(np.int8)
    return v


def _values_sha256(tensors: dict[str, np.ndarray], keys) -> str:
    """A digest of the values (not the storage type: an archive narrows int16 to int8) of keys."""
    h = hashlib.sha256()
    for k in sorted(keys):
        v = tensors[k]
        v = v.astype(np.int64 if np.issubdtype(v.dtype, np.integer) else np.float64)
        h.update(f"{k}{v.shape}".encode() + np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


def read(path: Path, _depth: int = 0) -> packed.Packed:
    """A packed weights file; an archive stored as a delta with the tensors it left out taken
    back from the weights it names (CodecError if those are missing or not the same)."""
    f = packed.read(path)
    delta = f.meta.get(DELTA)
    if not delta:
        return f
    codec_id = f.meta.get("codec", "tokc-image-v1")
    base = _by_sha256(Path(path).parent, codec_id, delta["sha256"], _depth + 1)
    keys = delta["keys"]
    if base is None or not set(keys) <= set(base.tensors) or _values_sha256(base.tensors, keys) != delta["values_sha256"]:
        raise CodecError(f"{Path(path).name} needs the weights {delta['sha256'][:16]} it was archived "
                         f"against, beside it or installed as {codec_id}.safetensors")
    return packed.Packed(f.path, f.meta, {**f.tensors, **{k: base.tensors[k] for k in keys}})


def _by_sha256(folder: Path, codec_id: str, sha256: str, depth: int) -> packed.Packed | None:
    """The weights of this sha256: an archive in folder, or the install's weights beside it."""
    if depth > 8:
        return None
    path = find(folder, codec_id, bytes.fromhex(sha256)[: fmt.DIGEST_BYTES])
    if path is not None:
        f = read(path, depth)
        if f.meta.get("archived_sha256") == sha256:
            return f
    path = folder.parent / f"{codec_id}.safetensors"
    if path.is_file():
        f = packed.read(path)
        if f.sha256 == sha256:
            return f
    return None


def archive(weights_path: Path, folder: Path, tunes=("perceptual",), delta_of: Path | None = None) -> list[Path]:
    """Write the decode-only archive of a weights file (and of its tunes' files beside it) into
    folder; with delta_of (the weights replacing it), without the tensors those hold unchanged.
    -> the files written."""
    f = packed.read(weights_path)
    codec_id = f.meta.get("codec", "tokc-image-v1")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: _narrow(k, v) for k, v in f.tensors.items() if not k.startswith(ENCODER_ONLY)}
    meta = {**f.meta, "archived_sha256": f.sha256, "archived_from": Path(weights_path).name}
    if delta_of is not None:
        new = packed.read(delta_of)
        keys = sorted(k for k, v in tensors.items()
                      if k in new.tensors and new.tensors[k].shape == v.shape and np.array_equal(new.tensors[k], v))
        tensors = {k: v for k, v in tensors.items() if k not in keys}
        meta[DELTA] = {"sha256": new.sha256, "keys": keys, "values_sha256": _values_sha256(new.tensors, keys)}
    out = folder / archive_name(codec_id, f.digest)
    packed.write(out, tensors, meta)
    written = [out]
    for tune in tunes:
        src = Path(weights_path).with_name(f"{Path(weights_path).stem}.{tune}.safetensors")
        if src.is_file():
            dst = folder / archive_name(codec_id, f.digest, tune)
            dst.write_bytes(src.read_bytes())
            written.append(dst)
    return written


def synthesis_graph(state: dict[str, np.ndarray], shortcut: bool) -> bytes:
    """The ONNX model (opset 13) of tokc-image-v1's g_s (tokc.models.hyperprior.Synthesis) from
    its float state: input y (1, M, h, w), output x (1, 3, 16h, 16w). Four 5x5 stride-2
    transposed convolutions with the inverse simplified GDN between them (x * conv1x1(|x|)),
    plus the 16x16 block transform's transpose."""
    nodes, inits = [], []

    def const(name: str, array) -> str:
        inits.append(pb.field(5, pb.tensor(name, np.asarray(array, np.float32))))
        return name

    def op(name: str, *inputs: str, **attributes) -> str:
        out = f"v{len(nodes)}"
        nodes.append(pb.field(1, pb.node(name, list(inputs), out, **attributes)))
        return out

    up = {"kernel_shape": [5, 5], "strides": [2, 2], "pads": [2, 2, 2, 2], "output_padding": [1, 1]}
    x = "y"
    for i in (0, 2, 4, 6):
        w, b = state[f"layers.{i}.weight"], state[f"layers.{i}.bias"]
        x = op("ConvTranspose", x, const(f"w{i}", w), const(f"b{i}", b), **up)
        if i < 6:
            beta = state[f"layers.{i + 1}.beta_p"] ** 2 + GDN_EPS
            gamma = state[f"layers.{i + 1}.gamma_p"] ** 2
            norm = op("Conv", op("Abs", x), const(f"g{i}", gamma[:, :, None, None]), const(f"be{i}", beta),
                      kernel_shape=[1, 1])
            x = op("Mul", x, norm)
    if shortcut:
        block = op("ConvTranspose", "y", const("wb", state["block.weight"]), const("bb", state["block.bias"]),
                   kernel_shape=[16, 16], strides=[16, 16])
        x = op("Add", x, block)
    m = state["layers.0.weight"].shape[0]
    graph = (b"".join(nodes) + pb.field(2, "g_s") + b"".join(inits)
             + pb.field(11, pb.value_info("y", (1, m, "height", "width")))
             + pb.field(12, pb.value_info(x, (1, 3, "out_height", "out_width"))))
    return pb.field(1, 7) + pb.field(7, graph) + pb.field(8, pb.field(1, "") + pb.field(2, 13))


class GraphSynthesis:
    """g_s of a packed file (weights or tune) in ONNX Runtime, from synthesis_graph: the
    transforms object of an archived version (it decodes only)."""

    name = "onnx-graph"

    def __init__(self, file: packed.Packed, threads: int = 0):
        import onnxruntime as ort

        state = file.float_state("g_s")
        graph = synthesis_graph(state, bool(file.meta["config"].get("shortcut")))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])

    def run(self, part: str, x: np.ndarray) -> np.ndarray:
        if part != "g_s":
            raise CodecError("archived weights decode only: encode with the current weights")
        return self.session.run(None, {"y": np.ascontiguousarray(x, np.float32)[None]})[0][0]


def synthesis(file: packed.Packed, backend: str):
    """The synthesis of an archived version on a backend: torch when asked for, else the graph."""
    if backend == "torch":
        from tokc.compress.backends import TorchTransforms

        return TorchTransforms(SimpleNamespace(file=file),  # all it reads of a weights object
                               build=packed.synthesis_model)
    return GraphSynthesis(file)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Archive weights before they are replaced, so "
                                 "that the files they made keep decoding.")
    ap.add_argument("weights", type=Path, help="the weights file about to be replaced")
    ap.add_argument("-o", "--out", type=Path,
                    default=Path(__file__).resolve().parents[1] / "weights" / "versions")
    ap.add_argument("--delta-of", type=Path, metavar="NEW",
                    help="the weights replacing it: leave out the tensors they hold unchanged")
    args = ap.parse_args(argv)
    for path in archive(args.weights, args.out, delta_of=args.delta_of):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
