"""Augmented views of a reference image and its masks, the training set of the learned localiser.

One annotated image is too few tokens to learn what the structure looks like under the variation a study has
(position, size, orientation, exposure). Each view is a seeded random similarity transform (rotation, scale,
shift) plus a gamma/contrast change, applied to the image and its masks together; the first view is the image
itself and the second its left-right mirror. Views are ordinary images, so the embedding cache stores their
encodings like any other image (keyed by pixels): a reference is encoded once per view, ever.
"""

from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["iter_reference_views", "reference_views"]


def reference_views(image: np.ndarray, masks: Mapping[str, np.ndarray], count: int = 8, seed: int = 0,
                    mirror: bool = True, max_rotation: float = 15.0, scale_range: tuple[float, float] = (0.85, 1.15),
                    max_shift: float = 0.08) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """``count`` views ``(image, masks)`` of one reference: the original, its mirror (``mirror``), then random
    similarity transforms with intensity jitter. All of them at once: :func:`iter_reference_views` makes one at
    a time (what the method uses: a view of a large image is as large as the image).

    Args:
        image: HxW or HxWx3 uint8.
        masks: structure -> HxW bool.
        count: number of views, the original included (>= 1).
        seed: seeds the transforms (the same reference always gives the same views, so their encodings cache).
        mirror: include the left-right mirror as the second view.
        max_rotation: degrees, uniform in +-.
        scale_range: zoom factor range.
        max_shift: shift, as a fraction of the image side, uniform in +-.

    Returns:
        List of (HxW[x3] uint8 image, {structure: HxW bool}) pairs; content moved outside the frame is lost and
        uncovered borders are black, as in a real acquisition with a smaller field of view.
    """
    return list(iter_reference_views(image, masks, count, seed, mirror, max_rotation, scale_range, max_shift))


#: Output pixels resampled at a time by :func:`iter_reference_views` (its sampling grid: 8 bytes per pixel).
VIEW_BLOCK_PIXELS = 1 << 20


def iter_reference_views(image: np.ndarray, masks: Mapping[str, np.ndarray], count: int = 8, seed: int = 0,
                         mirror: bool = True, max_rotation: float = 15.0,
                         scale_range: tuple[float, float] = (0.85, 1.15), max_shift: float = 0.08,
                         block_pixels: int = VIEW_BLOCK_PIXELS) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """:func:`reference_views`, one view at a time (same arguments, same views bit for bit).

    Memory beyond the image and its masks: one source plane in float32 (an image channel or a mask: the resampling
    works per channel), the view being made (float32 pixels, then uint8, and its bool masks), and a block of
    ``block_pixels`` output pixels of the sampling grid. The grid's rows are ``F.affine_grid``'s, computed block by
    block the way torch computes them (base grid times theta), and each output pixel of ``grid_sample`` depends
    only on its grid entry, so the blocks assemble the whole-image result; the intensity change runs in place on
    the whole view (the same elementwise kernels over the same tensor as out of place).
    """
    yield image, {k: np.asarray(m, bool) for k, m in masks.items()}
    if mirror and count > 1:
        yield (np.ascontiguousarray(image[:, ::-1]),
               {k: np.ascontiguousarray(np.asarray(m)[:, ::-1]) for k, m in masks.items()})
    done = 2 if mirror and count > 1 else 1
    if done >= count:
        return
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    names = list(masks)
    planes = [image] if image.ndim == 2 else [image[..., c] for c in range(channels)]
    planes += [np.asarray(masks[k]) for k in names]
    xs, ys = _base_coordinates(w), _base_coordinates(h)
    step = max(1, block_pixels // max(w, 1))
    while done < count:
        angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
        scale = rng.uniform(*scale_range)
        tx, ty = rng.uniform(-max_shift, max_shift, 2) * 2  # affine_grid works in [-1, 1]
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        # rotation in pixel space, expressed in the normalised coordinates of a non-square image
        theta = torch.tensor([[[cos, -sin * h / w, tx], [sin * w / h, cos, ty]]], dtype=torch.float32)
        moved = torch.empty((1, channels, h, w), dtype=torch.float32)
        moved_masks = np.empty((len(names), h, w), dtype=bool)
        for c, plane in enumerate(planes):  # bilinear, zero padding
            source = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))[None, None]
            for r0 in range(0, h, step):
                r1 = min(h, r0 + step)
                sampled = F.grid_sample(source, _grid_rows(theta, xs, ys[r0:r1]), mode="bilinear",
                                        padding_mode="zeros", align_corners=False)[0, 0]
                if c < channels:
                    moved[0, c, r0:r1] = sampled
                else:
                    np.greater(sampled.numpy(), 0.5, out=moved_masks[c - channels, r0:r1])
                del sampled
            del source
        gamma, gain = rng.uniform(0.7, 1.4), rng.uniform(0.85, 1.15)
        # 255 * (moved / 255).clamp(0, 1) ** gamma * gain, clamped and rounded: in place, op by op
        moved.div_(255.0).clamp_(0, 1).pow_(gamma).mul_(255.0).mul_(gain).clamp_(0, 255).round_()
        view = np.empty(image.shape, dtype=np.uint8)
        target = torch.from_numpy(view)
        (target[None, None] if image.ndim == 2 else target.permute(2, 0, 1)[None]).copy_(moved)  # cast to uint8
        del moved, target
        done += 1
        yield view, {k: moved_masks[j] for j, k in enumerate(names)}
        del view, moved_masks


def _base_coordinates(n: int) -> torch.Tensor:
    """``F.affine_grid``'s normalised pixel centres along a side of ``n`` pixels (align_corners=False), computed
    as torch computes them: ``linspace(-1, 1, n) * (n - 1) / n``."""
    if n <= 1:
        return torch.zeros(max(n, 1))
    return torch.linspace(-1, 1, n) * (n - 1) / n


def _grid_rows(theta: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Rows ``ys`` of ``F.affine_grid(theta, (1, 1, H, W), align_corners=False)``: torch's base grid ``(x, y, 1)``
    of those rows times ``theta`` transposed (one ``bmm``), so each entry is computed as in the whole grid."""
    base = torch.empty((1, len(ys), len(xs), 3), dtype=torch.float32)
    base[..., 0] = xs
    base[..., 1] = ys[:, None]
    base[..., 2] = 1
    return base.view(1, len(ys) * len(xs), 3).bmm(theta.transpose(1, 2)).view(1, len(ys), len(xs), 2)
