"""Train/test splits for benchmarks, named so that every result records which split it was measured on.

A *split spec* is one of (``roiprompt bench --split SPEC``, ``resolve_split(dataset, SPEC)``):

``official``
    The dataset's own ``train`` / ``test`` splits (Kvasir-SEG MedVLSM, BUS-BRA fold 1, JSRT). The default
    wherever the dataset has them.
``validation``
    The dataset's own ``train`` / ``val`` splits (BUS-BRA fold 1's validation part): the test part is the
    validation split, for choosing defaults without looking at test images.
``seed:N`` (also ``seed:N,test=F``)
    A seeded split of the whole dataset, :data:`DEFAULT_TEST_FRACTION` (30 %) of the images to test unless
    ``test=F`` says otherwise; stratified by label and grouped by patient (see :func:`seeded_split`). The
    default, ``seed:0``, for a dataset without official splits (your ``folder``).
``file:PATH`` (or ``split_file=PATH``, ``--split-file PATH``)
    A CSV with the columns ``id,split`` (header required; ``split`` is ``train``, ``test`` or ``val``; ``val``
    rows and ids the file does not list are in neither part).

:func:`resolve_split` returns a :class:`Split` whose :attr:`Split.name` goes into every benchmark record as
``"split"``: ``"official"``, the canonical seed spec (``"seed:0"``, ``"seed:0,test=0.5"``) or
``"file:PATH#sha256=<first 12 hex digits of the file's SHA-256>"``, with the part sizes as ``"split_sizes"``.

Groups (patients): a sample's group is ``record.meta["group"]``, set by its reader: the patient (``case``) for
BUS-BRA, the ``group`` column of ``labels.csv`` (``id,label,group`` with that header) for a ``folder`` dataset.
Samples without a group are their own group. A seeded split never puts one group's images in both parts, and a split
file that does is refused.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .datasets import Dataset

__all__ = ["DEFAULT_TEST_FRACTION", "Split", "groups_of", "parse_split", "read_split_file", "resolve_split",
           "seeded_split"]

#: Fraction of the images a ``seed:N`` split puts in the test part (70/30 train/test).
DEFAULT_TEST_FRACTION = 0.3
_SEED = re.compile(r"^seed:(-?\d+)(?:,test=([0-9]*\.?[0-9]+))?$")


@dataclass(frozen=True)
class Split:
    """A train/test split of one dataset and the name that records it.

    Attributes:
        train: the reference / support / training pool.
        test: the evaluated images (targets).
        name: what benchmark records store as ``"split"`` (see the module docstring).
        grouped: whether the samples had groups (patients) that the split kept apart.
        spec: the parsed spec (``{"kind": "official" | "seed" | "file", ...}``).
    """

    train: Dataset
    test: Dataset
    name: str
    grouped: bool = False
    spec: dict[str, Any] = field(default_factory=dict)

    def record_fields(self) -> dict[str, Any]:
        """The fields a benchmark record gains: ``split`` and ``split_sizes``."""
        return {"split": self.name, "split_sizes": {"train": len(self.train), "test": len(self.test)}}


def parse_split(spec: str) -> dict[str, Any]:
    """``"official"`` / ``"validation"`` / ``"seed:N[,test=F]"`` / ``"file:PATH"`` -> ``{"kind": ..., ...}``;
    InputError otherwise.

    Example:
        >>> parse_split("seed:3,test=0.5")
        {'kind': 'seed', 'seed': 3, 'test_fraction': 0.5}
    """
    spec = str(spec).strip()
    if spec in ("official", "validation"):
        return {"kind": spec}
    if spec.startswith("file:") and len(spec) > 5:
        return {"kind": "file", "path": spec[5:]}
    if m := _SEED.match(spec):
        fraction = float(m.group(2)) if m.group(2) is not None else DEFAULT_TEST_FRACTION
        if not 0 < fraction < 1:
            raise InputError(f"split {spec!r}: the test fraction must be in (0, 1), got {fraction}")
        return {"kind": "seed", "seed": int(m.group(1)), "test_fraction": fraction}
    raise InputError(f"unknown split {spec!r}; use 'official', 'validation', 'seed:N' (e.g. seed:0, seed:0,test=0.5) or "
                     "'file:PATH' (a CSV with columns id,split)")


def _seed_name(seed: int, fraction: float) -> str:
    return f"seed:{seed}" if fraction == DEFAULT_TEST_FRACTION else f"seed:{seed},test={fraction:g}"


def groups_of(dataset: Dataset) -> list[str] | None:
    """One group (patient) per sample, or None when the dataset has no groups (see the module docstring).

    Samples without a group get their own (``"id:<id>"``), so they can fall on either side alone.
    """
    from_meta = {r.id: str(r.meta["group"]) for r in dataset.records if r.meta.get("group") is not None}
    if not (found := from_meta):
        return None
    return [found.get(r.id, f"id:{r.id}") for r in dataset.records]


def seeded_split(labels: list[str | None], seed: int, test_fraction: float = DEFAULT_TEST_FRACTION,
                 groups: list[str] | None = None) -> tuple[list[int], list[int]]:
    """Seeded train/test indices, stratified by label and grouped by patient.

    Each group (a patient; without ``groups`` every sample is its own group) takes the most common label of
    its samples (ties: the first in sorted order; unlabelled samples form their own stratum). Within each
    stratum, visited in sorted order, the groups (sorted by name) are permuted by one
    ``numpy.random.default_rng(seed)`` and go to the test part in that order until it holds
    ``t = floor(test_fraction * n + 0.5)`` of the stratum's ``n`` images (a group that would overshoot ``t`` by
    as much as or more than it is still missing is passed over, except the first); a stratum of two or more groups
    keeps at least one group in train. Without groups every stratum gets exactly ``t`` test images. So each class
    keeps about its share on both sides, and one patient's images are never in both the train (reference /
    support) pool and the test targets.

    Returns:
        (train indices, test indices), each sorted.
    """
    if not 0 < test_fraction < 1:
        raise InputError(f"test fraction must be in (0, 1), got {test_fraction}")
    groups = list(groups) if groups is not None else [f"#{i}" for i in range(len(labels))]
    if len(groups) != len(labels):
        raise InputError(f"{len(groups)} groups for {len(labels)} labels")
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    strata: dict[str, list[str]] = {}
    for g in sorted(members):
        counts = Counter("" if labels[i] is None else f"={labels[i]}" for i in members[g])
        top = max(counts.values())
        strata.setdefault(min(k for k, v in counts.items() if v == top), []).append(g)
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for stratum in sorted(strata):
        gs = strata[stratum]
        n = sum(len(members[g]) for g in gs)
        target = int(np.floor(test_fraction * n + 0.5))
        picked: list[str] = []
        count = 0
        for j in rng.permutation(len(gs)):
            if count >= target:
                break
            size = len(members[gs[int(j)]])
            if count == 0 or count + size - target < target - count:  # a group that overshoots less than it fills
                picked.append(gs[int(j)])
                count += size
        if len(picked) == len(gs) and len(gs) > 1:
            picked.pop()  # big groups overshot: one group stays in train
        test.extend(i for g in picked for i in members[g])
    test_set = set(test)
    return [i for i in range(len(labels)) if i not in test_set], sorted(test_set)


def read_split_file(path: str | Path) -> tuple[dict[str, str], str]:
    """``({id: "train" | "test" | "val"}, sha256 hex)`` from a CSV with the header ``id,split``."""
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(f"split file {path}: cannot read it ({err.strerror or err})") from err
    rows = [[c.strip() for c in row] for row in csv.reader(raw.decode("utf-8-sig").splitlines())
            if any(c.strip() for c in row)]
    header = [c.lower() for c in rows[0]] if rows else []
    if "id" not in header or "split" not in header:
        raise InputError(f"split file {path}: needs a header with the columns id,split; got {rows[:1]}")
    i, s = header.index("id"), header.index("split")
    out: dict[str, str] = {}
    for n, row in enumerate(rows[1:], start=2):
        if len(row) <= max(i, s) or not row[i]:
            raise InputError(f"split file {path}: row {n} has no id or split: {row}")
        value = row[s].lower()
        if value not in ("train", "test", "val"):
            raise InputError(f"split file {path}: row {n}: split {row[s]!r} is not train, test or val")
        if row[i] in out:
            raise InputError(f"split file {path}: id {row[i]!r} appears twice")
        out[row[i]] = value
    return out, hashlib.sha256(raw).hexdigest()


def resolve_split(dataset: Dataset, split: str | None = None, split_file: str | Path | None = None) -> Split:
    """The train/test :class:`Split` of ``dataset`` named by ``split`` / ``split_file`` (module docstring).

    Args:
        dataset: any :class:`Dataset`, e.g. ``load_dataset("folder", root=DIR)``.
        split: a split spec; None = ``"official"`` when the dataset has ``train`` and ``test`` splits, else
            ``"seed:0"`` (70/30 train/test, stratified by label, grouped by patient).
        split_file: a CSV of ``id,split`` (the same as ``split="file:PATH"``).

    Raises:
        InputError: a bad spec, ``official`` for a dataset without splits, a split file naming unknown ids or
            putting one group on both sides, or an empty train or test part.
    """
    if split_file is not None:
        if split not in (None, f"file:{split_file}"):
            raise InputError(f"give either a split ({split!r}) or a split file ({split_file}), not both")
        split = f"file:{split_file}"
    has_official = {"train", "test"} <= set(dataset.splits)
    spec = parse_split(split if split is not None else ("official" if has_official else "seed:0"))
    groups = groups_of(dataset)
    if spec["kind"] == "official":
        if not has_official:
            raise InputError(f"dataset {dataset.name!r} has no official train/test split; use --split seed:0 "
                             "or --split-file FILE")
        result = Split(dataset.split("train"), dataset.split("test"), "official", groups is not None, spec)
    elif spec["kind"] == "validation":
        if not {"train", "val"} <= set(dataset.splits):
            raise InputError(f"dataset {dataset.name!r} has no official validation split (its splits: "
                             f"{sorted(dataset.splits)}); use --split seed:0 or --split-file FILE")
        result = Split(dataset.split("train"), dataset.split("val"), "validation", groups is not None, spec)
    elif spec["kind"] == "seed":
        train, test = seeded_split(dataset.labels, spec["seed"], spec["test_fraction"], groups)
        result = Split(dataset.subset(train), dataset.subset(test), _seed_name(spec["seed"], spec["test_fraction"]),
                       groups is not None, spec)
    else:
        table, digest = read_split_file(spec["path"])
        if unknown := sorted(set(table) - set(dataset.ids)):
            raise InputError(f"split file {spec['path']}: {len(unknown)} id(s) not in dataset {dataset.name!r}: "
                             f"{unknown[:5]}")
        part = [table.get(i) for i in dataset.ids]
        if groups is not None:
            sides: dict[str, set[str]] = {}
            for g, p in zip(groups, part):
                if p in ("train", "test"):
                    sides.setdefault(g, set()).add(p)
            if leaks := sorted(g for g, s in sides.items() if len(s) == 2):
                raise InputError(f"split file {spec['path']}: group(s) {leaks[:5]} have images in both train and "
                                 "test; keep each patient on one side")
        result = Split(dataset.subset(i for i, p in enumerate(part) if p == "train"),
                       dataset.subset(i for i, p in enumerate(part) if p == "test"),
                       f"file:{spec['path']}#sha256={digest[:12]}", groups is not None, {**spec, "sha256": digest})
    if not len(result.train) or not len(result.test):
        raise InputError(f"split {result.name!r} of dataset {dataset.name!r} leaves {len(result.train)} train and "
                         f"{len(result.test)} test images; both need at least one")
    return result
