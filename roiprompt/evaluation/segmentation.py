"""Prompted-segmentation benchmark (task ``segmentation``, e.g. ``box_prompt``): per-image metrics, CIs, time
and memory.

Protocol: every image of the dataset (``split="all"``, the default: what the committed ``box_prompt`` rows
measured), or the test part of a split (:func:`~roiprompt.data.splits.resolve_split`) when one is asked for;
each image is prompted from its ground truth (:meth:`~roiprompt.methods.base.Method.prompts_from_truth`) once
per structure. A method that trains (``method_info(name).trains``) is fitted on the split's train part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .. import metrics
from ..data import load_dataset
from ..data.splits import resolve_split
from ..errors import InputError, RoiPromptError
from ..methods import load_method, method_info
from ..types import Sample
from .records import make_record


@dataclass
class SegmentationRun:
    """Per-image results of one method on one dataset (all structures asked for)."""

    method: str
    backbone: str
    dataset: str
    setting: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per image x structure
    seconds: float = 0.0
    images: int = 0
    failures: list[str] = field(default_factory=list)
    split: dict[str, Any] = field(default_factory=lambda: {"split": "all"})  # record fields naming the split

    def records(self, command: str) -> list[dict[str, Any]]:
        """Benchmark records (one per structure x metric) with bootstrap 95 % CIs over images.

        Every record names the split (``"split"``: "all", "official", "seed:0", ...) and, when images failed,
        their count (``"failures"``) and ``"failed"`` ("id: reason" per image).
        """
        out = []
        sec = self.seconds / max(self.images, 1)
        extra = {**self.split, **({"failures": len(self.failures), "failed": list(self.failures)}
                                  if self.failures else {})}
        for structure in sorted({r["structure"] for r in self.rows}):
            rows = [r for r in self.rows if r["structure"] == structure]
            for metric in ("dice", "iou", "hd95"):
                values = np.array([r[metric] for r in rows], dtype=float)
                out.append(make_record(
                    method=self.method, backbone=self.backbone, dataset=self.dataset, structure=structure,
                    task="segmentation", setting=self.setting, metric=metric, summary=metrics.summarize(values),
                    seconds_per_image=sec, command=command, extra=extra))
        return out


def run_segmentation_bench(
    method_name: str,
    dataset: str,
    structures: Sequence[str] | None = None,
    limit: int | None = None,
    root: str | None = None,
    backbone: str = "litemedsam",
    progress: Callable[[int, int], None] | None = None,
    split: str | None = None,
    split_file: str | None = None,
    **config: Any,
) -> SegmentationRun:
    """Run an oracle-prompted or training-free segmentation method over a dataset.

    Every image is encoded once and all its structures are segmented from that embedding. Metrics are computed
    at the original resolution (methods.md §0.1). A sample that fails to load or predict is recorded in
    ``failures`` and skipped, never silently dropped.

    Args:
        method_name: registry name, e.g. "box_prompt".
        dataset: dataset name ("kvasir_seg", "busbra", "jsrt", or "folder" with ``root``).
        structures: structures to evaluate (default: all the dataset has).
        limit: evaluate the first ``limit`` images only (sorted ids; deterministic).
        progress: callback ``(done, total)``.
        split, split_file: evaluate the test part of this split (:func:`~roiprompt.data.splits.resolve_split`)
            instead of every image; a method that trains needs one (its train part is the training data).
    """
    data = load_dataset(dataset, root=root)
    structures = list(structures or data.structures)
    if unknown := [s for s in structures if s not in data.structures]:
        raise RoiPromptError(f"dataset {dataset!r} has no structure {unknown}; it has {list(data.structures)}")
    trains = method_info(method_name).trains
    support: list[Sample] = []
    split_fields: dict[str, Any] = {"split": "all"}
    if split is not None or split_file is not None or trains:
        data_split = resolve_split(data, split, split_file)
        data, split_fields = data_split.test, data_split.record_fields()
        if trains:
            support = list(data_split.train)
    method = load_method(method_name, backbone=backbone, **config)
    method.fit(support)
    n = len(data) if limit is None else min(limit, len(data))
    run = SegmentationRun(method_name, backbone, dataset, setting=method.setting(), split=split_fields)
    start = time.perf_counter()
    for i in range(n):
        try:
            sample: Sample = data[i]
            rows = []
            for structure in structures:
                target = sample.masks.get(structure)
                if target is None or not target.any():
                    continue  # no ground truth to prompt from or score against; reflected in the count n
                pred = method.predict(sample.image, source=sample.meta.get("path", sample.id),
                                      **method.prompts_from_truth(sample, structure))
                scores = metrics.segmentation_scores(pred.mask, target)
                rows.append({"id": sample.id, "structure": structure, **scores,
                             "iou_pred": float(pred.scores.get("iou_pred", np.nan))})
            run.rows.extend(rows)  # all of an image's structures, or none of them when one failed
            run.images += 1
        except RoiPromptError as err:
            run.failures.append(f"{data.ids[i]}: {err}")
        if progress:
            progress(i + 1, n)
    run.seconds = time.perf_counter() - start
    return run


def bench_segmentation(
    method: str,
    dataset: str,
    *,
    root: str | None = None,
    backbone: str = "litemedsam",
    structures: Sequence[str] | None = None,
    limit: int | None = None,
    seeds: int = 1,
    split: str | None = None,
    split_file: str | None = None,
    cache_dir: str | None = None,
    config: dict[str, Any] | None = None,
    command: str = "",
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The ``segmentation`` runner of :data:`~roiprompt.evaluation.RUNNERS`: :func:`run_segmentation_bench` as
    records. ``seeds`` is accepted for a uniform interface; a method prompted by the ground truth is
    deterministic, so it only earns a note."""
    if seeds != 1:
        log(f"note: {method} is deterministic given ground-truth prompts; seeds={seeds} has no effect")
    config = {**({"cache_dir": cache_dir} if cache_dir else {}), **(config or {})}
    if "backbone" in config:
        raise InputError("give the backbone as backbone=..., not in config")
    run = run_segmentation_bench(method, dataset, structures=structures, limit=limit, root=root, backbone=backbone,
                                 progress=progress, split=split, split_file=split_file, **config)
    if run.failures:
        log(f"{len(run.failures)} image(s) failed: " + "; ".join(run.failures[:10]))
    return run.records(command=command)
