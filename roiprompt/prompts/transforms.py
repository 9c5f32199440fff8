"""Coordinate frames: the only place that maps between original pixels and a model's square frame.

SAM-family models see the image with its longest side resized to ``input_size`` and zero-padded bottom/right to
a square; the decoder answers at ``mask_size`` (low resolution) in that padded frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Frame:
    """Resize-longest-side-then-pad frame of one image.

    Attributes:
        orig_hw: (H, W) of the original image.
        input_size: side of the square model frame.
    """

    orig_hw: tuple[int, int]
    input_size: int

    @property
    def scale(self) -> float:
        return self.input_size / max(self.orig_hw)

    @property
    def resized_hw(self) -> tuple[int, int]:
        """(h, w) of the image content inside the padded frame."""
        h, w = self.orig_hw
        return max(1, int(h * self.scale + 0.5)), max(1, int(w * self.scale + 0.5))

    # -- prompts: original pixels -> model frame ------------------------------------------------------------
    def points_to_model(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) (x, y) original pixels -> model-frame pixels (scaled per axis like the image)."""
        h, w = self.orig_hw
        rh, rw = self.resized_hw
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2).copy()
        pts[:, 0] *= rw / w
        pts[:, 1] *= rh / h
        return pts

    def box_to_model(self, box: np.ndarray) -> np.ndarray:
        """(4,) XYXY original pixels -> model frame."""
        return self.points_to_model(np.asarray(box, dtype=np.float64).reshape(2, 2)).reshape(4)

    def points_to_original(self, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`points_to_model`."""
        h, w = self.orig_hw
        rh, rw = self.resized_hw
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2).copy()
        pts[:, 0] *= w / rw
        pts[:, 1] *= h / rh
        return pts

    # -- images and masks -------------------------------------------------------------------------------------
    def resize_image(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) float -> (B, C, S, S): bilinear resize of the longest side to S, zero pad bottom/right."""
        rh, rw = self.resized_hw
        out = F.interpolate(image, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)
        return F.pad(out, (0, self.input_size - rw, 0, self.input_size - rh))

    def mask_to_model(self, mask: np.ndarray | torch.Tensor, size: int | None = None) -> torch.Tensor:
        """HxW mask (bool or soft) -> (1, 1, size, size) float in the padded frame (``size`` defaults to S)."""
        size = size or self.input_size
        m = torch.as_tensor(np.asarray(mask, dtype=np.float32))[None, None]
        rh, rw = self.resized_hw
        k = size / self.input_size
        th, tw = max(1, round(rh * k)), max(1, round(rw * k))
        m = F.interpolate(m, size=(th, tw), mode="bilinear", align_corners=False)
        return F.pad(m, (0, size - tw, 0, size - th))

    def logits_to_original(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, K, m, m) low-res logits in the padded frame -> (B, K, H, W) logits at the original resolution."""
        up = F.interpolate(logits, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        rh, rw = self.resized_hw
        up = up[..., :rh, :rw]
        return F.interpolate(up, size=self.orig_hw, mode="bilinear", align_corners=False)

    def valid_region(self, size: int) -> tuple[int, int]:
        """(h, w) of the non-padded content in a ``size`` x ``size`` grid of this frame."""
        rh, rw = self.resized_hw
        k = size / self.input_size
        return max(1, round(rh * k)), max(1, round(rw * k))


def box_from_mask(mask: np.ndarray, pad_fraction: float = 0.0) -> np.ndarray:
    """Tight XYXY box (pixels, x1/y1 exclusive edge) of a non-empty bool mask, padded by ``pad_fraction`` of its
    width/height per side and clipped to the image."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        from ..errors import InputError

        raise InputError("cannot take the box of an empty mask")
    h, w = mask.shape[:2]
    x0, x1, y0, y1 = float(xs.min()), float(xs.max() + 1), float(ys.min()), float(ys.max() + 1)
    px, py = pad_fraction * (x1 - x0), pad_fraction * (y1 - y0)
    return np.array([max(0.0, x0 - px), max(0.0, y0 - py), min(float(w), x1 + px), min(float(h), y1 + py)])


def component_boxes(mask: np.ndarray, pad_fraction: float = 0.0, min_fraction: float = 0.05) -> np.ndarray:
    """One padded XYXY box per connected component (8-connectivity) of a non-empty bool mask.

    Components smaller than ``min_fraction`` of the mask's area are dropped (JPEG speckle, stray pixels), but
    the largest component is always kept. Returns (N, 4), largest component first.
    """
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        from ..errors import InputError

        raise InputError("cannot take the boxes of an empty mask")
    areas = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    order = np.argsort(-areas)
    keep = [i for i in order if areas[i] >= min_fraction * areas.sum()] or [order[0]]
    return np.stack([box_from_mask(labels == i + 1, pad_fraction) for i in keep])
