"""A published tokenizer from its exported folder, without torch: `tokc export --arch ARCH
--checkpoint CKPT -o DIR` writes <arch>.encoder.onnx, <arch>.decoder.onnx and <arch>.onnx.json;
this runs them on ONNX Runtime (CPU, or the CUDA provider) or on TensorRT through ONNX Runtime's
TensorRT provider, whose engines go to tokc's engine cache (tokc.runtimes.trt.default_cache_dir).

    tok = load_exported("exports/")            # or tokc.load_exported
    tokens = tok.encode(image)                  # numpy in, numpy out (the graph's first output)
    image = tok.decode(tokens)                  # other decoder inputs: keywords, else defaults

Inputs are numpy arrays shaped as the sidecar says (`tok.encoder_inputs`, `tok.decoder_inputs`);
a decoder input the caller leaves out takes the sidecar's default (WavTokenizer's
`bandwidth_id`: the checkpoint's; One-D-Piece's masked `num_tokens`: the prefix the caller gives
as `prefix=`, else every slot), and any other missing input is an error naming it. A size the
export fixed (an image size, a latent grid: the ints in the sidecar's shapes) or a bandwidth id
outside the checkpoint's is refused with a `RuntimeInputError` before ONNX Runtime runs.

Two architectures need more than one graph call: GPSToken's `encode` computes the Gaussians'
initial layout in numpy first (:class:`ExportedGPSToken`), and FlexTok's `decode` runs the
rectified-flow sampler here around its velocity graph, then the VAE decoder
(:class:`ExportedFlexTok`, :mod:`tokc.runtimes.flow`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tokc.runtimes.errors import RuntimeInputError, RuntimeUnavailable

DEVICES = ("cpu", "cuda", "tensorrt")


def find_sidecar(folder: Path) -> Path:
    folder = Path(folder)
    if folder.is_file():
        return folder
    found = []
    for p in sorted(folder.glob("*.onnx.json")):
        try:
            side = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(side, dict) and "arch" in side and "graphs" in side:
            found.append(p)
    if not found:
        raise RuntimeUnavailable(f"{folder}: no tokenizer export (an <arch>.onnx.json from "
                                 "`tokc export --arch`)")
    if len(found) > 1:
        raise RuntimeUnavailable(f"{folder}: several tokenizer exports ({', '.join(p.name for p in found)}); "
                                 "give the .onnx.json")
    return found[0]


def _providers(device: str) -> list:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise RuntimeUnavailable("ONNX Runtime here has no CUDA provider (pip install onnxruntime-gpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if "TensorrtExecutionProvider" not in available:
        raise RuntimeUnavailable("ONNX Runtime here has no TensorRT provider (onnxruntime-gpu with TensorRT)")
    from tokc.runtimes.trt import default_cache_dir

    cache = default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    return [("TensorrtExecutionProvider", {"trt_engine_cache_enable": True,
                                           "trt_engine_cache_path": str(cache)}),
            "CUDAExecutionProvider", "CPUExecutionProvider"]


class ExportedTokenizer:
    def __init__(self, sidecar: Path, device: str = "cpu", threads: int | None = None):
        import onnxruntime as ort

        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        self.sidecar_path = Path(sidecar)
        self.sidecar = side = json.loads(self.sidecar_path.read_text())
        self.arch = side["arch"]
        self.constraints = side.get("constraints", {})
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = _providers(device)
        self.sessions = {}
        for part in side["graphs"]:
            path = self.sidecar_path.parent / side["graphs"][part]["file"]
            if not path.exists():
                raise RuntimeUnavailable(f"{path} is missing (the export is incomplete)")
            self.sessions[part] = ort.InferenceSession(str(path), opts, providers=providers)
        self.device = device

    @property
    def encoder_inputs(self) -> list[dict]:
        return self.sidecar["graphs"]["encoder"]["inputs"]

    @property
    def decoder_inputs(self) -> list[dict]:
        return self.sidecar["graphs"]["decoder"]["inputs"]

    def _need(self, part: str) -> None:
        if part not in self.sessions:
            raise RuntimeUnavailable(f"{self.arch}: this export has no {part} graph (the checkpoint had none)")

    def _run(self, part: str, first: np.ndarray, given: dict) -> dict[str, np.ndarray]:
        self._need(part)
        specs = self.sidecar["graphs"][part]["inputs"]
        sess = self.sessions[part]
        types = {i.name: i.type for i in sess.get_inputs()}
        feed = {}
        for k, spec in enumerate(specs):
            name = spec["name"]
            value = first if k == 0 else given.pop(name, None)
            if value is None:
                value = self._default(name, first)
            if value is None:
                raise RuntimeInputError(f"{self.arch} {part}: input {name!r} {spec['shape']} is required")
            dtype = np.int64 if "int64" in types[name] else np.float32
            arr = np.ascontiguousarray(value, dtype=dtype)
            fixed = [(k, n) for k, n in enumerate(spec["shape"]) if isinstance(n, int)]
            if arr.ndim != len(spec["shape"]) or any(arr.shape[k] != n for k, n in fixed):
                raise RuntimeInputError(f"{self.arch} {part}: {name!r} must be {spec['shape']} "
                                        f"(numbers are fixed at export), got shape {arr.shape}")
            self._check_range(part, name, arr)
            feed[name] = arr
        if given:
            raise RuntimeInputError(f"{self.arch} {part} has no input {', '.join(map(repr, given))}")
        outs = sess.run(None, feed)
        return {o["name"]: v for o, v in zip(self.sidecar["graphs"][part]["outputs"], outs, strict=True)}

    def _check_range(self, part: str, name: str, arr: np.ndarray) -> None:
        """A conditioning id outside what the export recorded is refused here, not by a Gather
        deep in the graph."""
        if name == "bandwidth_id" and "bandwidth_ids" in self.constraints:
            n = self.constraints["bandwidth_ids"]
            if arr.size and not (arr.min() >= 0 and arr.max() < n):
                raise RuntimeInputError(f"{self.arch} {part}: bandwidth_id must be in [0, {n}) "
                                        f"(this checkpoint has {n}), got {arr.tolist()}")

    def _default(self, name: str, first: np.ndarray):
        if name == "bandwidth_id" and "bandwidth_id_default" in self.constraints:
            return np.array([self.constraints["bandwidth_id_default"]], dtype=np.int64)
        if name == "num_tokens":  # the masked One-D-Piece decoder: every slot by default
            return np.full((first.shape[0],), first.shape[-1], dtype=np.int64)
        return None

    def encode_all(self, x: np.ndarray, **inputs) -> dict[str, np.ndarray]:
        """Every output of the encoder graph by name (tokens, latents)."""
        return self._run("encoder", x, dict(inputs))

    def encode(self, x: np.ndarray, **inputs) -> np.ndarray:
        """The encoder's tokens (its first output)."""
        return next(iter(self.encode_all(x, **inputs).values()))

    def decode(self, tokens: np.ndarray, prefix: int | None = None, **inputs) -> np.ndarray:
        """The decoder's output (image or audio) from tokens; prefix: One-D-Piece decodes the
        first `prefix` tokens (a slice for the dynamic graph, num_tokens for the masked one)."""
        tokens = np.asarray(tokens)
        if prefix is not None:
            if self.sidecar.get("token_axis") == "masked":
                inputs.setdefault("num_tokens", np.full((tokens.shape[0],), prefix, dtype=np.int64))
            else:
                tokens = tokens[..., :prefix]
        return next(iter(self._run("decoder", tokens, dict(inputs)).values()))


class ExportedGPSToken(ExportedTokenizer):
    """GPSToken: ``encode(image, num_tokens=None)`` computes the Gaussians' initial layout in
    numpy (:mod:`tokc.models.gpstoken_layout`, the code the torch model runs) and feeds it to
    the encoder graph; tokens are (batch, M, 5 + C) floats (GPSToken has no quantizer)."""

    def encode_all(self, x: np.ndarray, num_tokens: int | None = None, **inputs) -> dict[str, np.ndarray]:
        from tokc.models.gpstoken_layout import adaptive_partition, grey_of_array

        c = self.constraints
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or list(x.shape[1:]) != [3, *c["image_size"]]:
            raise RuntimeInputError(f"gpstoken encoder: image must be (batch, 3, {c['image_size'][0]}, "
                                    f"{c['image_size'][1]}) in [-1, 1], got {x.shape}")
        m = int(num_tokens or c["num_tokens_default"])
        if "init" not in inputs or "regions" not in inputs:
            lay = c["layout"]
            try:
                inits, regions = zip(*(adaptive_partition(grey_of_array(img), m, lay["adaptive_weight"],
                                                          lay["min_size"]) for img in x))
            except ValueError as exc:
                raise RuntimeInputError(f"gpstoken encoder: {exc}") from None
            inputs.setdefault("init", np.stack(inits))
            inputs.setdefault("regions", np.stack(regions))
        return self._run("encoder", x, inputs)


class ExportedFlexTok(ExportedTokenizer):
    """FlexTok: ``encode(image)`` (VAE encoder graph, then the register encoder + FSQ) or
    ``encode_latents(latents)``; ``decode(tokens, steps, guidance, seed)`` runs the sampling
    loop here (:mod:`tokc.runtimes.flow`, numpy) around the velocity graph, then the VAE decoder
    graph (``sample`` stops at the latents). Noise: ``noise=`` as given, else
    numpy.random.default_rng(seed).standard_normal — the same seed does not give torch's noise,
    so pass ``noise=`` to reproduce a torch decode exactly."""

    def encode_latents(self, latents: np.ndarray, num_tokens: int | None = None) -> np.ndarray:
        tokens = self._run("encoder", latents, {})["tokens"]
        return tokens[:, :num_tokens] if num_tokens is not None else tokens

    def encode(self, x: np.ndarray, num_tokens: int | None = None, sample_posterior: bool = False,
               seed: int | None = 0) -> np.ndarray:
        """Tokens (batch, N or num_tokens) for images (batch, 3, H, W) in [-1, 1]: the VAE
        posterior mean (or a sample, mean + std·ε with ε from seed), then the encoder."""
        out = self._run("vae_encoder", x, {})
        latents = out["latents"]
        if sample_posterior:
            eps = np.random.default_rng(seed).standard_normal(latents.shape, dtype=np.float32)
            latents = latents + out["std"] * eps
        return self.encode_latents(latents, num_tokens)

    def sample(self, tokens: np.ndarray, steps: int = 25, guidance: float = 1.0, seed: int | None = 0, *,
               noise: np.ndarray | None = None, apg: bool = False, apg_momentum: float = -0.5,
               apg_eta: float = 0.0, apg_norm_threshold: float = 2.5) -> np.ndarray:
        """VAE latents (batch, C, h, w) for tokens (batch, k), 1 <= k <= N, Euler from t = 1 to 0
        (:meth:`tokc.models.flextok_decoder.FlexTokDecoder.sample`'s loop)."""
        from tokc.runtimes.flow import flow_decode

        c = self.constraints
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or not 1 <= tokens.shape[1] <= c["max_tokens"] or tokens.dtype.kind not in "iu" \
                or (tokens.size and not (tokens.min() >= 0 and tokens.max() < c["codebook_size"])):
            raise RuntimeInputError(f"flextok decoder: tokens must be integers (batch, 1..{c['max_tokens']}) "
                                    f"in [0, {c['codebook_size']}), got {tokens.dtype} {tokens.shape}")
        b = tokens.shape[0]
        shape = (b, c["latent_channels"], *c["latent_size"])
        if noise is None:
            noise = np.random.default_rng(0 if seed is None else seed).standard_normal(shape, dtype=np.float32)
        noise = np.asarray(noise, dtype=np.float32)
        if noise.shape != shape:
            raise RuntimeInputError(f"flextok decoder: noise must be {shape}, got {noise.shape}")
        guided = guidance != 1.0
        state = {"m": None}

        def velocity(x, t):
            out = self._run("decoder", x, {"timestep": np.full((b,), t, np.float32), "tokens": tokens,
                                           "guidance": np.array([guidance], np.float32)})
            v_c, v_u = out["v_cond"], out["v_uncond"]
            if not guided:
                return v_c
            if apg and apg_momentum != 0.0:  # the official APG momentum, as the torch sampler
                d = v_c - v_u
                state["m"] = d if state["m"] is None else d + apg_momentum * state["m"]
                v_u = v_c - state["m"]
            return v_c, v_u

        return flow_decode(velocity, noise, steps, guidance=guidance, mode="apg" if apg else "cfg",
                           apg_eta=apg_eta, apg_norm_threshold=apg_norm_threshold if apg else 0.0)

    def decode(self, tokens: np.ndarray, steps: int = 25, guidance: float = 1.0, seed: int | None = 0,
               **kw) -> np.ndarray:
        """Images (batch, 3, 8h, 8w) ≈ [-1, 1] (latents when the export has no VAE decoder)."""
        latents = self.sample(tokens, steps, guidance, seed, **kw)
        if "vae_decoder" not in self.sessions:
            return latents
        return self._run("vae_decoder", latents, {})["image"]


CLASSES = {"gpstoken": ExportedGPSToken, "flextok": ExportedFlexTok}


def load_exported(folder: str | Path, device: str = "cpu", threads: int | None = None) -> ExportedTokenizer:
    """The tokenizer exported into folder (or the sidecar .onnx.json given), on device cpu,
    cuda (ONNX Runtime's CUDA provider) or tensorrt (its TensorRT provider)."""
    sidecar = find_sidecar(Path(folder))
    try:
        arch = json.loads(sidecar.read_text()).get("arch")
    except (OSError, ValueError, AttributeError):
        raise RuntimeUnavailable(f"{sidecar}: not a readable tokenizer sidecar") from None
    return CLASSES.get(arch, ExportedTokenizer)(sidecar, device, threads)
