"""One definition of every metric the benchmarks report (methods.md §6.3–6.4).

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

Classification metrics wrap scikit-learn; labels may be ints or strings, and ``classes`` fixes their order (the
columns of a score matrix, the rows of a confusion matrix). Confidence intervals: percentile bootstrap over items
(per-image values, or jointly resampled test items for set-level metrics) and t-intervals over seeds.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from scipy import stats
from sklearn import metrics as skm

from .errors import InputError

Spacing = float | Sequence[float] | None


# -- segmentation ---------------------------------------------------------------------------------------------
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


# -- classification -------------------------------------------------------------------------------------------
def _labels(y: Any, name: str, classes: Sequence[Any] | None) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"{name} must be a non-empty 1-D array of labels, got shape {arr.shape}")
    if classes is not None and (unknown := [v for v in np.unique(arr) if v not in list(classes)]):
        raise InputError(f"{name} has labels {unknown[:5]} that are not in classes={list(classes)}")
    return arr


def _label_pair(y_true: Any, y_pred: Any, classes: Sequence[Any] | None) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true, "y_true", classes), _labels(y_pred, "y_pred", classes)
    if len(t) != len(p):
        raise InputError(f"y_true and y_pred must have the same length (one label per test item), got {len(t)} "
                         f"and {len(p)}")
    return t, p


def accuracy(y_true: Any, y_pred: Any, classes: Sequence[Any] | None = None) -> float:
    """Fraction of correct predictions (sklearn ``accuracy_score``).

    Args:
        y_true: (N,) true labels (ints or strings).
        y_pred: (N,) predicted labels.
        classes: optional list of allowed labels; any other label raises.

    Raises:
        InputError: lengths differ, empty input, or labels outside ``classes``.
    """
    return float(skm.accuracy_score(*_label_pair(y_true, y_pred, classes)))


def balanced_accuracy(y_true: Any, y_pred: Any, classes: Sequence[Any] | None = None) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (sklearn ``balanced_accuracy_score``).

    Args and Raises as :func:`accuracy`.
    """
    return float(skm.balanced_accuracy_score(*_label_pair(y_true, y_pred, classes)))


def macro_f1(y_true: Any, y_pred: Any, classes: Sequence[Any] | None = None) -> float:
    """Unweighted mean of per-class F1 (sklearn ``f1_score(average="macro")``).

    A class that occurs in neither ``y_true`` nor ``y_pred`` has no F1 and is left out of the mean (rather than
    counted as 0); a class that is predicted but never true, or true but never predicted, counts as F1 = 0.

    Args and Raises as :func:`accuracy`.
    """
    t, p = _label_pair(y_true, y_pred, classes)
    labels = list(classes) if classes is not None else None
    return float(skm.f1_score(t, p, labels=labels, average="macro", zero_division=np.nan))


def confusion_matrix(y_true: Any, y_pred: Any, classes: Sequence[Any] | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of items of true class ``classes[i]`` predicted as ``classes[j]``.

    Args:
        y_true: (N,) true labels.
        y_pred: (N,) predicted labels.
        classes: row/column order; default: sorted union of the labels seen.

    Returns:
        (C, C) int64 array, rows = truth, columns = prediction.
    """
    t, p = _label_pair(y_true, y_pred, classes)
    labels = list(classes) if classes is not None else None
    return skm.confusion_matrix(t, p, labels=labels).astype(np.int64)


def auroc(y_true: Any, scores: Any, classes: Sequence[Any] | None = None) -> float:
    """Area under the ROC curve; one-vs-rest macro average for more than two classes.

    Binary: ``scores`` is (N,) scores of the positive class ``classes[1]``, or (N, 2) with column j for
    ``classes[j]`` (column 1 is used). Multi-class: (N, C), column j for ``classes[j]``; each class is scored
    against the rest with sklearn ``roc_auc_score`` and the AUROCs averaged (equal to sklearn's
    ``multi_class="ovr", average="macro"``, but any monotone scores work, not only probabilities summing to 1).

    Undefined cases return nan instead of raising: a binary ``y_true`` with a single class, and for multi-class
    a class absent from ``y_true`` is left out of the macro mean (nan when fewer than two classes are present).
    Bootstrap helpers drop nan resamples.

    Args:
        y_true: (N,) labels, ints or strings.
        scores: (N,) or (N, C) finite scores, higher = more likely that class.
        classes: the class of each score column; default ``np.unique(y_true)`` (pass it with string labels, or
            when a class may be missing from ``y_true``).

    Returns:
        AUROC in [0, 1], or nan when undefined.

    Raises:
        InputError: N differs, C differs from ``len(classes)``, non-finite scores, or labels outside ``classes``.

    Example:
        >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    t = _labels(y_true, "y_true", classes)
    classes = list(classes) if classes is not None else np.unique(t).tolist()
    s = np.asarray(scores, dtype=float)
    if s.ndim not in (1, 2) or s.shape[0] != len(t):
        raise InputError(f"scores must be (N,) or (N, C) with N = len(y_true) = {len(t)}, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise InputError(f"scores hold {int((~np.isfinite(s)).sum())} non-finite values; AUROC needs finite scores")
    if s.ndim == 1 or s.shape[1] == 2:
        if len(classes) == 1 and len(np.unique(t)) == 1:
            return float("nan")  # classes inferred from a single-class y_true
        if len(classes) != 2:
            raise InputError(f"binary scores of shape {s.shape} need exactly 2 classes, got classes={classes}")
        positive = t == classes[1]
        if positive.all() or not positive.any():
            return float("nan")  # one class only: the ROC curve is undefined
        return float(skm.roc_auc_score(positive, s if s.ndim == 1 else s[:, 1]))
    if s.shape[1] != len(classes):
        raise InputError(f"scores have {s.shape[1]} columns but there are {len(classes)} classes {classes}; "
                         "pass classes= in column order")
    per_class = [skm.roc_auc_score(t == c, s[:, j]) for j, c in enumerate(classes) if 0 < (t == c).sum() < len(t)]
    return float(np.mean(per_class)) if len(per_class) >= 2 else float("nan")


def classification_scores(y_true: Any, y_pred: Any, probs: Any, classes: Sequence[Any]) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro-F1 and AUROC of one test set.

    Args:
        y_true: (N,) true labels.
        y_pred: (N,) predicted labels.
        probs: (N, C) class scores in ``classes`` order, or (N,) positive-class scores when C = 2.
        classes: the C class labels, in column order.

    Returns:
        ``{"accuracy", "balanced_accuracy", "macro_f1", "auroc"}`` as floats (auroc may be nan, see :func:`auroc`).
    """
    t, p = _label_pair(y_true, y_pred, classes)
    return {"accuracy": accuracy(t, p), "balanced_accuracy": balanced_accuracy(t, p),
            "macro_f1": macro_f1(t, p, classes), "auroc": auroc(t, probs, classes)}


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


# -- confidence intervals -------------------------------------------------------------------------------------
def _check_level(level: float, n_resamples: int | None = None) -> None:
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), e.g. 0.95, got {level}")
    if n_resamples is not None and (int(n_resamples) != n_resamples or n_resamples < 1):
        raise InputError(f"n_resamples must be a positive integer, got {n_resamples}")


def _values(values: Any) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise InputError(f"values must be a non-empty 1-D array (one value per image or seed), got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise InputError(f"values hold {int((~np.isfinite(v)).sum())} nan/inf entries; a CI needs finite values")
    return v


def _percentiles(stats_: np.ndarray, level: float) -> tuple[float, float]:
    stats_ = stats_[np.isfinite(stats_)]  # e.g. AUROC of a resample with a single class
    if stats_.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(stats_, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def bootstrap_ci(values: Any, statistic: Callable[..., Any] = np.mean, n_resamples: int = 1000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over items (e.g. per-image Dice), deterministic given ``seed``.

    Args:
        values: (N,) finite per-item values.
        statistic: reduces (..., N) to (...); called with ``axis=-1`` when it accepts it, else once per resample.
        n_resamples: bootstrap resamples (methods.md §6.4: 1000).
        level: confidence level in (0, 1).
        seed: seed of ``np.random.default_rng``.

    Returns:
        (lo, hi); ``(v, v)`` when N = 1.

    Raises:
        InputError: empty or non-finite values, level outside (0, 1), n_resamples < 1.
    """
    _check_level(level, n_resamples)
    v = _values(values)
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    chunk = max(1, 1_000_000 // v.size)  # bound memory at ~8 MB of resampled values
    out = []
    for start in range(0, n_resamples, chunk):
        sample = v[rng.integers(0, v.size, size=(min(chunk, n_resamples - start), v.size))]  # (R, N)
        try:
            out.append(np.asarray(statistic(sample, axis=-1), dtype=float))
        except TypeError:  # a statistic without an axis argument
            out.append(np.array([statistic(row) for row in sample], dtype=float))
    return _percentiles(np.concatenate(out), level)


def bootstrap_ci_paired(y_true: Any, y_pred: Any, metric_fn: Callable[[np.ndarray, np.ndarray], float],
                        n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of a set-level metric (accuracy, AUROC...) resampling test items jointly.

    Each resample draws N item indices with replacement and evaluates ``metric_fn(y_true[idx], y_pred[idx])``.
    Resamples where the metric is nan (e.g. AUROC of a single-class resample) are dropped.

    Args:
        y_true: (N,) labels.
        y_pred: (N,) predicted labels or (N, C) scores, row i for item i.
        metric_fn: e.g. :func:`accuracy` or ``functools.partial(auroc, classes=classes)``.
        n_resamples: bootstrap resamples.
        level: confidence level in (0, 1).
        seed: seed of ``np.random.default_rng``.

    Returns:
        (lo, hi); ``(m, m)`` with m the metric when N = 1; (nan, nan) when every resample is nan.
    """
    _check_level(level, n_resamples)
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or t.size == 0 or p.shape[:1] != t.shape:
        raise InputError(f"y_true {t.shape} and y_pred {p.shape} must have the same non-zero number of items N")
    if t.size == 1:
        m = float(metric_fn(t, p))
        return m, m
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, t.size, size=(n_resamples, t.size))  # (R, N)
    return _percentiles(np.array([metric_fn(t[i], p[i]) for i in idx], dtype=float), level)


def t_interval(values: Any, level: float = 0.95) -> tuple[float, float]:
    """Student-t CI of the mean over a few seeds: mean ± t_{(1+level)/2, n-1} · s / sqrt(n), s with ddof=1.

    Args:
        values: (n,) finite per-seed values (e.g. the per-seed mean Dice).
        level: confidence level in (0, 1).

    Returns:
        (lo, hi); (nan, nan) when n = 1 (no spread to estimate from one seed).
    """
    _check_level(level)
    v = _values(values)
    if v.size == 1:
        return float("nan"), float("nan")
    half = stats.t.ppf((1 + level) / 2, df=v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean() - half), float(v.mean() + half)


def summarize(values: Any, ci: Literal["bootstrap", "t"] = "bootstrap", n_resamples: int = 1000,
              seed: int = 0) -> dict[str, Any]:
    """Mean, 95 % CI and count of per-item (bootstrap) or per-seed (t) values, as benchmark records store them.

    nan entries (e.g. an undefined AUROC) are left out and counted in ``n_nan``, never silently; inf raises.

    Args:
        values: (N,) values.
        ci: "bootstrap" over items (single-run settings) or "t" over seeds (methods.md §6.4).
        n_resamples: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        ``{"mean": float, "ci95": [lo, hi], "n": int, "sd": float, "n_nan": int}``: n counts the values used;
        sd has ddof=1 (nan when n = 1); everything but the counts is nan when no value is left.

    Example:
        >>> summarize([0.5, 0.7, float("nan")])["n"]
        2
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1:
        raise InputError(f"values must be a 1-D array (one value per image or seed), got shape {v.shape}")
    if ci not in ("bootstrap", "t"):
        raise InputError(f"ci must be 'bootstrap' or 't', got {ci!r}")
    kept = v[~np.isnan(v)]
    nan = float("nan")
    if kept.size == 0:
        return {"mean": nan, "ci95": [nan, nan], "n": 0, "sd": nan, "n_nan": int(v.size)}
    if ci == "bootstrap":
        lo, hi = bootstrap_ci(kept, np.mean, n_resamples=n_resamples, level=0.95, seed=seed)
    else:
        lo, hi = t_interval(kept, level=0.95)
    sd = float(kept.std(ddof=1)) if kept.size > 1 else nan
    return {"mean": float(kept.mean()), "ci95": [lo, hi], "n": int(kept.size), "sd": sd,
            "n_nan": int(v.size - kept.size)}
