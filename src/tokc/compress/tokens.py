"""`one-d-piece-v1`: an image as a prefix of One-D-Piece tokens in a .tokc file.

One-D-Piece orders its N tokens by importance (tail-token drop), so the first k of them are a
complete, coarser description of the image: k sets the rate. Layers as everywhere in tokc:

- model (tokc.models.titok): image <-> token indices;
- codec (this module): image <-> bytes;
- format (tokc.format): the container: header ``codec=one-d-piece-v1``, the weights digest of
  the checkpoint, the original width/height/channels, rate parameters ``tokens=k`` and
  ``bits=b``, then one chunk ``tokr`` with the k indices packed LSB first at b bits each
  (b = ceil(log2 codebook size), 12 for the released 4096-entry codebooks), zero-padded to a
  byte. Grayscale and alpha as in tokc-image-v1 (R=G=B; alpha losslessly in an ``alph`` chunk).

**Other image sizes.** The tokenizer sees exactly its training size (256x256 for the released
models). An image of any other size is resized to that size (Pillow bicubic, which low-pass
filters when it shrinks) and the decoded image is resized back to the original size. Resizing
keeps the whole field of view: a centre crop would silently drop everything outside the
square, which a codec must never do; the aspect change is undone on decode. The cost is that
the detail of a large image is limited by the 256x256 bottleneck (tiling, k tokens per tile,
would trade more tokens for detail and is not done).

**Why raw bits, not entropy coding.** Measured by :func:`measure_coding` (numbers in
docs/FORMAT.md): a prefix is at most N = 256 (fixture: 8) symbols from a 4096-entry (fixture:
64) alphabet. An adaptive model starting from uniform cannot learn a 4096-symbol distribution
from 256 samples and pays the coder's flush besides: never smaller than raw. A static model
fitted on training images was ~30 % smaller, but on random-init weights only (their encoders
use few codes), and it needs a frequency table per checkpoint measured with the released
weights; raw packing needs nothing but the checkpoint.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from tokc import format as fmt
from tokc.compress.base import CodecError, CodecUsageError, EncodeResult

CODEC_ID = "one-d-piece-v1"
TOKENS_TAG = "tokr"
ARCH = "one-d-piece"


class TokenCodecError(CodecError):
    """Bad input for the token codec (one readable line)."""


TokenEncodeResult = EncodeResult  # the old name: tokens, and rate num_tokens and bits


def bit_width(codebook_size: int) -> int:
    return max(1, math.ceil(math.log2(codebook_size)))


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Non-negative integers < 2**bits, LSB first, zero-padded to whole bytes."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size and (v.min() < 0 or v.max() >= 1 << bits):
        raise TokenCodecError(f"token values must be in [0, {1 << bits})")
    planes = ((v[:, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(planes, bitorder="little").tobytes()


def unpack_bits(data: bytes, count: int, bits: int) -> np.ndarray:
    need = -(-count * bits // 8)
    if len(data) != need:
        raise fmt.CorruptError(f"token chunk has {len(data)} bytes, {count} tokens of {bits} bits need {need}")
    planes = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    if planes[count * bits :].any():
        raise fmt.CorruptError("token chunk has nonzero padding bits")
    planes = planes[: count * bits].reshape(count, bits).astype(np.int64)
    return (planes << np.arange(bits)).sum(axis=1)


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((width, height), Image.BICUBIC))


def open_codec(*, checkpoint: str | Path | None = None, backend: str = "auto") -> OneDPieceCodec:
    """The registry's factory: the codec of a One-D-Piece checkpoint (it runs on PyTorch)."""
    return open_checkpoint_codec(OneDPieceCodec, CODEC_ID, "One-D-Piece", checkpoint, backend)


def open_checkpoint_codec(make, codec_id: str, what: str, checkpoint, backend: str):
    """make(checkpoint) for the codec of a published tokenizer's checkpoint (PyTorch): a missing
    --checkpoint, another backend, no torch, a missing or unreadable checkpoint are one line."""
    if checkpoint is None:
        raise CodecUsageError(f"{codec_id} needs --checkpoint PATH (the {what} checkpoint "
                              "its files are made with)")
    if backend not in ("auto", "torch"):
        raise CodecUsageError(f"{codec_id} runs on PyTorch (--backend auto or torch)")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise CodecError(f"{codec_id} needs PyTorch: pip install torch==2.13.0 && "
                         "pip install 'tokc-codec[torch]'") from None
    from tokc.models.checkpoints import CheckpointError

    if not Path(checkpoint).exists():
        raise CodecUsageError(f"--checkpoint {checkpoint}: no such file or folder")
    try:
        return make(checkpoint)
    except (CheckpointError, ValueError, OSError, KeyError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CodecError(f"{checkpoint}: {msg}") from None


class OneDPieceCodec:
    """A One-D-Piece checkpoint (folder or weights file) as a codec: compress(img, tokens=k)."""

    codec_id = CODEC_ID
    modality = "image"

    def __init__(self, checkpoint: str | Path):
        from tokc.models import load_pretrained
        from tokc.models.checkpoints import resolve

        _, weights = resolve(checkpoint)
        model = load_pretrained(checkpoint, arch=ARCH)
        if not model.config.legacy:
            raise TokenCodecError(f"{checkpoint}: not a One-D-Piece checkpoint")
        self.model = model.eval()
        self.config = model.config
        self.digest = fmt.digest_weights(str(weights))
        self.bits = bit_width(self.config.codebook_size)

    @property
    def num_tokens(self) -> int:
        return self.config.num_latent_tokens

    def encode(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) of any size -> all N token indices (N,) int64."""
        import torch

        h, w = self.config.image_size
        x = resize_rgb(rgb, w, h).astype(np.float32) / 255.0
        with torch.no_grad():
            tokens = self.model.encode(torch.from_numpy(x).permute(2, 0, 1)[None].contiguous())
        return tokens.reshape(-1).numpy()

    def decode(self, tokens: np.ndarray, width: int, height: int) -> np.ndarray:
        """k token indices -> uint8 (height, width, 3)."""
        import torch

        with torch.no_grad():
            out = self.model.decode(torch.from_numpy(np.asarray(tokens, dtype=np.int64)).reshape(1, 1, -1))
        rgb = np.round(out[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        return resize_rgb(rgb, width, height)

    def compress(self, image, tokens: int | None = None, metadata=True) -> EncodeResult:
        """metadata: as tokc-image-v1's (ICC, EXIF, PNG colour chunks after the tokens')."""
        from tokc.compress.pixels import as_image, metadata_chunks, split_alpha_gray

        k = self.num_tokens if tokens is None else int(tokens)
        if k < 1:
            raise CodecUsageError(f"--tokens {k}: must be at least 1")
        if k > self.num_tokens:
            raise CodecUsageError(f"--tokens {k}: this model codes 1..{self.num_tokens} tokens")
        img = as_image(image)
        rgb, channels, extra = split_alpha_gray(img)
        extra = (*extra, *metadata_chunks(image, metadata, channels))
        prefix = self.encode(rgb)[:k]
        header = fmt.Header(codec=CODEC_ID, weights_digest=self.digest, modality="image",
                            width=img.shape[1], height=img.shape[0], channels=channels,
                            rate={"tokens": k, "bits": self.bits})
        data = fmt.pack(header, [fmt.Chunk(TOKENS_TAG, pack_bits(prefix, self.bits)), *extra])
        return EncodeResult(data, CODEC_ID, "image", width=img.shape[1], height=img.shape[0],
                            rate={"num_tokens": k, "bits": self.bits}, tokens=prefix)

    def summary(self, res: EncodeResult) -> tuple[dict, str]:
        """The codec's fields of a compress summary: JSON fields and the text."""
        return ({"tokens": res.num_tokens, "bits_per_token": res.bits},
                f"{res.num_tokens} tokens x {res.bits} bits")

    def read(self, data: bytes) -> tuple[fmt.Header, np.ndarray, dict]:
        """-> (header, the coded token prefix, chunks by tag), every field checked."""
        header, chunks = fmt.unpack(data)
        if header.codec != CODEC_ID or header.modality != "image":
            raise fmt.TokcFormatError(f"a {header.codec} {header.modality} file; this decoder is {CODEC_ID}")
        fmt.check_weights(header, self.digest)
        rate = header.rate_dict()
        k, bits = rate.get("tokens"), rate.get("bits")
        if k is None or bits is None:
            raise fmt.CorruptError("header lacks the 'tokens' or 'bits' rate parameter")
        if not 1 <= k <= self.num_tokens or bits != self.bits:
            raise fmt.CorruptError(f"header says {k} tokens of {bits} bits; this model codes "
                                   f"1..{self.num_tokens} tokens of {self.bits} bits")
        by_tag = {c.tag: c.payload for c in chunks}
        if TOKENS_TAG not in by_tag:
            raise fmt.CorruptError(f"missing the {TOKENS_TAG!r} chunk")
        tokens = unpack_bits(by_tag[TOKENS_TAG], k, bits)
        if tokens.max() >= self.config.codebook_size:
            raise fmt.CorruptError(f"token index {int(tokens.max())} >= codebook size {self.config.codebook_size}")
        return header, tokens, by_tag

    def decompress(self, data: bytes) -> np.ndarray:
        from tokc.compress.pixels import ImageMetadata, merge_alpha_gray

        header, tokens, by_tag = self.read(data)
        ImageMetadata.from_chunks(by_tag)  # a bad metadata chunk is an error, as in the CLI
        rgb = self.decode(tokens, header.width, header.height)
        return merge_alpha_gray(rgb, header.channels, by_tag)


def is_token_file(data: bytes) -> bool:
    """True when ``data`` is a .tokc file of this codec (header only; never raises)."""
    try:
        return fmt.read_header(io.BytesIO(data)).codec == CODEC_ID
    except fmt.TokcFormatError:
        return False


# -- raw bits vs entropy coding (the measurement behind the choice above) -------------------------
def adaptive_bytes(tokens: np.ndarray, alphabet: int) -> int:
    """Bytes of the tokens range-coded with an adaptive model (counts start at 1, +1 per symbol)."""
    import constriction

    counts = np.ones(alphabet, dtype=np.float64)
    enc = constriction.stream.queue.RangeEncoder()
    for t in np.asarray(tokens, dtype=np.int64).reshape(-1):
        model = constriction.stream.model.Categorical(counts / counts.sum(), perfect=False)
        enc.encode(np.array([t], dtype=np.int32), model)
        counts[t] += 1
    return 4 * len(enc.get_compressed())


def static_bytes(tokens: np.ndarray, probabilities: np.ndarray) -> int:
    """Bytes of the tokens range-coded with a fixed categorical model."""
    import constriction

    enc = constriction.stream.queue.RangeEncoder()
    model = constriction.stream.model.Categorical(probabilities, perfect=False)
    enc.encode(np.asarray(tokens, dtype=np.int32).reshape(-1), model)
    return 4 * len(enc.get_compressed())


def measure_coding(codec: OneDPieceCodec, train: list[np.ndarray], test: list[np.ndarray],
                   prefixes=(None,)) -> list[dict]:
    """Per test image and prefix: raw-bit bytes, adaptive and static (fitted on ``train``,
    add-one smoothed) range-coded bytes (constriction's range coder writes 32-bit words), and
    the static model's ideal code length in bits. Payload only (the container is the same)."""
    k_all = codec.num_tokens
    alphabet = codec.config.codebook_size
    counts = np.ones(alphabet)
    for img in train:
        np.add.at(counts, codec.encode(img), 1)
    probs = counts / counts.sum()
    rows = []
    for i, img in enumerate(test):
        tokens = codec.encode(img)
        for k in prefixes:
            k = k_all if k is None else min(k, k_all)
            t = tokens[:k]
            rows.append({"image": i, "tokens": k, "raw": len(pack_bits(t, codec.bits)),
                         "adaptive": adaptive_bytes(t, alphabet), "static": static_bytes(t, probs),
                         "static_ideal_bits": round(float(-np.log2(probs[t]).sum()), 1)})
    return rows
