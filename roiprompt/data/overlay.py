"""Overlays a person can look at: coloured semi-transparent masks with contours, boxes and points on the image."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from ..errors import InputError
from ..files import atomic_path
from .validate import check_image, check_mask

__all__ = ["STRUCTURE_COLOURS", "write_attention_png", "write_overlay_png"]

# tab10 without grey: distinct on grey medical images and readable by most colour-blind viewers
STRUCTURE_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                     (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207))
_BOX_COLOUR = (255, 221, 0)
_POSITIVE, _NEGATIVE = (0, 230, 64), (255, 40, 40)
#: Pixels blended at a time by :func:`write_overlay_png` (a 12 MiB float32 strip).
_STRIP_PIXELS = 1 << 20


def _mask_dict(mask_or_masks: Any, hw: tuple[int, int]) -> dict[str, np.ndarray]:
    if mask_or_masks is None:
        return {}
    if isinstance(mask_or_masks, Mapping):
        items = list(mask_or_masks.items())
    elif isinstance(mask_or_masks, np.ndarray) and mask_or_masks.ndim == 2:
        items = [("mask", mask_or_masks)]
    elif isinstance(mask_or_masks, (Sequence, np.ndarray)):
        items = [(f"mask {i}", m) for i, m in enumerate(mask_or_masks)]
    else:
        raise InputError(f"overlay: masks must be an HxW array, a list of them or a dict name -> mask, got "
                         f"{type(mask_or_masks).__name__}")
    return {str(name): check_mask(np.asarray(m), hw, f"overlay mask {name!r}", allow_empty=True)
            for name, m in items}


def _coords(values: Any, width: int, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size % width or not np.isfinite(arr).all():
        raise InputError(f"overlay: {what} must be finite numbers, {width} per item, got {values!r}")
    return arr.reshape(-1, width)


def write_overlay_png(path: str | os.PathLike, image: np.ndarray, mask_or_masks: Any = None,
                      boxes: Any = None, points: Any = None, labels: Any = None, alpha: float = 0.4) -> Path:
    """Draw masks, boxes and points over an image and save it as an RGB PNG; returns the path.

    Each structure gets its own colour (:data:`STRUCTURE_COLOURS`, in the order given): a semi-transparent fill
    plus an opaque contour, and its name in a small legend. Boxes are drawn in the colour of the mask with the
    same position when there are as many boxes as masks, else in yellow. Points are discs: green for foreground
    (label 1), red for background (label 0).

    Args:
        path: output PNG; parent folders are created.
        image: HxW or HxWx3 uint8.
        mask_or_masks: HxW bool mask, a list of them, a dict structure name -> mask, or None.
        boxes: one (x0, y0, x1, y1) box or a list of them, pixels of the image.
        points: (x, y) pixels, shape (N, 2).
        labels: (N,) 1 = foreground, 0 = background; default all foreground.
        alpha: opacity of the mask fill in [0, 1].

    Raises:
        InputError: bad image, a mask of another size, non-finite boxes/points, labels not matching points.

    Example:
        >>> write_overlay_png("out/bus_0001-l.png", sample.image, sample.masks, boxes=[sample.meta["bbox"]])
    """
    path = Path(path)
    img = check_image(image, "overlay image")
    height, width = img.shape[:2]
    masks = _mask_dict(mask_or_masks, (height, width))
    thickness = max(1, round(max(height, width) / 300))
    colours = {name: STRUCTURE_COLOURS[i % len(STRUCTURE_COLOURS)] for i, name in enumerate(masks)}
    canvas = Image.new("RGB", (width, height))
    # Blended a strip of rows at a time (float32 for a strip only: bounded memory at any image size); every step
    # is per pixel, and a contour (the mask minus its erosion by ``thickness``) reads ``thickness`` rows either
    # side, which each strip erodes with it, so the picture is the one a whole-image pass draws.
    rows = max(_STRIP_PIXELS // width, 4 * thickness, 1)
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        strip = img[r0:r1]
        out = (np.repeat(strip[:, :, None], 3, axis=2) if img.ndim == 2 else strip).astype(np.float32)
        for name, mask in masks.items():
            part = mask[r0:r1]
            colour = np.array(colours[name], np.float32)
            out[part] = (1 - alpha) * out[part] + alpha * colour
        a0, a1 = max(0, r0 - thickness), min(height, r1 + thickness)
        for name, mask in masks.items():  # contours after all fills, so overlapping structures keep their outline
            eroded = ndimage.binary_erosion(mask[a0:a1], iterations=thickness)[r0 - a0:r1 - a0]
            out[mask[r0:r1] & ~eroded] = colours[name]
        canvas.paste(Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8)), (0, r0))
        del out
    draw = ImageDraw.Draw(canvas)

    if boxes is not None:
        box_arr = _coords(boxes, 4, "boxes")
        same = len(box_arr) == len(masks)
        for i, (x0, y0, x1, y1) in enumerate(box_arr):
            colour = list(colours.values())[i] if same else _BOX_COLOUR
            draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=colour, width=thickness)
    if points is not None:
        pts = _coords(points, 2, "points")
        labs = np.ones(len(pts), int) if labels is None else np.asarray(labels).reshape(-1)
        if len(labs) != len(pts):
            raise InputError(f"overlay: {len(pts)} points but {len(labs)} labels; give one label per point")
        radius = 2 + 2 * thickness
        for (x, y), lab in zip(pts, labs, strict=True):
            draw.ellipse([x - radius, y - radius, x + radius, y + radius],
                         fill=_POSITIVE if lab else _NEGATIVE, outline=(255, 255, 255), width=max(1, thickness // 2))
    if masks:  # legend, top-left, on a dark band so it reads on bright images
        y = 2
        for name, colour in colours.items():
            left, top, right, bottom = draw.textbbox((4, y), name)
            draw.rectangle([left - 2, top - 1, right + 2, bottom + 1], fill=(0, 0, 0))
            draw.text((4, y), name, fill=colour)
            y = bottom + 3
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def _heat(values: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB on a black-red-yellow-white ramp (monotone in lightness, so it also reads in greyscale)."""
    v = np.clip(values, 0, 1)[..., None]
    return np.concatenate([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], -1) * 255


def write_attention_png(path: str | os.PathLike, image: np.ndarray, maps: Mapping[str, np.ndarray],
                        mask: np.ndarray | None = None, alpha: float = 0.55) -> Path:
    """Side-by-side panels, one per attention map, each a heat map over the image with the ROI contour.

    All panels share one colour scale (the largest value of any map), so "more attention inside the ROI" is
    visible across panels.

    Args:
        path: output PNG; parent folders are created.
        image: HxW or HxWx3 uint8.
        maps: {title: HxW non-negative map at the image's resolution}, e.g. {"unguided": a, "guided": b}.
        mask: HxW bool ROI drawn as a cyan contour on every panel.
        alpha: opacity of the heat map.

    Raises:
        InputError: bad image, a map or mask of another size, no maps.
    """
    path = Path(path)
    img = check_image(image, "attention image")
    height, width = img.shape[:2]
    if not maps:
        raise InputError("attention overlay: no maps to draw")
    for title, m in maps.items():
        if np.shape(m) != (height, width):
            raise InputError(f"attention overlay: map {title!r} has shape {np.shape(m)}; expected {(height, width)}")
    edge = None
    if mask is not None:
        roi = check_mask(mask, (height, width), "attention overlay mask", allow_empty=True)
        edge = roi & ~ndimage.binary_erosion(roi, iterations=max(1, round(max(height, width) / 300)))
    rgb = (np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img).astype(np.float32)
    top = max(float(np.max(m)) for m in maps.values()) or 1.0
    panels = []
    for title, m in maps.items():
        panel = (1 - alpha) * rgb + alpha * _heat(np.asarray(m, np.float32) / top)
        if edge is not None:
            panel[edge] = (0, 255, 255)
        canvas = Image.fromarray(np.clip(np.round(panel), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        left, top_y, right, bottom = draw.textbbox((4, 2), title)
        draw.rectangle([left - 2, top_y - 1, right + 2, bottom + 1], fill=(0, 0, 0))
        draw.text((4, 2), title, fill=(255, 255, 255))
        panels.append(np.asarray(canvas))
    gap = np.full((height, 4, 3), 255, np.uint8)
    row = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
    with atomic_path(path) as tmp:
        Image.fromarray(row).save(tmp, format="PNG")
    return path
