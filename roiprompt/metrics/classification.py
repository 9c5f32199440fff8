"""Classification metrics wrapping scikit-learn. Labels may be ints or strings; ``classes`` fixes their order (the
columns of a score matrix, the rows of a confusion matrix)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn import metrics as skm

from ..errors import InputError


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
