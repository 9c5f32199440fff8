"""Prototype point selection for one-shot prompting (Med-PerSAM, methods.md §1.3 steps 1-5; PerSAM §5).

Everything here lives in the square, zero-padded model frame of a SAM-family backbone (``S`` = 256 for
LiteMedSAM): masks are ``S x S``, similarity maps ``S x S``, points ``(x, y)`` pixel indices of that frame
(SAM's prompt encoder adds the half-pixel itself). The padding (bottom/right, outside ``valid_hw`` from
:meth:`~roiprompt.prompts.transforms.Frame.valid_region`) is never chosen as a point.

The pipeline, as in the paper:

1. :func:`mask_prototype` -- mean reference embedding under the (area-downsampled) reference mask.
2. :func:`similarity_map` -- cosine similarity of that prototype to every target embedding, upsampled.
3. :func:`candidate_regions` -- positive zone = eroded mask estimate, negative zone = dilated ring around it.
4. :func:`quadrant_split` -- each zone cut into the 4 quadrants around the mask's centroid.
5. :func:`select_points` -- arg-max similarity per positive quadrant, arg-min per negative quadrant.

:func:`persam_points` is PerSAM's scheme (one global arg-max positive, one arg-min negative) for the ablation.

Example:
    >>> p = mask_prototype(ref_features, ref_mask_256)          # (256, 64, 64), (256, 256) -> (256,)
    >>> sim = similarity_map(p, target_features)                 # (256, 256)
    >>> points, labels = select_points(sim, mask_estimate, frame.valid_region(256))
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..errors import InputError

__all__ = ["mask_prototype", "similarity_map", "candidate_regions", "quadrant_split", "select_points",
           "persam_points", "kernel_size"]


def _features_3d(features: torch.Tensor) -> torch.Tensor:
    """(C, h, w) or (1, C, h, w) tensor -> (C, h, w) float32."""
    features = torch.as_tensor(features)
    if features.ndim == 4 and features.shape[0] == 1:
        features = features[0]
    if features.ndim != 3:
        raise InputError(f"features must be (C, h, w) (or (1, C, h, w)), got shape {tuple(features.shape)}")
    return features.float()


def _mask_2d(mask: np.ndarray | torch.Tensor, name: str = "mask") -> np.ndarray:
    """2-D bool or soft mask (any leading singleton dims) -> (H, W) bool, soft masks binarised at 0.5."""
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    arr = arr.reshape(arr.shape[-2:]) if arr.ndim > 2 and all(d == 1 for d in arr.shape[:-2]) else arr
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D (S, S) array, got shape {arr.shape}")
    return arr if arr.dtype == bool else arr > 0.5


def _valid_mask(shape: tuple[int, int], valid_hw: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: True on the non-padded content ``[:h, :w]`` of the frame."""
    h, w = (int(v) for v in valid_hw)
    if not (1 <= h <= shape[0] and 1 <= w <= shape[1]):
        raise InputError(f"valid_hw {tuple(valid_hw)} must lie within the {shape[0]}x{shape[1]} frame "
                         "(use Frame.valid_region(size))")
    valid = np.zeros(shape, bool)
    valid[:h, :w] = True
    return valid


# -- 1. prototype and 2. similarity -----------------------------------------------------------------------------
def mask_prototype(features: torch.Tensor, mask_model: np.ndarray | torch.Tensor) -> torch.Tensor:
    """L2-normalised mean embedding under a mask (the target "prototype" p of PerSAM / Med-PerSAM).

    The mask is area-downsampled to the feature grid (``adaptive_avg_pool2d``), so a feature cell that the mask
    covers by a fraction ``a`` gets weight ``a``: ``p = sum(m * F) / sum(m)``, then ``p / ||p||``.

    Args:
        features: (C, h, w) or (1, C, h, w) image embedding (LiteMedSAM: 256 x 64 x 64).
        mask_model: (S, S) bool or soft mask in [0, 1] in the model frame (LiteMedSAM: 256 x 256).

    Returns:
        (C,) float32 unit vector.

    Raises:
        InputError: wrong shapes, or an empty mask (no prototype exists).
    """
    feats = _features_3d(features)  # (C, h, w)
    m = torch.as_tensor(np.asarray(mask_model, dtype=np.float32) if not isinstance(mask_model, torch.Tensor)
                        else mask_model.float())
    m = m.reshape(m.shape[-2:]) if m.ndim > 2 and all(d == 1 for d in m.shape[:-2]) else m
    if m.ndim != 2:
        raise InputError(f"mask_model must be (S, S), got shape {tuple(m.shape)}")
    weights = F.adaptive_avg_pool2d(m[None, None], feats.shape[-2:])[0, 0]  # (h, w) area fractions
    total = weights.sum()
    if not total > 0:
        raise InputError("mask_model has no foreground pixel: a prototype needs a non-empty reference mask")
    proto = (feats * weights).sum(dim=(1, 2)) / total  # (C,)
    return F.normalize(proto, dim=0)


def similarity_map(prototype: torch.Tensor, features: torch.Tensor, size: int = 256) -> np.ndarray:
    """Cosine similarity of ``prototype`` to every embedding cell, bilinearly upsampled to ``size`` x ``size``.

    Args:
        prototype: (C,) vector (normalised here anyway).
        features: (C, h, w) or (1, C, h, w) target embedding.
        size: side of the output map (the model frame, 256 for LiteMedSAM).

    Returns:
        (size, size) float32 array in [-1, 1] (bilinear interpolation keeps the range).
    """
    feats = _features_3d(features)
    proto = torch.as_tensor(prototype).float().reshape(-1)
    if proto.shape[0] != feats.shape[0]:
        raise InputError(f"prototype has {proto.shape[0]} channels but features have {feats.shape[0]}")
    sim = torch.einsum("c,chw->hw", F.normalize(proto, dim=0), F.normalize(feats, dim=0))  # (h, w)
    sim = F.interpolate(sim[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    return sim.numpy().astype(np.float32)


# -- 3. candidate regions and 4. subregions ---------------------------------------------------------------------
def kernel_size(area: float) -> int:
    """Side of the square structuring element: ``max(3, odd(round(0.15 * sqrt(area))))`` (our choice)."""
    k = int(round(0.15 * float(np.sqrt(max(area, 0.0)))))
    k += 1 - k % 2  # next odd number
    return max(3, k)


def candidate_regions(mask: np.ndarray | torch.Tensor,
                      similarity: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positive zone (inside, away from the edge) and negative zone (a ring just outside) of a mask estimate.

    ``k = kernel_size(area)``; ``P = erode(M, k x k)``; ``N = dilate(M, k x k) \\ M``. When erosion removes the
    whole mask (thin structures such as clavicles), ``P`` falls back to one pixel: the maximum of
    ``similarity`` inside ``M`` if given, else the mask pixel nearest to its centroid.

    Args:
        mask: (S, S) bool or soft mask (binarised at 0.5).
        similarity: optional (S, S) similarity map, used only by the fallback.

    Returns:
        (P, N): two (S, S) bool arrays; ``P`` is never empty, ``N`` can be (a mask filling the frame).

    Raises:
        InputError: empty mask (no candidate regions exist; fall back to :func:`persam_points`).
    """
    m = _mask_2d(mask)
    area = int(m.sum())
    if area == 0:
        raise InputError("mask estimate is empty: no candidate regions; use persam_points instead")
    structure = np.ones((kernel_size(area),) * 2, bool)
    positive = ndimage.binary_erosion(m, structure=structure, border_value=0)
    negative = ndimage.binary_dilation(m, structure=structure) & ~m
    if not positive.any():
        ys, xs = np.nonzero(m)
        if similarity is not None:
            sim = np.asarray(similarity, dtype=np.float64)
            if sim.shape != m.shape:
                raise InputError(f"similarity is {sim.shape}, mask is {m.shape}; they must match")
            i = int(np.argmax(sim[ys, xs]))
        else:  # the mask pixel nearest to the centroid (the centroid itself may lie outside a curved mask)
            i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
        positive = np.zeros_like(m)
        positive[ys[i], xs[i]] = True
    return positive, negative


def quadrant_split(zone: np.ndarray, centre: tuple[float, float]) -> list[np.ndarray]:
    """Cut ``zone`` into the 4 quadrants around ``centre`` (x, y); empty quadrants are skipped.

    Pixel (x, y) goes left if ``x < cx`` else right, top if ``y < cy`` else bottom. Order: top-left, top-right,
    bottom-left, bottom-right.

    Args:
        zone: (S, S) bool.
        centre: (x, y) in pixels, normally the centroid of the mask estimate.

    Returns:
        list of at most 4 (S, S) bool arrays, disjoint, whose union is ``zone``.
    """
    zone = np.asarray(zone, dtype=bool)
    if zone.ndim != 2:
        raise InputError(f"zone must be 2-D, got shape {zone.shape}")
    cx, cy = float(centre[0]), float(centre[1])
    ys, xs = np.mgrid[:zone.shape[0], :zone.shape[1]]
    left, top = xs < cx, ys < cy
    parts = [zone & top & left, zone & top & ~left, zone & ~top & left, zone & ~top & ~left]
    return [p for p in parts if p.any()]


# -- 5. points ---------------------------------------------------------------------------------------------------
def _argmax_xy(values: np.ndarray) -> tuple[float, float]:
    y, x = np.unravel_index(int(np.argmax(values)), values.shape)
    return float(x), float(y)


def select_points(similarity: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor,
                  valid_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Med-PerSAM's spread-out point prompts (methods.md §1.3 steps 3-5).

    The mask estimate is binarised at 0.5 and clipped to the valid (non-padded) region, split into the
    positive zone and negative ring (:func:`candidate_regions`), each zone cut into quadrants around the mask's
    centroid (:func:`quadrant_split`); then one point per quadrant: the **maximum** similarity pixel of each
    positive quadrant (label 1) and the **minimum** similarity pixel of each negative quadrant (label 0).
    Padding pixels count as -inf for the arg-max and +inf for the arg-min, so they are never chosen.

    Args:
        similarity: (S, S) similarity map (:func:`similarity_map`).
        mask: (S, S) current mask estimate, bool or soft in [0, 1] (e.g. the warped reference mask).
        valid_hw: (h, w) of the non-padded content, ``Frame.valid_region(S)``.

    Returns:
        points: (N, 2) float64 (x, y) pixel indices in the model frame, positives first; 1 <= N <= 8.
        labels: (N,) int64, 1 = foreground, 0 = background.

    Raises:
        InputError: shapes disagree, ``valid_hw`` outside the frame, or the mask is empty inside the valid
            region (the caller should fall back to :func:`persam_points`).
    """
    sim = np.asarray(similarity.detach().cpu() if isinstance(similarity, torch.Tensor) else similarity,
                     dtype=np.float64)
    m = _mask_2d(mask)
    if sim.ndim != 2 or sim.shape != m.shape:
        raise InputError(f"similarity {sim.shape} and mask {m.shape} must be the same (S, S) frame")
    valid = _valid_mask(m.shape, valid_hw)
    m = m & valid
    if not m.any():
        raise InputError("mask estimate is empty inside the valid region: use persam_points instead")
    positive, negative = candidate_regions(m, np.where(valid, sim, -np.inf))
    ys, xs = np.nonzero(m)
    centre = (float(xs.mean()), float(ys.mean()))

    points, labels = [], []
    for part in quadrant_split(positive & valid, centre):
        points.append(_argmax_xy(np.where(part, sim, -np.inf)))
        labels.append(1)
    for part in quadrant_split(negative & valid, centre):
        points.append(_argmax_xy(np.where(part, -sim, -np.inf)))  # arg-min of sim
        labels.append(0)
    return np.asarray(points, dtype=np.float64).reshape(-1, 2), np.asarray(labels, dtype=np.int64)


def persam_points(similarity: np.ndarray | torch.Tensor,
                  valid_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """PerSAM's location prior: the global arg-max (label 1) and arg-min (label 0) of the similarity map.

    Args:
        similarity: (S, S) similarity map.
        valid_hw: (h, w) of the non-padded content; the padding is never chosen.

    Returns:
        points: (2, 2) float64 (x, y) model-frame pixels, [positive, negative]; labels: [1, 0].
    """
    sim = np.asarray(similarity.detach().cpu() if isinstance(similarity, torch.Tensor) else similarity,
                     dtype=np.float64)
    if sim.ndim != 2:
        raise InputError(f"similarity must be (S, S), got shape {sim.shape}")
    valid = _valid_mask(sim.shape, valid_hw)
    pos = _argmax_xy(np.where(valid, sim, -np.inf))
    neg = _argmax_xy(np.where(valid, -sim, -np.inf))
    return np.asarray([pos, neg], dtype=np.float64), np.asarray([1, 0], dtype=np.int64)
