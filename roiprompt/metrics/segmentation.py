"""Segmentation metrics (methods.md §6.3): Dice, IoU and HD95 on one binary HxW mask pair at the original
resolution, and the AUROC of a quality flag for failed segmentations.

Segmentation metrics take one binary HxW mask pair at the original image resolution. Dice and IoU are MONAI's
``compute_dice`` / ``compute_iou``; HD95 is MONAI's ``compute_hausdorff_distance(percentile=95)``. The empty-mask
rules of methods.md §6.3 are applied here, before MONAI sees the masks:

=====================  ====  ====  ==========================================
case                   Dice  IoU   HD95
=====================  ====  ====  ==========================================
both masks empty       1     1     0
exactly one empty      0     0     image diagonal ``hypot(H*dy, W*dx)``
=====================  ====  ====  ==========================================

HD95 boundary convention (MONAI ``get_mask_edges`` / ``get_surface_distance``, checked in tests): the boundary of a
mask is its *inner* contour, the foreground pixels with at least one 4-neighbour in the background
(``mask ^ binary_erosion(mask)``); pixels on the image border count as boundary (outside the image is background).
Distances are Euclidean between pixel centres, scaled by ``spacing`` = (row, column) pixel size. HD95 is symmetric
as MONAI defines it: ``max(q95(d(pred -> target)), q95(d(target -> pred)))``, each directed set of boundary-pixel
distances reduced by ``torch.quantile`` (linear interpolation), not the 95th percentile of the pooled distances.
A one-pixel shift gives HD95 = 1; a one-pixel mask is its own boundary.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal, Sequence

import numpy as np
import torch
from sklearn import metrics as skm

from ..errors import InputError

Spacing = float | Sequence[float] | None


def _binary_mask(mask: Any, name: str) -> np.ndarray:
    """Return ``mask`` as an HxW bool array, or raise InputError naming ``name``."""
    arr = np.asarray(mask)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"{name} must be a non-empty HxW mask, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.number)) or not ((arr == 0) | (arr == 1)).all():
        found = np.unique(arr)[:5] if np.issubdtype(arr.dtype, np.number) else arr.dtype
        raise InputError(f"{name} is not binary: expected bool or {{0, 1}} values, found {found}; "
                         "threshold it first (e.g. probs > 0.5)")
    return arr.astype(bool)


def _mask_pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = _binary_mask(pred, "pred"), _binary_mask(target, "target")
    if p.shape != t.shape:
        raise InputError(f"pred and target must have the same shape, got {p.shape[0]}x{p.shape[1]} and "
                         f"{t.shape[0]}x{t.shape[1]} (H x W); compare at the original resolution (resize the "
                         "prediction, not the truth)")
    return p, t


def _spacing(spacing: Spacing) -> tuple[float, float]:
    """(dy, dx) pixel size; a single number means square pixels."""
    if spacing is None:
        return 1.0, 1.0
    s = np.atleast_1d(np.asarray(spacing, dtype=float))
    if s.shape == (1,):
        s = np.repeat(s, 2)
    if s.shape != (2,) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise InputError(f"spacing must be a positive number or a (row, column) pair, got {spacing!r}")
    return float(s[0]), float(s[1])


def _torch(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(mask.astype(np.float32))[None, None]  # (1, 1, H, W): MONAI's batch, channel layout


def _hd95(p: np.ndarray, t: np.ndarray, spacing: tuple[float, float]) -> float:
    """HD95 of two validated masks, empty-mask rules included."""
    if not p.any() and not t.any():
        return 0.0
    if not p.any() or not t.any():
        return math.hypot(p.shape[0] * spacing[0], p.shape[1] * spacing[1])  # image diagonal
    from monai.metrics import compute_hausdorff_distance  # lazy: `import monai` takes seconds (see _overlap)

    with warnings.catch_warnings():
        # MONAI 1.5+ warns about its own internal use of a deprecated argument on every call
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*")
        hd = compute_hausdorff_distance(_torch(p), _torch(t), include_background=True, percentile=95,
                                        spacing=list(spacing))
    return float(hd[0, 0])


def _overlap(p: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """(Dice, IoU) of two validated masks, empty-mask rules included."""
    if not p.any() or not t.any():
        both = float(not p.any() and not t.any())
        return both, both
    # MONAI is imported here, not at module top: `import monai` loads all its networks (and transformers), several
    # seconds that classification metrics, confidence intervals and CLI start-up should not pay.
    from monai.metrics import compute_dice, compute_iou

    tp, tt = _torch(p), _torch(t)
    return (float(compute_dice(tp, tt, include_background=True, ignore_empty=False)[0, 0]),
            float(compute_iou(tp, tt, include_background=True, ignore_empty=False)[0, 0]))


def empty_mask_case(pred: Any, target: Any) -> Literal["none", "pred", "target", "both"]:
    """Which of the two masks is empty, so benchmarks can report how often the empty-mask rules applied.

    Args:
        pred: HxW bool or {0, 1} predicted mask.
        target: HxW bool or {0, 1} ground-truth mask, same shape.

    Returns:
        "none", "pred" (only the prediction is empty), "target" (only the truth is empty) or "both".
    """
    p, t = _mask_pair(pred, target)
    return {(True, True): "none", (False, True): "pred", (True, False): "target", (False, False): "both"}[
        (bool(p.any()), bool(t.any()))]


def dice(pred: Any, target: Any) -> float:
    """Dice coefficient 2|P∩T| / (|P| + |T|) of one binary mask pair (MONAI ``compute_dice``).

    Args:
        pred: HxW bool or {0, 1} predicted mask, original resolution.
        target: HxW bool or {0, 1} ground-truth mask, same shape.

    Returns:
        Dice in [0, 1]; 1 when both masks are empty, 0 when exactly one is.

    Raises:
        InputError: shapes differ, a mask is not HxW, or holds values other than 0/1.

    Example:
        >>> dice(np.eye(3, dtype=bool), np.eye(3, dtype=bool))
        1.0
    """
    return _overlap(*_mask_pair(pred, target))[0]


def iou(pred: Any, target: Any) -> float:
    """Intersection over union |P∩T| / |P∪T| (Jaccard) of one binary mask pair (MONAI ``compute_iou``).

    Args:
        pred: HxW bool or {0, 1} predicted mask, original resolution.
        target: HxW bool or {0, 1} ground-truth mask, same shape.

    Returns:
        IoU in [0, 1]; 1 when both masks are empty, 0 when exactly one is.

    Raises:
        InputError: as :func:`dice`.
    """
    return _overlap(*_mask_pair(pred, target))[1]


def hd95(pred: Any, target: Any, spacing: Spacing = None) -> float:
    """95th-percentile symmetric Hausdorff distance between the mask boundaries (MONAI; convention in module doc).

    Args:
        pred: HxW bool or {0, 1} predicted mask, original resolution.
        target: HxW bool or {0, 1} ground-truth mask, same shape.
        spacing: pixel size, a number or (row, column) = (dy, dx), e.g. in mm; None gives pixels.

    Returns:
        HD95 >= 0 in pixels (or spacing units); 0 when both masks are empty, the image diagonal
        ``hypot(H * dy, W * dx)`` when exactly one is.

    Raises:
        InputError: as :func:`dice`, or a spacing that is not positive.

    Example:
        >>> a = np.zeros((8, 8), bool); a[2:5, 2:5] = True
        >>> hd95(a, np.roll(a, 1, axis=1))
        1.0
    """
    p, t = _mask_pair(pred, target)
    return _hd95(p, t, _spacing(spacing))


def segmentation_scores(pred: Any, target: Any, spacing: Spacing = None) -> dict[str, float]:
    """Dice, IoU and HD95 of one mask pair, validating once and computing the boundaries once.

    Args:
        pred: HxW bool or {0, 1} predicted mask, original resolution.
        target: HxW bool or {0, 1} ground-truth mask, same shape.
        spacing: as in :func:`hd95`.

    Returns:
        ``{"dice": float, "iou": float, "hd95": float}`` with the empty-mask rules applied.
    """
    p, t = _mask_pair(pred, target)
    d, j = _overlap(p, t)
    return {"dice": d, "iou": j, "hd95": _hd95(p, t, _spacing(spacing))}


def flag_auroc(quality: Any, dice_values: Any, threshold: float = 0.5) -> float:
    """AUROC of a quality score for flagging failed segmentations (Dice < ``threshold``), methods.md §6.3.

    Sign convention: LOW quality means a likely failure, so the failure score is ``-quality``. 1.0 means every
    failure has lower quality than every success; 0.5 is chance. nan when there are no failures or no successes.

    Args:
        quality: (N,) finite quality scores, e.g. predicted IoU or prediction confidence.
        dice_values: (N,) Dice of the same N predictions.
        threshold: a prediction with Dice strictly below it is a failure.

    Raises:
        InputError: lengths differ, empty input, or non-finite quality/Dice.
    """
    q, d = np.asarray(quality, dtype=float), np.asarray(dice_values, dtype=float)
    if q.ndim != 1 or q.shape != d.shape or q.size == 0:
        raise InputError(f"quality {q.shape} and dice {d.shape} must be equal-length non-empty 1-D arrays")
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(d))):
        raise InputError("quality and dice must be finite; drop the items without a quality score first")
    failed = d < threshold
    if failed.all() or not failed.any():
        return float("nan")
    return float(skm.roc_auc_score(failed, -q))


