"""Med-PerSAM's warping model: a small flow U-Net fit per reference (methods.md §1.1-1.2).

The paper names a "lightweight" optical-flow warping network and two losses, ``L_warp`` and ``L_aug``; their
architecture and formulas are unread, so everything below is **our choice** (VoxelMorph-style):

* :class:`FlowUNet` -- ``concat(grey ref, grey target)`` (B, 2, 128, 128) -> displacement (B, 2, 128, 128) in
  pixels, initialised to (almost) the identity.
* :func:`warp` -- backward warping: ``warped(p) = x(p + flow(p))``. The flow lives in the **target** frame and
  points, for each target pixel, to where its content sits in the reference; so ``warp(M_r, flow)`` is the
  reference mask moved onto the target (``M_r o phi``).
* Losses: ``L_warp = lncc_loss + lambda_s * smoothness_loss`` on real (reference, unlabeled target) pairs;
  ``L_aug = soft_dice_loss(M_r o phi, M_r o A) + L_warp`` on synthetic pairs made by
  :func:`random_affine_elastic`; ``L_ref = soft_dice_loss(M_r o phi_t, M_t)`` on retraining pairs whose mask was
  refined by SAM (§1.3 step 8).
* :func:`fit_warping` -- Adam, 300 iterations, batch 4, half real / half synthetic; seeded, no global RNG.
* :func:`refine_flow` -- per-pair instance optimisation of the network's flow (our addition, see there).

Example:
    >>> model = fit_warping(ref_128, ref_masks_128, targets=[t1_128, t2_128], seed=0)
    >>> flow = predict_flow(model, ref_128, t1_128)               # (1, 2, 128, 128) pixels
    >>> mask_256 = warp(ref_mask_256[None, None], upsample_flow(flow, 256))
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError

__all__ = ["FlowUNet", "warp", "upsample_flow", "lncc_loss", "smoothness_loss", "soft_dice_loss",
           "random_affine_elastic", "fit_warping", "predict_flow", "refine_flow"]

ArrayLike = np.ndarray | torch.Tensor


# -- the network -------------------------------------------------------------------------------------------------
def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3x3 conv built without PyTorch's default init, which would draw from the global RNG."""
    return nn.utils.skip_init(nn.Conv2d, cin, cout, 3, stride=stride, padding=1)


class FlowUNet(nn.Module):
    """2-D VoxelMorph-style U-Net predicting a dense displacement field.

    Encoder: four stride-2 3x3 convs (16-32-32-32 channels) + LeakyReLU(0.2); symmetric decoder: four nearest x2
    upsamplings, each followed by concatenation with the encoder skip of that scale and a 3x3 conv + LeakyReLU,
    with the encoder's width at each scale (32 at 1/8, 32 at 1/4, 16 at 1/2, 16 at full resolution); a final
    3x3 conv to 2 channels. The final conv's weights are drawn from N(0, 1e-5) with zero bias, so the initial
    flow is ~0 (identity warp). ~70 k parameters. VoxelMorph keeps 32 channels up to 1/2 resolution and adds two
    full-resolution convs; the two finest levels dominate the CPU cost, and these widths cut a training step by
    ~40 % (the 30 s fitting budget) at no loss on our shift-recovery test.

    Args:
        enc_channels: encoder widths (each halves the resolution).
        dec_channels: decoder widths, one per encoder level (coarse to fine).
        generator: torch.Generator for the weight initialisation (None: the global RNG).

    Input (B, 2, H, W) = concat(grey reference, grey target), H and W divisible by 2**len(enc_channels);
    output (B, 2, H, W) displacement in pixels, channel 0 = dx (along W), channel 1 = dy (along H).
    """

    def __init__(self, enc_channels: Sequence[int] = (16, 32, 32, 32), dec_channels: Sequence[int] = (32, 32, 16, 16),
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if len(dec_channels) != len(enc_channels):
            raise InputError(f"need one decoder width per encoder level: {len(enc_channels)} encoder widths, "
                             f"{len(dec_channels)} decoder widths")
        self.levels = len(enc_channels)
        skips = [2, *enc_channels[:-1]]  # channels of the skip tensors, finest first
        self.encoder = nn.ModuleList()
        cin = 2
        for c in enc_channels:
            self.encoder.append(_conv(cin, c, stride=2))
            cin = c
        self.decoder = nn.ModuleList()
        for c, skip in zip(dec_channels, reversed(skips)):
            self.decoder.append(_conv(cin + skip, c))
            cin = c
        self.flow = _conv(cin, 2)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's default conv init (drawn from ``generator``), then the near-zero flow head."""
        for conv in [*self.encoder, *self.decoder]:
            nn.init.kaiming_uniform_(conv.weight, a=math.sqrt(5), generator=generator)
            bound = 1.0 / math.sqrt(conv.weight[0].numel())
            nn.init.uniform_(conv.bias, -bound, bound, generator=generator)
        nn.init.normal_(self.flow.weight, 0.0, 1e-5, generator=generator)
        nn.init.zeros_(self.flow.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2, H, W) -> (B, 2, H, W) displacement in pixels."""
        div = 2 ** self.levels
        if x.ndim != 4 or x.shape[1] != 2 or x.shape[2] % div or x.shape[3] % div:
            raise InputError(f"FlowUNet expects (B, 2, H, W) with H, W divisible by {div}, got {tuple(x.shape)}")
        skips = [x]
        h = x
        for conv in self.encoder:
            h = F.leaky_relu(conv(h), 0.2)  # (B, c, H / 2^i, W / 2^i)
            skips.append(h)
        skips.pop()  # the bottleneck is h itself
        for conv in self.decoder:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = F.leaky_relu(conv(torch.cat([h, skips.pop()], dim=1)), 0.2)
        return self.flow(h)  # (B, 2, H, W)


# -- warping -----------------------------------------------------------------------------------------------------
def _sample(x: torch.Tensor, coords_x: torch.Tensor, coords_y: torch.Tensor, padding: str) -> torch.Tensor:
    """grid_sample at absolute pixel coordinates (B, H, W) (align_corners=True: pixel i sits at index i)."""
    h, w = x.shape[-2:]
    grid = torch.stack([coords_x * (2.0 / max(w - 1, 1)) - 1.0, coords_y * (2.0 / max(h - 1, 1)) - 1.0], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=True)


def warp(image_or_mask: torch.Tensor, flow: torch.Tensor, padding: str = "border") -> torch.Tensor:
    """Backward-warp ``image_or_mask`` with a displacement field: ``out(p) = x(p + flow(p))`` (bilinear).

    Soft masks stay soft (values in [0, 1]). A constant flow ``(dx, dy)`` moves the content by ``(-dx, -dy)``.

    Args:
        image_or_mask: (B, C, H, W) float.
        flow: (B, 2, H, W) displacement in pixels (dx, dy); B may be 1 to share one field across a batch.
        padding: ``grid_sample`` padding mode ("border" by default, "zeros" for masks that must not smear).

    Returns:
        (B, C, H, W) warped tensor.
    """
    if image_or_mask.ndim != 4 or flow.ndim != 4 or flow.shape[1] != 2:
        raise InputError(f"warp expects x (B, C, H, W) and flow (B, 2, H, W), got {tuple(image_or_mask.shape)} "
                         f"and {tuple(flow.shape)}")
    if flow.shape[-2:] != image_or_mask.shape[-2:]:
        raise InputError(f"flow is {tuple(flow.shape[-2:])} but the image is {tuple(image_or_mask.shape[-2:])}; "
                         "resize the flow with upsample_flow first")
    if image_or_mask.shape[0] != flow.shape[0] and 1 not in (image_or_mask.shape[0], flow.shape[0]):
        raise InputError(f"batch sizes differ: {image_or_mask.shape[0]} images, {flow.shape[0]} flows "
                         "(equal, or one of them 1)")
    b = max(image_or_mask.shape[0], flow.shape[0])
    h, w = flow.shape[-2:]
    ys = torch.arange(h, dtype=flow.dtype, device=flow.device).view(1, h, 1)
    xs = torch.arange(w, dtype=flow.dtype, device=flow.device).view(1, 1, w)
    x = image_or_mask.float().expand(b, -1, -1, -1)
    flow = flow.expand(b, -1, -1, -1)
    return _sample(x, xs + flow[:, 0], ys + flow[:, 1], padding)


def upsample_flow(flow: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize a (B, 2, h, w) pixel flow to ``size`` (bilinear), scaling dx by W/w and dy by H/h."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    h, w = flow.shape[-2:]
    up = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / w, size[0] / h], dtype=up.dtype, device=up.device).view(1, 2, 1, 1)
    return up * scale


# -- losses ------------------------------------------------------------------------------------------------------
def _box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over ``window`` x ``window`` neighbourhoods of (B, C, H, W), windows clipped at the border.

    Separable running sums (cumsum): several times faster on CPU than ``avg_pool2d``, forward and backward.
    """
    r = window // 2
    out = x
    for dim in (-1, -2):
        n = out.shape[dim]
        pad = (r + 1, r, 0, 0) if dim == -1 else (0, 0, r + 1, r)
        csum = F.pad(out, pad).cumsum(dim)
        out = csum.narrow(dim, 2 * r + 1, n) - csum.narrow(dim, 0, n)  # sum over [i - r, i + r]
    h, w = x.shape[-2:]
    count = [(torch.arange(n, device=x.device) + r).clamp(max=n - 1) - (torch.arange(n, device=x.device) - r)
             .clamp(min=0) + 1 for n in (h, w)]
    return out / (count[0].view(h, 1) * count[1].view(1, w)).to(out.dtype)


def lncc_loss(a: torch.Tensor, b: torch.Tensor, window: int = 9, eps: float = 1e-5) -> torch.Tensor:
    """Negative mean local (squared) normalised cross-correlation over ``window`` x ``window`` patches.

    VoxelMorph's NCC: ``cc = cov(a, b)^2 / (var(a) var(b) + eps / window^2)`` per pixel, -1 a perfect local match.
    ``eps`` is VoxelMorph's 1e-5 on window *sums*; on the local means used here it becomes ``1e-5 / 81^2``
    (1.5e-9), below the variance product of nearly every 9x9 patch of a [0, 1] radiograph at 128 px (median
    local variance ~9e-4), so flat patches still count (an identical pair scores ~ -0.9, not -1).

    Args:
        a, b: (B, C, H, W) images (C = 1 here).
        window: side of the square window (odd).
        eps: stabiliser, in VoxelMorph's window-sum units.

    Returns:
        scalar in [-1, 0].
    """
    if a.shape != b.shape:
        raise InputError(f"lncc_loss needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")

    c = a.shape[1]
    stats = _box_mean(torch.cat([a, b, a * b, a * a, b * b], dim=1), window)  # (B, 5C, H, W) local means
    mu_a, mu_b, mu_ab, mu_aa, mu_bb = stats.split(c, dim=1)
    cov = mu_ab - mu_a * mu_b
    var_a = (mu_aa - mu_a ** 2).clamp_min(0)
    var_b = (mu_bb - mu_b ** 2).clamp_min(0)
    return -(cov ** 2 / (var_a * var_b + eps / window ** 4)).mean()


def smoothness_loss(flow: torch.Tensor) -> torch.Tensor:
    """Diffusion regulariser on a (B, 2, H, W) flow: ``(mean(dx^2) + mean(dy^2)) / 2`` of its forward differences.

    This is VoxelMorph's ``Grad('l2')`` normalisation (means over batch, channels and pixels), i.e.
    ``mean ||grad phi||^2 / 4``. Zero for any constant flow.
    """
    dx = flow[..., :, 1:] - flow[..., :, :-1]
    dy = flow[..., 1:, :] - flow[..., :-1, :]
    return (dx.pow(2).mean() + dy.pow(2).mean()) / 2


def soft_dice_loss(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``1 - softDice`` averaged over the leading dims: (..., H, W) soft masks in [0, 1] -> scalar in [0, 1]."""
    if a.shape != b.shape:
        raise InputError(f"soft_dice_loss needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    inter = (a * b).sum(dim=(-2, -1))
    total = a.sum(dim=(-2, -1)) + b.sum(dim=(-2, -1))
    return (1.0 - (2.0 * inter + eps) / (total + eps)).mean()


# -- synthetic pairs ---------------------------------------------------------------------------------------------
def random_affine_elastic(image: torch.Tensor, masks: torch.Tensor,
                          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic target from the reference: ``(intensity(I o A), M o A)`` with a known spatial map ``A``.

    Spatial (our choice, §1.2): rotation U(-15, 15) deg, scale U(0.85, 1.15), translation U(-10 %, 10 %) of the
    side, all about the image centre, plus a smooth elastic field: N(0, sigma^2) displacements on a 5x5 control
    grid (sigma = 4 px at 128 px, scaled with the side), bicubically upsampled. Intensity: gamma U(0.7, 1.5),
    contrast U(0.8, 1.2) about the mean, Gaussian noise sigma 0.02, clamp to [0, 1]. The image is sampled with
    border padding, the masks (soft, bilinear) with zero padding.

    Args:
        image: (H, W) float in [0, 1].
        masks: (K, H, W) float in [0, 1].
        generator: torch.Generator, the only source of randomness.

    Returns:
        (H, W) image and (K, H, W) masks.
    """
    if image.ndim != 2 or masks.ndim != 3 or masks.shape[-2:] != image.shape:
        raise InputError(f"expected image (H, W) and masks (K, H, W), got {tuple(image.shape)} and "
                         f"{tuple(masks.shape)}")
    h, w = image.shape
    r = torch.rand(8, generator=generator, dtype=torch.float64).tolist()
    angle = math.radians(-15 + 30 * r[0])
    scale = 0.85 + 0.30 * r[1]
    tx, ty = (-0.1 + 0.2 * r[2]) * w, (-0.1 + 0.2 * r[3]) * h
    gamma, contrast = 0.7 + 0.8 * r[4], 0.8 + 0.4 * r[5]

    cx, cy = (w - 1) / 2, (h - 1) / 2
    ys = torch.arange(h, dtype=torch.float32).view(h, 1) - cy
    xs = torch.arange(w, dtype=torch.float32).view(1, w) - cx
    cos, sin = math.cos(angle), math.sin(angle)
    src_x = scale * (cos * xs - sin * ys) + cx + tx  # (H, W) where each output pixel reads from
    src_y = scale * (sin * xs + cos * ys) + cy + ty
    control = torch.randn(1, 2, 5, 5, generator=generator) * (4.0 * h / 128)  # (1, 2, 5, 5) px
    field = F.interpolate(control, size=(h, w), mode="bicubic", align_corners=True)[0]  # (2, H, W)
    src_x, src_y = (src_x + field[0])[None], (src_y + field[1])[None]  # (1, H, W)

    out = _sample(image.float()[None, None], src_x, src_y, "border")[0, 0]  # (H, W)
    out_masks = _sample(masks.float()[None], src_x, src_y, "zeros")[0]  # (K, H, W)
    out = out.clamp(0, 1) ** gamma
    out = (out - out.mean()) * contrast + out.mean()
    out = out + 0.02 * torch.randn(out.shape, generator=generator)
    return out.clamp(0, 1), out_masks.clamp(0, 1)


# -- fitting -----------------------------------------------------------------------------------------------------
def _as_image(x: ArrayLike, name: str, hw: tuple[int, int] | None = None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x).float().clone()
    t = t.reshape(t.shape[-2:]) if t.ndim > 2 and all(d == 1 for d in t.shape[:-2]) else t
    if t.ndim != 2:
        raise InputError(f"{name} must be a 2-D grey image (H, W), got shape {tuple(t.shape)}")
    if hw is not None and tuple(t.shape) != tuple(hw):
        raise InputError(f"{name} is {tuple(t.shape)} but the reference is {tuple(hw)}; resize it to match")
    if not torch.isfinite(t).all():
        raise InputError(f"{name} contains NaN or infinity")
    return t


def _as_masks(x: ArrayLike, name: str, hw: tuple[int, int], k: int | None = None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x).float().clone()
    t = t[None] if t.ndim == 2 else t
    if t.ndim != 3 or tuple(t.shape[-2:]) != tuple(hw) or (k is not None and t.shape[0] != k):
        want = f"({k if k is not None else 'K'}, {hw[0]}, {hw[1]})"
        raise InputError(f"{name} must be {want} masks (or (H, W) for one structure), got {tuple(t.shape)}")
    return t


def fit_warping(
    reference: ArrayLike,
    reference_masks: ArrayLike,
    targets: Sequence[ArrayLike] = (),
    iterations: int = 300,
    batch: int = 4,
    lr: float = 1e-3,
    seed: int = 0,
    extra_pairs: Sequence[tuple[ArrayLike, ArrayLike]] | None = None,
    smoothness_weight: float = 1.0,
    init: FlowUNet | None = None,
) -> FlowUNet:
    """Fit a :class:`FlowUNet` for one reference (methods.md §1.2; §1.3 step 8 with ``extra_pairs``).

    Each Adam step sees ``batch`` pairs: ``batch // 2`` real pairs drawn (with replacement) from the pool
    ``targets + extra_pairs`` and the rest synthetic pairs from :func:`random_affine_elastic`; with an empty pool,
    synthetic pairs only. Loss = mean over the batch of ``L_warp = lncc_loss + smoothness_weight *
    smoothness_loss`` + mean soft-Dice loss of the warped reference masks on the synthetic pairs (``L_aug``)
    + mean soft-Dice loss on the drawn ``extra_pairs`` against their refined masks (``L_ref``).

    Args:
        reference: (H, W) grey reference in [0, 1] (128 x 128 in Med-PerSAM), H, W divisible by 16.
        reference_masks: (K, H, W) (or (H, W)) reference structure masks, bool or soft.
        targets: unlabeled (H, W) grey images of the pool (transductive real pairs); may be empty.
        iterations: Adam steps (300 for the first fit, 100 for the retraining).
        batch: pairs per step (>= 2 when there is a pool).
        lr: Adam learning rate.
        seed: seeds the one torch.Generator used for initialisation and sampling (global RNG untouched).
        extra_pairs: (target (H, W), refined masks (K, H, W)) pairs for the retraining step; they are also
            real pairs for ``L_warp``.
        smoothness_weight: lambda_s.
        init: continue from this model (a copy is trained; it is not modified) instead of a fresh one.

    Returns:
        The trained model, in eval mode.

    Raises:
        InputError: shapes disagree, non-finite images, or bad hyper-parameters.
    """
    if iterations < 0 or batch < 1 or not lr > 0:
        raise InputError(f"need iterations >= 0, batch >= 1 and lr > 0, got {iterations}, {batch}, {lr}")
    with torch.inference_mode(False), torch.enable_grad():
        ref = _as_image(reference, "reference")
        hw = tuple(ref.shape)
        ref_masks = _as_masks(reference_masks, "reference_masks", hw)  # (K, H, W)
        k = ref_masks.shape[0]
        pool_images = [_as_image(t, f"targets[{i}]", hw) for i, t in enumerate(targets)]
        pool_masks: list[torch.Tensor | None] = [None] * len(pool_images)
        for i, (image, masks) in enumerate(extra_pairs or ()):
            pool_images.append(_as_image(image, f"extra_pairs[{i}] image", hw))
            pool_masks.append(_as_masks(masks, f"extra_pairs[{i}] masks", hw, k))
        if pool_images and batch < 2:
            raise InputError("batch must be >= 2 with real pairs (half real, half synthetic)")
        n_real = batch // 2 if pool_images else 0

        generator = torch.Generator().manual_seed(int(seed))
        model = copy.deepcopy(init) if init is not None else FlowUNet(generator=generator)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        moving = ref[None, None].expand(batch, 1, *hw)  # (B, 1, H, W)
        for _ in range(iterations):
            fixed, labelled, truth = [], [], []
            for j in torch.randint(len(pool_images), (n_real,), generator=generator).tolist() if n_real else []:
                fixed.append(pool_images[j])
                if pool_masks[j] is not None:
                    labelled.append(len(fixed) - 1)
                    truth.append(pool_masks[j])
            n_ref = len(labelled)  # rows carrying L_ref; the synthetic rows carry the L_aug Dice
            for _ in range(batch - n_real):
                image, masks = random_affine_elastic(ref, ref_masks, generator)
                labelled.append(len(fixed))
                fixed.append(image)
                truth.append(masks)
            fixed_t = torch.stack(fixed)[:, None]  # (B, 1, H, W)
            flow = model(torch.cat([moving, fixed_t], dim=1))  # (B, 2, H, W)
            loss = lncc_loss(warp(moving, flow), fixed_t) + smoothness_weight * smoothness_loss(flow)
            warped_masks = warp(ref_masks[None].expand(len(labelled), -1, -1, -1), flow[labelled])  # (L, K, H, W)
            truth_t = torch.stack(truth)
            loss = loss + soft_dice_loss(warped_masks[n_ref:], truth_t[n_ref:])  # L_aug (synthetic rows)
            if n_ref:
                loss = loss + soft_dice_loss(warped_masks[:n_ref], truth_t[:n_ref])  # L_ref (refined masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


def predict_flow(model: FlowUNet, reference: ArrayLike, target: ArrayLike) -> torch.Tensor:
    """Displacement field (1, 2, H, W) in pixels mapping ``reference`` onto ``target`` (see :func:`warp`).

    Args:
        model: a fitted :class:`FlowUNet`.
        reference, target: (H, W) grey images in [0, 1], same size.
    """
    ref = _as_image(reference, "reference")
    tgt = _as_image(target, "target", tuple(ref.shape))
    with torch.no_grad():
        return model(torch.stack([ref, tgt])[None])  # (1, 2, H, W)


def refine_flow(reference: ArrayLike, target: ArrayLike, flow: torch.Tensor, iterations: int = 100,
                grid: int = 16, lr: float = 4.0, smoothness_weight: float = 1.0) -> torch.Tensor:
    """Instance optimisation: refine a predicted flow on one (reference, target) pair (our addition to §1.2).

    A network fit on one reference (plus synthetic pairs) generalises only roughly to a new patient; optimising
    the flow of *this* pair with the same unsupervised loss (``-LNCC + lambda_s * smoothness``) closes most of
    the gap, as in VoxelMorph++ / LapIRN's instance optimisation. The flow is parametrised on a coarse
    ``grid`` x ``grid`` control lattice (area-downsampled from the network's flow, bilinearly upsampled), which
    keeps it smooth and the optimisation cheap (~0.4 s for 100 Adam steps at 128 px on 2 cores). On 16 JSRT
    targets (one reference, 300-step network fit), warped-mask Dice at 128 px rose from 0.71 to 0.86 (left lung),
    0.69 to 0.80 (heart) and 0.31 to 0.64 (left clavicle) with these defaults.

    Args:
        reference, target: (H, W) grey images in [0, 1].
        flow: (1, 2, H, W) initial flow (from :func:`predict_flow`; zeros for plain registration).
        iterations: Adam steps (0 returns ``flow`` unchanged).
        grid: side of the control lattice.
        lr: Adam learning rate, in pixels of the (H, W) images.
        smoothness_weight: lambda_s.

    Returns:
        (1, 2, H, W) refined flow (no gradient attached).
    """
    ref = _as_image(reference, "reference")
    tgt = _as_image(target, "target", tuple(ref.shape))
    if flow.ndim != 4 or flow.shape[:2] != (1, 2) or tuple(flow.shape[-2:]) != tuple(ref.shape):
        raise InputError(f"flow must be (1, 2, {ref.shape[0]}, {ref.shape[1]}), got {tuple(flow.shape)}")
    if iterations <= 0:
        return flow.detach()
    hw = tuple(ref.shape)
    with torch.inference_mode(False), torch.enable_grad():
        # control values stay in pixels of (H, W): plain interpolation, no rescaling
        control = F.interpolate(flow.detach().clone(), size=(grid, grid), mode="area").requires_grad_(True)
        optimizer = torch.optim.Adam([control], lr=lr)
        moving, fixed = ref.clone()[None, None], tgt.clone()[None, None]
        for _ in range(iterations):
            dense = F.interpolate(control, size=hw, mode="bilinear", align_corners=False)
            loss = lncc_loss(warp(moving, dense), fixed) + smoothness_weight * smoothness_loss(dense)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return F.interpolate(control.detach(), size=hw, mode="bilinear", align_corners=False)
