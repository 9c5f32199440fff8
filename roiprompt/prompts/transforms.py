"""Coordinate frames: the only place that maps between original pixels and a model's square frame.

SAM-family models see the image with its longest side resized to ``input_size`` and zero-padded bottom/right to
a square; the decoder answers at ``mask_size`` (low resolution) in that padded frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


#: Full-resolution pixels converted to float32 at a time by :meth:`Frame.resize_plane` (16 MiB).
RESIZE_BLOCK_PIXELS = 1 << 22


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

    def resize_plane(self, plane: np.ndarray, block_pixels: int = RESIZE_BLOCK_PIXELS) -> torch.Tensor:
        """One HxW channel (uint8 or float, any strides) -> (rh, rw) float32: that channel of
        :meth:`resize_image`'s content, bit for bit, with at most ``block_pixels`` full-resolution pixels in
        float32 at a time (:func:`resize_rows`)."""
        return resize_rows(lambda r0, r1: np.ascontiguousarray(plane[r0:r1], dtype=np.float32), plane.shape[:2],
                           self.resized_hw, block_pixels)

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
        """(B, K, m, m) low-res logits in the padded frame -> (B, K, H, W) logits at the original resolution.

        B x K x H x W float32: where only the masks are needed, :meth:`masks_to_original` holds one at a time."""
        up = F.interpolate(logits, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        rh, rw = self.resized_hw
        up = up[..., :rh, :rw]
        return F.interpolate(up, size=self.orig_hw, mode="bilinear", align_corners=False)

    def masks_to_original(self, logits: torch.Tensor | np.ndarray, threshold: float = 0.0) -> np.ndarray:
        """(K, m, m) low-res logits in the padded frame -> (K, H, W) bool masks ``logits > threshold`` at the
        original resolution: :meth:`logits_to_original` thresholded, bit for bit, but one mask at a time, so at
        most one H x W float32 map exists (not K of them, nor the K maps kept next to the masks)."""
        low = torch.as_tensor(logits, dtype=torch.float32)
        if low.ndim != 3:
            raise ValueError(f"masks_to_original: expected (K, m, m) logits, got shape {tuple(low.shape)}")
        masks = np.empty((low.shape[0], *self.orig_hw), dtype=bool)
        with torch.inference_mode():
            for k in range(low.shape[0]):
                up = self.logits_to_original(low[k][None, None])[0, 0]
                np.greater(up.numpy(), threshold, out=masks[k])
                del up
        return masks

    def valid_region(self, size: int) -> tuple[int, int]:
        """(h, w) of the non-padded content in a ``size`` x ``size`` grid of this frame."""
        rh, rw = self.resized_hw
        k = size / self.input_size
        return max(1, round(rh * k)), max(1, round(rw * k))


def resize_rows(rows: Callable[[int, int], np.ndarray | torch.Tensor], hw: tuple[int, int], size: tuple[int, int],
                block_pixels: int = RESIZE_BLOCK_PIXELS) -> torch.Tensor:
    """Antialiased bilinear resize of an H x W float32 plane that is produced a row block at a time: ``rows(r0,
    r1)`` returns rows ``r0:r1`` of it as float32. Returns ``F.interpolate(plane[None, None], size,
    mode="bilinear", align_corners=False, antialias=True)[0, 0]``, bit for bit, while at most ``block_pixels``
    pixels of the plane exist at a time: the full-resolution plane is never built.

    torch's antialiased resize is separable: one pass along the width over every row, then one along the height
    (a pass whose size does not change is skipped). So row blocks are resized to the final width first, each on
    its own (a row's horizontal pass reads only that row), and the (H, out_w) result to the final height: the same
    arithmetic on the same numbers (``tests/test_bounded_memory.py`` checks the equality).
    """
    h, w = (int(v) for v in hw)
    oh, ow = (int(v) for v in size)
    step = max(1, block_pixels // max(w, 1))
    narrow = torch.empty((1, 1, h, ow), dtype=torch.float32)  # H x out_w: small whatever the image's width
    for r0 in range(0, h, step):
        r1 = min(h, r0 + step)
        block = torch.as_tensor(rows(r0, r1), dtype=torch.float32).reshape(1, 1, r1 - r0, w)
        narrow[..., r0:r1, :] = F.interpolate(block, size=(r1 - r0, ow), mode="bilinear", align_corners=False,
                                              antialias=True)
        del block
    return F.interpolate(narrow, size=(oh, ow), mode="bilinear", align_corners=False, antialias=True)[0, 0]


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
