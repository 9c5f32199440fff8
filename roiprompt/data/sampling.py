"""Deterministic few-shot sampling (methods.md §6.2): the same seed gives the same indices on every machine.

Both functions draw with ``numpy.random.default_rng(seed)`` and return indices into the dataset (or label list)
they were given, sorted ascending; sample from ``dataset.split("train")`` to keep test images out of support
sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from ..errors import InputError
from ..types import Sample
from .datasets import Dataset

__all__ = ["sample_fraction", "sample_per_class", "sample_references", "sample_support"]


def _check_count(k: Any, what: str) -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"{what}: k must be a positive integer, got {k!r}")
    return int(k)


def _indices_by_class(labels_or_dataset: Dataset | Sequence[str | None], who: str) -> dict[str, list[int]]:
    """{class: indices} of the labelled samples (a Dataset's ``labels``, no image read); InputError if none."""
    labels = list(labels_or_dataset.labels if isinstance(labels_or_dataset, Dataset) else labels_or_dataset)
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        if label is not None:
            by_class.setdefault(str(label), []).append(i)
    if not by_class:
        raise InputError(f"{who}: no labelled sample to draw from (every label is None)")
    return by_class


def sample_per_class(labels_or_dataset: Dataset | Sequence[str | None], k: int | Literal["all"],
                     seed: int) -> list[int]:
    """Pick ``k`` indices per class, stratified, reproducibly.

    Classes are visited in sorted order and each draws ``k`` indices without replacement from one
    ``default_rng(seed)``; samples labelled None are never picked.

    Args:
        labels_or_dataset: a Dataset (its ``labels``, no image read) or a sequence of labels.
        k: shots per class, or "all" for every labelled index.
        seed: run seed (methods.md: 0-4).

    Returns:
        Sorted indices, ``k * n_classes`` of them.

    Raises:
        InputError: no labels, a class with fewer than ``k`` samples (the message gives every class count), bad k.

    Example:
        >>> train = load_dataset("busbra").split("train")
        >>> support = train.subset(sample_per_class(train, 8, seed=0))   # 8 benign + 8 malignant
    """
    by_class = _indices_by_class(labels_or_dataset, "sample_per_class")
    if isinstance(k, str):
        if k != "all":
            raise InputError(f"sample_per_class: k must be a positive integer or 'all', got {k!r}")
        return sorted(i for indices in by_class.values() for i in indices)
    k = _check_count(k, "sample_per_class")
    counts = {c: len(v) for c, v in sorted(by_class.items())}
    if short := [c for c, n in counts.items() if n < k]:
        raise InputError(f"sample_per_class: class(es) {short} have fewer than k={k} samples (counts: {counts}); "
                         "lower k or use k='all'")
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for cls in sorted(by_class):
        picked.extend(int(i) for i in rng.choice(by_class[cls], size=k, replace=False))
    return sorted(picked)


def sample_fraction(labels_or_dataset: Dataset | Sequence[str | None], fraction: float, seed: int) -> list[int]:
    """Pick ``fraction`` of the labelled indices, stratified: ``max(1, round(fraction * n_c))`` of each class
    (MedFocusCLIP's protocol: 5 / 10 / 20 / 50 / 100 % of the train split), drawn as :func:`sample_per_class`.

    Raises:
        InputError: a fraction outside (0, 1], or no labels.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise InputError(f"sample_fraction: fraction must be in (0, 1], got {fraction!r}")
    by_class = _indices_by_class(labels_or_dataset, "sample_fraction")
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for cls in sorted(by_class):
        n = min(len(by_class[cls]), max(1, round(fraction * len(by_class[cls]))))
        picked.extend(int(i) for i in rng.choice(by_class[cls], size=n, replace=False))
    return sorted(picked)


def sample_support(labels_or_dataset: Dataset | Sequence[str | None], size: int | str, seed: int) -> list[int]:
    """A support set by its size spec: ``k`` images per class (int), ``"all"``, or a percentage such as ``"5%"``
    of each class (:func:`sample_fraction`)."""
    if isinstance(size, str) and size.endswith("%"):
        try:
            percent = float(size[:-1])
        except ValueError:
            raise InputError(f"support size {size!r} is not a percentage such as '5%'") from None
        return sample_fraction(labels_or_dataset, percent / 100, seed)
    return sample_per_class(labels_or_dataset, size, seed)


def _has_roi(data: Dataset | Sequence[Sample], index: int, structure: str | None) -> bool:
    if isinstance(data, Dataset):
        mask = data.mask(index, structure)  # reads only that mask file
        return mask is not None and bool(mask.any())
    sample = data[index]
    if structure is None:
        return bool(sample.mask().any())
    return structure in sample.masks and bool(sample.masks[structure].any())


def sample_references(dataset: Dataset | Sequence[Sample], k: int, seed: int,
                      structure: str | None = None) -> list[int]:
    """Pick ``k`` reference indices uniformly among the samples whose ``structure`` mask is non-empty.

    The indices are visited in a ``default_rng(seed)`` permutation and the first ``k`` with a non-empty mask
    are kept: a uniform draw among the eligible samples that usually reads only about ``k`` mask files.

    Args:
        dataset: a Dataset (only mask files are read) or a sequence of Samples.
        k: number of references (1 for one-shot methods).
        seed: run seed.
        structure: which mask must be non-empty; None when the dataset has a single structure.

    Returns:
        Sorted indices.

    Raises:
        InputError: fewer than ``k`` samples with a non-empty mask, unknown structure, bad k.

    Example:
        >>> train = load_dataset("jsrt").split("train")
        >>> reference = train[sample_references(train, 1, seed=0, structure="heart")[0]]
    """
    k = _check_count(k, "sample_references")
    if isinstance(dataset, Dataset):
        structure = dataset.resolve_structure(structure)  # validates the name before any file is read
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for index in rng.permutation(len(dataset)):
        if _has_roi(dataset, int(index), structure):
            picked.append(int(index))
            if len(picked) == k:
                return sorted(picked)
    name = f" {structure!r}" if structure else ""
    raise InputError(f"sample_references: only {len(picked)} of {len(dataset)} samples have a non-empty{name} "
                     f"mask; cannot draw k={k} references")
