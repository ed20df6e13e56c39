"""Fixed signal transforms shared by the audio model (torch) and the audio codec (numpy):
the MDCT of tokc-audio-v1, its framing, its band envelope and the envelope-normalised
coefficients it codes. Plain numpy, no torch.

MDCT with hop N and a 2N sine window (Princen-Bradley), orthonormal scaling: frame t covers
samples [t*N, t*N + 2N) of the padded signal, and overlap-adding the inverse transforms of
consecutive frames restores every sample covered by two frames exactly (TDAC).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=4)
def mdct_basis(n: int) -> np.ndarray:
    """(n, 2n) float64: row k is the windowed MDCT basis function of coefficient k, so that
    X = basis @ frame and frame_part = basis.T @ X (then overlap-add)."""
    t = np.arange(2 * n) + 0.5
    window = np.sin(np.pi * t / (2 * n))
    k = np.arange(n)[:, None] + 0.5
    return np.sqrt(2.0 / n) * window * np.cos(np.pi / n * (t + n / 2) * k)


def frames_for(samples: int, hop: int, multiple: int = 1) -> int:
    """Frames T that cover `samples` signal samples placed after `hop` samples of padding:
    the padded signal is (T + 1) * hop long; T is rounded up to a multiple of `multiple`."""
    t = -(-(samples + hop) // hop)
    return -(-t // multiple) * multiple


def pad_signal(x: np.ndarray, hop: int, frames: int) -> np.ndarray:
    """(..., L) -> (..., (frames + 1) * hop): hop zeros before, zeros after."""
    total = (frames + 1) * hop
    pad = [(0, 0)] * (x.ndim - 1) + [(hop, total - hop - x.shape[-1])]
    return np.pad(x, pad)


def mdct(x: np.ndarray, hop: int) -> np.ndarray:
    """(L,) with L = (T + 1) * hop -> (hop, T) coefficients."""
    t = len(x) // hop - 1
    idx = np.arange(t)[:, None] * hop + np.arange(2 * hop)[None]
    return mdct_basis(hop) @ x[idx].T


def imdct(coefs: np.ndarray, hop: int) -> np.ndarray:
    """(hop, T) -> ((T + 1) * hop,) by overlap-add; exact except the first and last hop."""
    parts = mdct_basis(hop).T @ coefs  # (2 hop, T)
    t = coefs.shape[1]
    out = np.zeros((t + 1) * hop)
    out[: t * hop] += parts[:hop].T.reshape(-1)
    out[hop:] += parts[hop:].T.reshape(-1)
    return out


def compand(x, power: float):
    """sign(x) |x|^power: the domain in which the audio model codes its coefficients."""
    return np.sign(x) * np.abs(x) ** power


def expand(y, power: float):
    """The inverse of compand."""
    return np.sign(y) * np.abs(y) ** (1.0 / power)


ENV_FLOOR = 2.0**-16  # the envelope's floor (band RMS): digital silence sits here


def band_rms(coefs: np.ndarray, bands: int) -> np.ndarray:
    """(hop, T) -> (bands, T): the RMS of each of `bands` equal-width frequency bands."""
    hop, t = coefs.shape
    return np.sqrt(np.mean(coefs.reshape(bands, hop // bands, t) ** 2, axis=1))


def envelope(coefs: np.ndarray, bands: int) -> np.ndarray:
    """(hop, T) MDCT coefficients -> (bands, T) log2 band RMS, floored at ENV_FLOOR."""
    return np.log2(band_rms(coefs, bands) + ENV_FLOOR)


def band_scale(env_hat: np.ndarray, norm: float, hop: int) -> np.ndarray:
    """(bands, T) decoded log2 envelope -> (hop, T): each coefficient's scale E^norm, the
    factor its quantizer step is multiplied by (norm 0: the same step everywhere)."""
    return np.repeat(2.0 ** (norm * env_hat), hop // env_hat.shape[0], axis=0)


def analysis(coefs: np.ndarray, bands: int, env_step: float, norm: float,
             power: float) -> tuple[np.ndarray, np.ndarray]:
    """(hop, T) MDCT coefficients -> what tokc-audio-v1 codes: the envelope's integer tokens
    k (bands, T) (the decoded envelope is k * env_step, log2 band RMS) and the coefficients
    normalised by the decoded envelope and companded, compand(X / E^norm, power) (hop, T)."""
    k = np.round(envelope(coefs, bands) / env_step)
    return k, compand(coefs / band_scale(k * env_step, norm, coefs.shape[0]), power)


def noise_fill(coefs: np.ndarray, zero: np.ndarray, env: np.ndarray, kappa: float | np.ndarray,
               cap: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """Noise filling: each band's energy that the decoded coefficients `coefs` (hop, T) lack
    against the envelope `env` (bands, T; log2 RMS) comes back as Gaussian noise on the
    coefficients that were coded as zero (`zero`), at `kappa` (one share, or one per band) of
    the missing RMS and at most `cap` (hop, T or broadcastable: a zero token's largest possible
    magnitude)."""
    width = coefs.shape[0] // env.shape[0]
    missing = missing_rms(coefs, zero, env)
    amp = np.minimum(np.repeat(np.reshape(kappa, (-1, 1)) * missing, width, axis=0), cap)
    return coefs + np.where(zero, amp * gen.standard_normal(coefs.shape), 0.0)


def missing_rms(coefs: np.ndarray, zero: np.ndarray, env: np.ndarray) -> np.ndarray:
    """(bands, T): per band, the RMS per zero-coded coefficient that the decoded coefficients
    `coefs` (hop, T) lack against the envelope `env` (log2 band RMS): what noise_fill fills
    and what the learned fill reads."""
    hop, t = coefs.shape
    bands = env.shape[0]
    width = hop // bands
    target = (2.0 ** env - ENV_FLOOR).clip(0) ** 2 * width
    have = (coefs**2).reshape(bands, width, t).sum(1)
    count = zero.reshape(bands, width, t).sum(1)
    return np.sqrt((target - have).clip(0) / np.maximum(count, 1))


def decode_frames(env_hat: np.ndarray, u_hat: np.ndarray, zero: np.ndarray, cap: np.ndarray,
                  kappa: float | np.ndarray, power: float, norm: float,
                  gen: np.random.Generator) -> np.ndarray:
    """tokc-audio-v1's synthesis: the decoded envelope env_hat (bands, T; log2 band RMS), the
    dequantized coefficients u_hat (hop, T) (see analysis), the coefficients coded as zero and
    a zero token's largest magnitude `cap` (both in u's domain) -> noise-filled MDCT
    coefficients (hop, T)."""
    env_hat, u_hat = env_hat.astype(np.float64), u_hat.astype(np.float64)
    scale = band_scale(env_hat, norm, u_hat.shape[0])
    coefs = expand(u_hat, power) * scale
    return noise_fill(coefs, zero, env_hat, kappa, expand(cap, power) * scale, gen)


FILL_FEATURES = 6  # fill_features' channels
FILL_LOG_RANGE = (-8.0, 3.0)  # the learned fill's log mean square, clipped (units: a zero's cap)


def fill_features(q: np.ndarray, env_hat: np.ndarray, u_hat: np.ndarray, cap: np.ndarray,
                  level: float, power: float, norm: float) -> np.ndarray:
    """What the learned fill (tokc.models.audio_fill) reads per coefficient of a segment: the
    decoded tokens q (hop, T), the decoded envelope env_hat (bands, T), the dequantized u_hat
    (hop, T) and a zero token's largest magnitude `cap` (hop, 1), in u's domain ->
    (FILL_FEATURES, hop, T): signed log tokens, the zero mask, the log of the RMS each band's
    decoded coefficients miss against the envelope (per zero, relative to the cap, as
    noise_fill computes it), the envelope, the level and the frequency."""
    hop, t = q.shape
    width = hop // env_hat.shape[0]
    zero = q == 0
    scale = band_scale(env_hat, norm, hop)
    missing = np.repeat(missing_rms(expand(u_hat, power) * scale, zero, env_hat), width, axis=0)
    cap_coef = expand(np.broadcast_to(cap, (hop, t)), power) * scale
    return np.stack([np.sign(q) * np.log1p(np.abs(q)), zero.astype(np.float64),
                     np.log(missing / cap_coef + 0.01), np.repeat(env_hat, width, axis=0) / 8,
                     np.full((hop, t), level / 5), np.broadcast_to((np.arange(hop) / hop - 0.5)[:, None], (hop, t))])


def learned_fill(feats: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """tokc.models.audio_fill.FillNet in numpy (float32, each 3×3 convolution as three matrix
    products over the frame-shifted copies of its input): feats (FILL_FEATURES, hop, T) -> the
    log mean square (hop, T) of each coefficient, in units of a zero token's cap."""
    h = np.asarray(feats, np.float32)
    layers = sum(1 for k in params if k.startswith("conv") and k.endswith(".weight"))
    for i in range(layers):
        w = np.asarray(params[f"conv{i}.weight"], np.float32)
        b = np.asarray(params[f"conv{i}.bias"], np.float32)
        d = 2**i  # tokc.models.audio_fill.DILATIONS
        c, f, t = h.shape
        # the three frame shifts stacked, (3, c, f + 2d, t), zero-padded; each frequency shift
        # is then a view whose (f, t) rows are contiguous: one matrix product per shift
        shifted = np.zeros((3, c, f + 2 * d, t), np.float32)
        shifted[0, :, d : d + f, 1:] = h[:, :, :-1]
        shifted[1, :, d : d + f] = h
        shifted[2, :, d : d + f, :-1] = h[:, :, 1:]
        shifted = shifted.reshape(3 * c, f + 2 * d, t)
        out = np.zeros((w.shape[0], f * t), np.float32)
        for a in range(3):  # weight (out, in, 3, 3) -> (out, 3·in) in the order of `shifted`
            out += w[:, :, a, :].transpose(0, 2, 1).reshape(w.shape[0], -1) \
                @ shifted[:, a * d : a * d + f].reshape(3 * c, f * t)
        h = np.maximum(out + b[:, None], 0.0).reshape(w.shape[0], f, t)
    w, b = np.asarray(params["out.weight"], np.float32), np.asarray(params["out.bias"], np.float32)
    # not a matrix-vector product: OpenBLAS splits those by thread count, and the decode must
    # not depend on it (einsum's own loop)
    out = np.einsum("i,ift->ft", w[0, :, 0, 0], h)
    return np.clip(out + b[0], *FILL_LOG_RANGE).astype(np.float64)


def decode_frames_learned(env_hat: np.ndarray, q: np.ndarray, u_hat: np.ndarray, cap: np.ndarray,
                          level: float, params: dict[str, np.ndarray], power: float, norm: float,
                          gen: np.random.Generator,
                          shape: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """decode_frames with the learned fill: each zero token gets the RMS learned_fill predicts
    with a random sign, in u's domain, before expanding; then, given the fill shape (its
    symbols and shape_groups' mask), its groups are scaled by apply_fill_shape."""
    env_hat, u_hat = env_hat.astype(np.float64), u_hat.astype(np.float64)
    feats = fill_features(q, env_hat, u_hat, cap, level, power, norm)
    rms = np.exp(0.5 * learned_fill(feats, params)) * cap
    sign = np.where(gen.random(u_hat.shape) < 0.5, -1.0, 1.0)
    u = np.where(q == 0, sign * rms, u_hat)
    scale = band_scale(env_hat, norm, u_hat.shape[0])
    coefs = expand(u, power) * scale
    if shape is None:
        return coefs
    return apply_fill_shape(coefs, q == 0, expand(np.broadcast_to(cap, q.shape), power) * scale, *shape)


# The fill shape (header `fsh` 1): side information that corrects the learned fill's level in
# each group of coefficients (5 at hop 320: 125 Hz) in the lower half of the band (below 4 kHz)
# that holds a zero token, by a factor 2**(SHAPE_STEP * s), s in {-1, 0, 1}. The fill sets each
# band's level from the envelope (500 Hz); how the uncoded energy lies within the band is what
# it cannot know, and what ViSQOL and PESQ hear (measured on training clips at 12 kbps with the
# post-filter: the true uncoded energy, smoothed over 7 coefficients, with the fill's band
# levels kept, lifts ViSQOL from 3.00 to 3.80).
SHAPE_STEP = 1.5
# the lowest decoded band envelope (log2 band RMS) whose groups get symbols: digital silence
# sits at log2(ENV_FLOOR) = -16; on training speech 0.8 % of the groups lie below -13
SHAPE_MIN_ENV = -13.0


def shape_layout(hop: int) -> tuple[int, int]:
    """(group width, coefficients covered) of the fill shape at a hop: hop // 64 wide (at
    least 1), over the lower half of the coefficients."""
    width = max(1, hop // 64)
    return width, hop // 2 // width * width


def shape_groups(zero: np.ndarray, env_hat: np.ndarray) -> np.ndarray:
    """(hop, T) zero-token mask and decoded envelope (bands, T) -> (groups, T): the groups that
    get a fill shape symbol, those holding a zero token in a band whose envelope is at least
    SHAPE_MIN_ENV (silence and near-silence get none)."""
    hop, t = zero.shape
    width, bins = shape_layout(hop)
    env = np.repeat(env_hat, hop // env_hat.shape[0], axis=0)[:bins].reshape(-1, width, t).max(1)
    return zero[:bins].reshape(-1, width, t).any(1) & (env >= SHAPE_MIN_ENV)


def fill_shape_symbols(coefs: np.ndarray, filled: np.ndarray, zero: np.ndarray,
                       groups: np.ndarray) -> np.ndarray:
    """The encoder's fill shape: the true MDCT coefficients `coefs` and the decoder's filled
    ones before shaping `filled` (hop, T), the zero-token mask and shape_groups' mask ->
    symbols (groups, T) in {-1, 0, 1}: the RMS ratio of the true to the filled zero-coded coefficients of each group,
    in steps of SHAPE_STEP (log2), rounded; 0 where a group has no symbol."""
    hop, t = zero.shape
    width, bins = shape_layout(hop)

    def group_energy(x):
        return (np.where(zero[:bins], x[:bins], 0.0) ** 2).reshape(-1, width, t).sum(1)

    ratio = 0.5 * np.log2((group_energy(coefs) + 1e-30) / (group_energy(filled) + 1e-30))
    return np.where(groups, np.clip(np.round(ratio / SHAPE_STEP), -1, 1), 0).astype(np.int64)


def apply_fill_shape(coefs: np.ndarray, zero: np.ndarray, cap_coefs: np.ndarray,
                     symbols: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The zero-coded coefficients of each fill shape group (`groups`, shape_groups' mask)
    scaled by 2**(SHAPE_STEP * s),
    their magnitude then at most a zero token's largest (`cap_coefs`, X's domain); the other
    coefficients unchanged."""
    width, bins = shape_layout(coefs.shape[0])
    factor = np.ones(coefs.shape)
    factor[:bins] = np.repeat(2.0 ** (SHAPE_STEP * symbols), width, axis=0)
    shaped = np.clip(coefs * factor, -cap_coefs, cap_coefs)
    grouped = np.zeros(coefs.shape, bool)
    grouped[:bins] = np.repeat(groups, width, axis=0)
    return np.where(zero & grouped, shaped, coefs)


# The fill signs (header `fsg` 1): the true sign of chosen zero-coded coefficients, one raw bit
# each, given to the (shaped) learned fill's magnitude. The fill's signs are random, while PESQ-WB
# listens to the waveform below 1 kHz. Chosen where a sign is worth its bit (training clips,
# equal file size, docs/AUDIO_TRAINING.md): below 1 kHz only, and not in frames far below the
# segment's loudest (there signs lowered ViSQOL for little PESQ-WB).
SIGN_RANGE = 5.25  # log2 (31.6 dB, 7 envelope grid steps)


def sign_mask(zero: np.ndarray, env_hat: np.ndarray) -> np.ndarray:
    """(hop, T) zero-token mask and decoded envelope (bands, T) -> the zero-coded coefficients
    whose true sign the fill signs carry: the lowest hop // 8 (below 1 kHz at hop 320), in bands
    whose envelope is at least SHAPE_MIN_ENV, in frames whose loudest band is within SIGN_RANGE
    of the segment's loudest. Exact on every machine: the envelope is a multiple of its grid
    step (0.75), and so are the thresholds."""
    hop, t = zero.shape
    env = np.repeat(env_hat, hop // env_hat.shape[0], axis=0)
    loudest = env_hat.max(axis=0)
    mask = zero & (env >= SHAPE_MIN_ENV) & (loudest >= loudest.max() - SIGN_RANGE)[None, :]
    mask[hop // 8 :] = False
    return mask


def apply_fill_signs(coefs: np.ndarray, mask: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """coefs with the coefficients under `mask` given the signs `negative` (one bool per masked
    coefficient, in C order), their magnitudes kept."""
    out = coefs.copy()
    out[mask] = np.where(negative, -1.0, 1.0) * np.abs(coefs[mask])
    return out


class PitchPostfilter:
    """A decoder-side long-term (pitch) post-filter, streaming: it reinforces the harmonics of
    voiced sound and lowers what lies between them (the noise fill, quantisation noise), the
    role of the pitch post-filters of CELP and CELT decoders. It needs no bits: the pitch is
    searched on the decoded signal itself.

    Frames of WINDOW samples every HOP (periodic Hann windows, which overlap-add to one). In
    each frame the lag T in [MIN_LAG, MAX_LAG] (50-500 Hz at 16 kHz) maximises the normalised
    correlation r of the frame with the signal T samples earlier; where r >= THRESHOLD the frame
    becomes (x + a/2·(x[-T] + x[+T])) / (1 + a), a = gamma·r (x[-T] alone when the signal T
    samples later correlates less than THRESHOLD), else it is kept. Input and output are mono
    float64 at one rate; `push` returns the samples that are final (a delay of about
    MAX_LAG + WINDOW samples), `flush` the rest, so the output has the input's length.
    """

    WINDOW, HOP, MIN_LAG, MAX_LAG, THRESHOLD = 320, 160, 32, 320, 0.3

    def __init__(self, gamma: float):
        self.gamma = float(gamma)
        self.buf = np.zeros(self.MAX_LAG + self.HOP)  # input from absolute sample buf_start
        self.buf_start = -(self.MAX_LAG + self.HOP)
        self.acc = np.zeros(self.WINDOW)  # output sums from absolute sample acc_start
        self.acc_start = -self.HOP
        self.frame = -self.HOP  # start of the next frame
        self.received = self.emitted = 0
        self.window = np.hanning(self.WINDOW + 1)[:-1]

    def push(self, x: np.ndarray) -> np.ndarray:
        self.buf = np.concatenate([self.buf, np.asarray(x, dtype=np.float64)])
        self.received += len(x)
        return self._run(self.received)

    def flush(self) -> np.ndarray:
        tail = self.WINDOW + self.MAX_LAG  # zeros after the end
        self.buf = np.concatenate([self.buf, np.zeros(tail)])
        return self._run(self.received + tail)

    def _filtered(self, s: int) -> np.ndarray:
        """Frame at absolute sample s, filtered (buf holds [s - MAX_LAG, s + WINDOW + MAX_LAG))."""
        w, lo = self.WINDOW, s - self.buf_start
        seg = self.buf[lo : lo + w]
        if self.gamma <= 0:
            return seg
        lags, r, ahead = pitch_frames(self.buf, [lo], silence=1e-12)
        if r[0] < self.THRESHOLD:
            return seg
        t, a = int(lags[0]), self.gamma * r[0]
        back = self.buf[lo - t : lo - t + w]
        if ahead[0]:
            return (seg + 0.5 * a * (back + self.buf[lo + t : lo + t + w])) / (1.0 + a)
        return (seg + a * back) / (1.0 + a)

    def _run(self, available: int) -> np.ndarray:
        frames = max(0, (available - self.WINDOW - self.MAX_LAG - self.frame) // self.HOP + 1)
        need = self.frame + (frames - 1) * self.HOP + self.WINDOW - self.acc_start
        if frames and need > len(self.acc):  # grown once per call, not once per frame
            self.acc = np.concatenate([self.acc, np.zeros(need - len(self.acc))])
        for _ in range(frames):
            off = self.frame - self.acc_start
            self.acc[off : off + self.WINDOW] += self.window * self._filtered(self.frame)
            self.frame += self.HOP
        # samples before the next frame are final (none yet while the first frames wait)
        end = max(self.emitted, min(self.frame, self.received))
        out = self.acc[self.emitted - self.acc_start : end - self.acc_start].copy()
        keep_from = min(end, self.frame)  # the first frame may start before sample 0
        self.acc = self.acc[keep_from - self.acc_start :]
        self.acc_start, self.emitted = keep_from, end
        keep = self.frame - self.MAX_LAG - self.buf_start
        if keep > 0:
            self.buf, self.buf_start = self.buf[keep:], self.buf_start + keep
        return out


def pitch_postfilter(x: np.ndarray, gamma: float) -> np.ndarray:
    """PitchPostfilter over a whole mono signal (the same output as pushed in blocks)."""
    pf = PitchPostfilter(gamma)
    return np.concatenate([pf.push(x), pf.flush()])


# -- the learned post-filter (tokc.models.audio_postfilter trains it; numpy runs it) --

def pitch_frames(padded: np.ndarray, starts: np.ndarray, window: int = PitchPostfilter.WINDOW,
                 min_lag: int = PitchPostfilter.MIN_LAG, max_lag: int = PitchPostfilter.MAX_LAG,
                 threshold: float = PitchPostfilter.THRESHOLD,
                 silence: float = 1e-10) -> tuple[np.ndarray, ...]:
    """Per frame of `window` samples at each index of `starts` into `padded` (which holds
    max_lag samples before the first frame and max_lag + window after the last): the lag T of
    highest normalised correlation r with the signal T samples earlier (min_lag..max_lag), r
    clipped to [0, 1], and `ahead`, 1.0 where the signal T samples later correlates at least
    `threshold`. Frames of energy under `silence`: T = min_lag, r = ahead = 0. The pitch
    search of both post-filters (PitchPostfilter per frame, LearnedPostfilter for its features)."""
    lags, r_out, ahead = (np.full(len(starts), min_lag, np.int64), np.zeros(len(starts)),
                          np.zeros(len(starts)))
    w = window
    for i, lo in enumerate(starts):
        seg = padded[lo : lo + w]
        e0 = seg @ seg
        if e0 < silence:
            continue
        span = padded[lo - max_lag : lo - min_lag + w]
        past = np.lib.stride_tricks.sliding_window_view(span, w)[::-1]  # row k: lag min_lag + k
        sq = np.concatenate([[0.0], np.cumsum(span**2)])
        r = (past @ seg) / np.sqrt(e0 * (sq[w:] - sq[:-w])[::-1] + 1e-12)
        k = int(np.argmax(r))
        t = min_lag + k
        lags[i], r_out[i] = t, min(max(float(r[k]), 0.0), 1.0)
        nxt = padded[lo + t : lo + t + w]
        ahead[i] = float((nxt @ seg) / np.sqrt(e0 * (nxt @ nxt) + 1e-12) >= threshold)
    return lags, r_out, ahead


def band_sum_matrix(bins: int, bands: int) -> np.ndarray:
    """(bins, bands): bin j belongs to band j * bands // bins."""
    m = np.zeros((bins, bands))
    m[np.arange(bins), np.arange(bins) * bands // bins] = 1.0
    return m


def band_interp_matrix(bins: int, bands: int) -> np.ndarray:
    """(bands, bins): linear interpolation of per-band values, placed at the band centres, to
    every bin (constant beyond the first and last centre); the identity when bands == bins."""
    if bands == bins:
        return np.eye(bins)
    centres = (np.arange(bands) + 0.5) * (bins - 1) / bands
    x = np.clip(np.arange(bins), centres[0], centres[-1])
    i = np.minimum(np.searchsorted(centres, x, side="right") - 1, bands - 2)
    t = (x - centres[i]) / (centres[i + 1] - centres[i])
    m = np.zeros((bands, bins))
    m[i, np.arange(bins)] += 1 - t
    m[i + 1, np.arange(bins)] += t
    return m


class LearnedPostfilter:
    """The learned pitch post-filter, streaming (numpy; `tokc.models.audio_postfilter` is its
    torch twin and trains it).

    Frames of WINDOW samples every HOP (periodic Hann, overlap-adding to one); frame f starts at
    sample f·HOP − HOP. Per frame: the pitch lag T, its correlation r and the `ahead` flag
    (pitch_frames, on the decoded signal), and log band energies of the windowed frame. A small
    1-D convolutional network over the frames (three layers; shipped: 5, 5 and 1 taps, so it
    sees 4 frames each side) gives a comb weight a = sigmoid(o0 − 1)·r and band gains
    exp(clip(o, ±2)) (16 bands, or one per bin when the network has WINDOW // 2 + 1 = 161); the
    frame becomes (x + a·x[∓T]) / (1 + a) (two-sided where `ahead`), then its spectrum is scaled
    by the gains (interpolated over the bins) and overlap-added. `params`: the network's weights
    (conv{0,1,2}.weight (out, in, k), .bias). `level`: the file's rate level, an input.
    Output has the input's length: `push` returns what is final, `flush` the rest.
    """

    WINDOW, HOP = PitchPostfilter.WINDOW, PitchPostfilter.HOP
    MIN_LAG, MAX_LAG = PitchPostfilter.MIN_LAG, PitchPostfilter.MAX_LAG

    def __init__(self, params: dict[str, np.ndarray], level: float):
        self.convs = [(np.asarray(params[f"conv{i}.weight"], np.float64),
                       np.asarray(params[f"conv{i}.bias"], np.float64)) for i in range(3)]
        self.bands = self.convs[2][0].shape[0] - 1
        self.context = sum(w.shape[2] // 2 for w, _ in self.convs)  # frames each side it reads
        bins = self.WINDOW // 2 + 1
        self.bsum = band_sum_matrix(bins, self.bands)
        self.interp = band_interp_matrix(bins, self.bands)
        self.level = float(level)
        self.window = np.hanning(self.WINDOW + 1)[:-1]
        pad = self.MAX_LAG + self.HOP
        self.buf = np.zeros(pad)  # input from absolute sample buf_start (zeros before 0)
        self.buf_start = -pad
        self.acc = np.zeros(0)  # overlap-add sums from absolute sample acc_start
        self.acc_start = -self.HOP
        self.next_frame = 0  # the first frame not yet overlap-added
        self.received = self.emitted = 0

    def push(self, x: np.ndarray) -> np.ndarray:
        self.buf = np.concatenate([self.buf, np.asarray(x, dtype=np.float64)])
        self.received += len(x)
        # frame g's features need samples up to g·HOP − HOP + WINDOW + MAX_LAG
        ready = (self.received + self.HOP - self.WINDOW - self.MAX_LAG) // self.HOP
        return self._run(ready - self.context, ready, end=None)

    def flush(self) -> np.ndarray:
        last = (self.received + self.HOP) // self.HOP  # the last frame touching the signal
        self.buf = np.concatenate([self.buf, np.zeros(self.WINDOW + self.MAX_LAG + 2 * self.HOP)])
        return self._run(last, last, end=self.received)

    def _network(self, feats: np.ndarray) -> np.ndarray:
        """feats (frames, channels) -> (frames, 1 + bands), zero-padded at both ends."""
        h = feats.T
        for i, (w, b) in enumerate(self.convs):
            k = w.shape[2]
            hp = np.pad(h, ((0, 0), (k // 2, k // 2)))
            cols = np.lib.stride_tricks.sliding_window_view(hp, k, axis=1)  # (in, frames, k)
            h = np.einsum("oik,ifk->of", w, cols) + b[:, None]
            if i < 2:
                h = np.maximum(h, 0.0)
        return h.T

    def _run(self, upto: int, feature_end: int, end: int | None) -> np.ndarray:
        """Overlap-add frames next_frame..upto (the network reads frames up to feature_end) and
        return the samples now final (all up to `end` when flushing)."""
        a, b = self.next_frame, upto
        if b >= a:
            f0 = max(0, a - self.context)
            frames = np.arange(f0, feature_end + 1)
            starts = frames * self.HOP - self.HOP - self.buf_start
            w = self.WINDOW
            lags, r, ahead = pitch_frames(self.buf, starts)
            idx = starts[:, None] + np.arange(w)
            seg = self.buf[idx]
            energy = (np.abs(np.fft.rfft(seg * self.window, axis=1)) ** 2) @ self.bsum
            feats = np.concatenate([np.log(energy + 1e-7) / 5, r[:, None], ahead[:, None],
                                    lags[:, None] / self.MAX_LAG,
                                    np.full((len(frames), 1), self.level / 5)], 1)
            out = self._network(feats)
            keep = slice(a - f0, b - f0 + 1)
            seg, lags, r, ahead, out, idx = seg[keep], lags[keep], r[keep], ahead[keep], out[keep], idx[keep]
            back = self.buf[idx - lags[:, None]]
            fwd = self.buf[idx + lags[:, None]]
            comb = np.where(ahead[:, None] > 0, 0.5 * (back + fwd), back)
            alpha = (r / (1.0 + np.exp(1.0 - out[:, 0])))[:, None]
            gains = np.exp(np.clip(out[:, 1:], -2.0, 2.0)) @ self.interp
            spec = np.fft.rfft((seg + alpha * comb) / (1.0 + alpha) * self.window, axis=1) * gains
            filtered = np.fft.irfft(spec, n=w, axis=1)
            need = b * self.HOP - self.HOP + w - self.acc_start
            if need > len(self.acc):
                self.acc = np.concatenate([self.acc, np.zeros(need - len(self.acc))])
            for j, f in enumerate(range(a, b + 1)):
                off = f * self.HOP - self.HOP - self.acc_start
                self.acc[off : off + w] += filtered[j]
            self.next_frame = b + 1
        # a sample is final once both frames covering it are added
        final = self.next_frame * self.HOP - self.HOP if end is None else end
        final = max(self.emitted, min(final, self.received))
        out_samples = self.acc[self.emitted - self.acc_start : final - self.acc_start].copy()
        keep_from = min(final, self.next_frame * self.HOP - self.HOP)  # frame 0 starts before 0
        self.acc = self.acc[keep_from - self.acc_start :]
        self.acc_start, self.emitted = keep_from, final
        keep = (self.next_frame - self.context) * self.HOP - self.HOP - self.MAX_LAG - self.buf_start
        if keep > 0:
            self.buf, self.buf_start = self.buf[keep:], self.buf_start + keep
        return out_samples


def learned_postfilter(x: np.ndarray, params: dict[str, np.ndarray], level: float) -> np.ndarray:
    """LearnedPostfilter over a whole mono signal (the same output as pushed in blocks)."""
    pf = LearnedPostfilter(params, level)
    return np.concatenate([pf.push(x), pf.flush()])
