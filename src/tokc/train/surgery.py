"""Surgery on a trained tokc-image-v1 model, used only by training (tokc.train.image and the
packer): KLT initialisation, growing the latent channels, adding a channel-wise or a
checkerboard context (their last convs at zero, so the codec starts where it was), recalibrating
the predicted scales, and reading checkpoints of older layouts. The model itself is
:mod:`tokc.models.hyperprior`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tokc.models.hyperprior import HyperpriorConfig, ImageHyperprior, gaussian_likelihood


def _klt(images: list[torch.Tensor], k: int, patches: int, stride: int = 1):
    """Mean and principal components (rows, by decreasing variance) of k x k RGB patches."""
    gen = torch.Generator().manual_seed(0)
    per = max(1, patches // len(images))
    rows = []
    for img in images:
        u = F.unfold(img[None].float() / 255, k, stride=stride)[0]  # (3*k*k, L)
        idx = torch.randint(u.shape[1], (per,), generator=gen)
        rows.append(u[:, idx].T)
    data = torch.cat(rows).double()
    mu = data.mean(0)
    evals, evecs = torch.linalg.eigh(torch.cov((data - mu).T))
    return mu.float(), evecs[:, evals.argsort(descending=True)].T.float()


def upgrade_state_dict(state: dict) -> dict:
    """Checkpoints from before Analysis/Synthesis held g_a/g_s as bare Sequentials."""
    out = {}
    for k, v in state.items():
        head, _, rest = k.partition(".")
        if head in ("g_a", "g_s") and rest.split(".")[0].isdigit():
            k = f"{head}.layers.{rest}"
        out[k] = v
    return out


@torch.no_grad()
def klt_init(model: ImageHyperprior, images: list[torch.Tensor], patches: int = 200_000) -> None:
    """Initialise the outermost analysis/synthesis convs from a KLT (PCA) of 5x5 RGB patches:
    the analysis filters become the leading principal components, the synthesis filters their
    transposes scaled for the 2x-strided overlap of 5x5 kernels. With the shortcut, its block
    transform gets the KLT of 16x16 blocks (an orthonormal basis: the synthesis block is its
    exact transpose) and the nonlinear paths' last convs start at zero."""
    mu, basis = _klt(images, 5, patches)
    first, last = model.g_a.layers[0], model.g_s.layers[-1]
    n = first.out_channels
    b = basis[:n]
    first.weight.copy_(b.view(n, 3, 5, 5))
    first.bias.copy_(-(b @ mu))
    last.weight.copy_(b.view(n, 3, 5, 5) * (4 / 25))
    last.bias.copy_(mu.view(3, 25).mean(1))
    if model.config.shortcut:
        m = model.config.m
        mu, basis = _klt(images, 16, patches // 4, stride=8)
        b = basis[:m]
        model.g_a.block.weight.copy_(b.view(m, 3, 16, 16))
        model.g_a.block.bias.copy_(-(b @ mu))
        model.g_s.block.weight.copy_(b.view(m, 3, 16, 16))
        model.g_s.block.bias.copy_(mu.view(3, 256).mean(1))
        for layer in (model.g_a.layers[-1], model.g_s.layers[-1]):
            layer.weight.zero_()
            layer.bias.zero_()


@torch.no_grad()
def widen_latents(model: ImageHyperprior, m: int, images: list[torch.Tensor],
                  patches: int = 50_000) -> ImageHyperprior:
    """A copy of a trained shortcut model with m latent channels instead of config.m.

    The old channels keep their weights; each new channel starts as one more block-KLT
    coefficient (the next principal component of 16x16 blocks, orthogonalised against the
    trained block filters) coded through the shortcut alone: zero weights in the nonlinear
    paths, a zero mean, a constant scale of the coefficient's spread, and the mean of the old
    channels' gains per level. A model saturating at the rank of its latents (a 96-coefficient
    block transform bounds PSNR at about 27.6 dB on the training images, 192 at 32.5 dB)
    then goes on training from where it was. With a channel-wise context, the new channels
    form new slices after the old ones, whose context networks are kept."""
    old, cfg = model.config.m, model.config
    if not cfg.shortcut or m <= old:
        raise ValueError("widen_latents needs a shortcut model and m > config.m")
    if model.spatial is not None:
        raise ValueError("widen_latents does not handle a spatial context (widen first)")
    if model.ctx is not None:  # widen the rest, then give the new channels slices of their own
        cs = old // cfg.ctx_slices
        if m % cs:
            raise ValueError(f"m must be a multiple of the context's slice width {cs}")
        plain = ImageHyperprior(HyperpriorConfig(**{**cfg.to_dict(), "ctx_slices": 0}))
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("ctx.")})
        wide = add_context(widen_latents(plain, m, images, patches), m // cs, cfg.ctx_width)
        for net, trained in zip(wide.ctx, model.ctx):  # the old slices read the same channels
            net.load_state_dict(trained.state_dict())
        return wide
    new = ImageHyperprior(HyperpriorConfig(**{**cfg.to_dict(), "m": m}))
    src = model.state_dict()
    dst = new.state_dict()
    k = m - old
    for t in dst.values():  # zero first, then copy the old slices in place
        t.zero_()
    for name, w in src.items():
        d = dst[name]
        if name == "h_s.2.0.weight" or name == "h_s.2.0.bias":  # SubpixelUp(n, m): 4m outputs
            d[: w.shape[0]] = w
        elif name.startswith("h_s.4."):  # final conv: m means then m log-scales, m inputs
            if w.dim() == 4:
                d[:old, :old] = w[:old]
                d[m : m + old, :old] = w[old:]
            else:
                d[:old] = w[:old]
                d[m : m + old] = w[old:]
        elif name in ("log_gain", "log_igain"):
            d[:, :old] = w
            d[:, old:] = w.mean(1, keepdim=True)
        else:
            d[tuple(slice(0, s) for s in w.shape)] = w
    # the new block-KLT rows, orthogonal to the trained analysis rows
    mu, basis = _klt(images, 16, patches, stride=8)
    trained = src["g_a.block.weight"].reshape(old, -1).double()
    q, _ = torch.linalg.qr(trained.T)  # orthonormal basis of the trained rows' span
    cand = basis.double()
    cand = cand - (cand @ q) @ q.T
    norms = cand.norm(dim=1)
    picked = []
    for i in norms.argsort(descending=True).tolist()[: 4 * k]:
        v = cand[i]
        for p in picked:
            v = v - (v @ p) * p
        if v.norm() > 0.5 * norms[i]:
            picked.append(v / v.norm())
        if len(picked) == k:
            break
    b = torch.stack(picked).float()
    dst["g_a.block.weight"][old:] = b.view(k, 3, 16, 16)
    dst["g_a.block.bias"][old:] = -(b @ mu)
    dst["g_s.block.weight"][old:] = b.view(k, 3, 16, 16)
    # spread of each new coefficient on the patches -> its initial log-scale
    spread = _patch_std(images, b, mu)
    dst["h_s.4.bias"][m + old :] = spread.clamp_min(1e-3).log()
    new.load_state_dict(dst)
    return new


def _patch_std(images: list[torch.Tensor], rows: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    coefs = []
    for img in images[:200]:
        u = F.unfold(img[None].float() / 255, 16, stride=16)[0]
        idx = torch.randint(u.shape[1], (min(64, u.shape[1]),), generator=gen)
        coefs.append(rows @ (u[:, idx] - mu[:, None]))
    return torch.cat(coefs, 1).std(1)


@torch.no_grad()
def recalibrate_scales(model: ImageHyperprior, crops: list[torch.Tensor], levels: int = 6) -> dict:
    """Shift each latent channel's predicted log-scale (h_s's bias) by the step, on a grid from
    -1 to +8, that minimises the real bits of the rounded tokens over `crops` at `levels` levels
    from first to last. Repairs channels whose scale sank under scale_min while that bound had
    no gradient (see lower_bound). Returns {"shift": per channel, "bits_change": relative}."""
    m = model.config.m
    deltas = torch.arange(-1.0, 8.01, 0.25)
    bits = torch.zeros(len(deltas), m, dtype=torch.float64)
    for x in crops:
        y = model.g_a(x)
        mean, log_scale = model.entropy_params(torch.round(model.h_a(y)))
        for lv in torch.linspace(0, model.config.levels - 1, levels):
            c = model.code_latents(y, mean, log_scale, lv[None])
            q = torch.round(c["residual"])
            for i, d in enumerate(deltas):
                scale = (c["log_scale"] + d).exp().clamp_min(model.config.scale_min)
                bits[i] += -torch.log2(gaussian_likelihood(q, scale)).sum((0, 2, 3)).double()
    best = bits.argmin(0)
    shift = deltas[best]
    model.h_s[4].bias[m:] += shift
    zero = int((deltas == 0).nonzero())
    change = (bits[best, torch.arange(m)].sum() / bits[zero].sum()).item() - 1
    return {"shift": shift, "bits_change": change}


def add_spatial_context(model: ImageHyperprior) -> ImageHyperprior:
    """A copy of a trained model with a checkerboard context inside each slice (one network
    per slice, of the channel context's width). Its last convs are zero, so the copy codes
    exactly as the original until trained."""
    if model.spatial is not None:
        raise ValueError("the model already has a spatial context")
    new = ImageHyperprior(HyperpriorConfig(**{**model.config.to_dict(), "ctx_spatial": True}))
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("spatial.") for k in missing):
        raise ValueError(f"state mismatch: missing {missing}, unexpected {unexpected}")
    return new


def add_context(model: ImageHyperprior, slices: int, width: int = 64) -> ImageHyperprior:
    """A copy of a trained model with a channel-wise context of `slices` slices. The context
    networks' last convs are zero, so the copy codes exactly as the original until trained."""
    if model.ctx is not None:
        raise ValueError("the model already has a context model")
    new = ImageHyperprior(
        HyperpriorConfig(**{**model.config.to_dict(), "ctx_slices": slices, "ctx_width": width})
    )
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("ctx.") for k in missing):
        raise ValueError(f"state mismatch: missing {missing}, unexpected {unexpected}")
    return new
