"""Augmented views of a reference image and its masks, the training set of the learned localiser.

One annotated image is too few tokens to learn what the structure looks like under the variation a study has
(position, size, orientation, exposure). Each view is a seeded random similarity transform (rotation, scale,
shift) plus a gamma/contrast change, applied to the image and its masks together; the first view is the image
itself and the second its left-right mirror. Views are ordinary images, so the embedding cache stores their
encodings like any other image (keyed by pixels): a reference is encoded once per view, ever.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["reference_views"]


def reference_views(image: np.ndarray, masks: Mapping[str, np.ndarray], count: int = 8, seed: int = 0,
                    mirror: bool = True, max_rotation: float = 15.0, scale_range: tuple[float, float] = (0.85, 1.15),
                    max_shift: float = 0.08) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """``count`` views ``(image, masks)`` of one reference: the original, its mirror (``mirror``), then random
    similarity transforms with intensity jitter.

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
    views = [(image, {k: np.asarray(m, bool) for k, m in masks.items()})]
    if mirror and count > 1:
        views.append((np.ascontiguousarray(image[:, ::-1]), {k: np.ascontiguousarray(m[:, ::-1]) for k, m in masks.items()}))
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    pixels = torch.as_tensor(image.astype(np.float32))
    pixels = pixels[None, None] if pixels.ndim == 2 else pixels.permute(2, 0, 1)[None]
    names = list(masks)
    stack = torch.as_tensor(np.stack([np.asarray(masks[k], np.float32) for k in names]))[None]
    while len(views) < count:
        angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
        scale = rng.uniform(*scale_range)
        tx, ty = rng.uniform(-max_shift, max_shift, 2) * 2  # affine_grid works in [-1, 1]
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        # rotation in pixel space, expressed in the normalised coordinates of a non-square image
        theta = torch.tensor([[[cos, -sin * h / w, tx], [sin * w / h, cos, ty]]], dtype=torch.float32)
        grid = F.affine_grid(theta, (1, 1, h, w), align_corners=False)
        moved = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        moved_masks = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        gamma, gain = rng.uniform(0.7, 1.4), rng.uniform(0.85, 1.15)
        moved = (255.0 * (moved / 255.0).clamp(0, 1) ** gamma * gain).clamp(0, 255).round().to(torch.uint8)
        view = moved[0, 0].numpy() if image.ndim == 2 else moved[0].permute(1, 2, 0).numpy()
        views.append((np.ascontiguousarray(view), {k: moved_masks[0, j].numpy() > 0.5 for j, k in enumerate(names)}))
    return views
