"""Segmentation benchmark runner behind ``roiprompt bench``: per-image metrics, CIs, time and memory."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .. import metrics
from ..data import load_dataset
from ..errors import RoiPromptError
from ..methods import load_method
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

    def records(self, command: str) -> list[dict[str, Any]]:
        """Benchmark records (one per structure x metric) with bootstrap 95 % CIs over images."""
        out = []
        sec = self.seconds / max(self.images, 1)
        for structure in sorted({r["structure"] for r in self.rows}):
            rows = [r for r in self.rows if r["structure"] == structure]
            for metric in ("dice", "iou", "hd95"):
                values = np.array([r[metric] for r in rows], dtype=float)
                out.append(make_record(
                    method=self.method, backbone=self.backbone, dataset=self.dataset, structure=structure,
                    task="segmentation", setting=self.setting, metric=metric, summary=metrics.summarize(values),
                    seconds_per_image=sec, command=command,
                    extra={"failures": len(self.failures)} if self.failures else None))
        return out


def run_segmentation_bench(
    method_name: str,
    dataset: str,
    structures: Sequence[str] | None = None,
    limit: int | None = None,
    root: str | None = None,
    backbone: str = "litemedsam",
    progress: Callable[[int, int], None] | None = None,
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
    """
    data = load_dataset(dataset, root=root)
    structures = list(structures or data.structures)
    if unknown := [s for s in structures if s not in data.structures]:
        raise RoiPromptError(f"dataset {dataset!r} has no structure {unknown}; it has {list(data.structures)}")
    method = load_method(method_name, backbone=backbone, **config)
    method.fit([])
    n = len(data) if limit is None else min(limit, len(data))
    run = SegmentationRun(method_name, backbone, dataset, setting=method.setting())
    start = time.perf_counter()
    for i in range(n):
        try:
            sample: Sample = data[i]
            for structure in structures:
                target = sample.masks.get(structure)
                if target is None or not target.any():
                    continue  # no ground truth to prompt from or score against; reflected in the count n
                pred = method.predict(sample.image, source=sample.meta.get("path", sample.id),
                                      **method.prompts_from_truth(sample, structure))
                scores = metrics.segmentation_scores(pred.mask, target)
                run.rows.append({"id": sample.id, "structure": structure, **scores,
                                 "iou_pred": float(pred.scores.get("iou_pred", np.nan))})
            run.images += 1
        except RoiPromptError as err:
            run.failures.append(f"{data.ids[i]}: {err}")
        if progress:
            progress(i + 1, n)
    run.seconds = time.perf_counter() - start
    return run
