"""Supervised-segmentation benchmark for the conceptual-text segmenters (methods.md §4.5, §6).

Protocol: for each label budget (fraction of the train split, seeded subset) and seed, every method is fitted on
the same training samples and segments the whole test split; Dice, IoU and HD95 are computed per image at the
original resolution. ``concept_text`` is fitted once and scored twice: as the text-free student and, with the
oracle attribute text of each test ROI, as ``concept_text_teacher``.

Records: one per method x budget x metric; mean over test images (and seeds) with a bootstrap 95 % CI over
images for one seed, a t-interval over seeds for several; fit seconds, seconds per image, trainable parameters.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from .. import metrics
from ..data import load_dataset
from ..errors import InputError
from ..methods import load_method
from ..types import Sample
from .records import make_record

# dataset -> (structure name used by the segmenter, masks whose union it is, sentence keyword, class-name prompt)
SEG_TASKS: dict[str, dict[str, Any]] = {
    "kvasir_polyp": dict(dataset="kvasir_seg", structure="polyp", parts=("polyp",), keyword="polyp area",
                         class_prompt="a polyp"),
    "busbra_lesion": dict(dataset="busbra", structure="lesion", parts=("lesion",), keyword="tumor area",
                          class_prompt="a breast lesion"),
    "jsrt_lungs": dict(dataset="jsrt", structure="lungs", parts=("left_lung", "right_lung"), keyword="lung area",
                       class_prompt="the lungs"),
    "jsrt_heart": dict(dataset="jsrt", structure="heart", parts=("heart",), keyword="heart area",
                       class_prompt="the heart"),
}


def task_samples(samples: Sequence[Sample], structure: str, parts: Sequence[str]) -> list[Sample]:
    """Samples whose only mask is ``structure`` = the union of ``parts`` (e.g. JSRT lungs = left + right)."""
    out = []
    for s in samples:
        if missing := [p for p in parts if p not in s.masks]:
            raise InputError(f"sample {s.id!r} has no mask {missing}")
        union = np.logical_or.reduce([np.asarray(s.masks[p], bool) for p in parts])
        out.append(Sample(s.id, s.image, {structure: union}, s.label, s.meta))
    return out


def label_subset(n: int, fraction: float, seed: int) -> list[int]:
    """Seeded subset of ``round(fraction * n)`` (at least 2) train indices, sorted."""
    if not 0 < fraction <= 1:
        raise InputError(f"label fraction must be in (0, 1], got {fraction}")
    k = max(2, round(fraction * n))
    return sorted(np.random.default_rng(seed).choice(n, size=min(k, n), replace=False).tolist())


def run_concept_bench(
    methods: Sequence[str],
    task: str,
    fractions: Sequence[float] = (1.0,),
    seeds: int = 1,
    root: str | None = None,
    backbone: str = "litemedsam",
    cache_dir: str | None = None,
    config: dict[str, Any] | None = None,
    limit: int | None = None,
    command: str = "",
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Fit and score ``methods`` ("concept_text" also yields "concept_text_teacher") on one :data:`SEG_TASKS` task.

    Args:
        limit: score the first ``limit`` test images only (development; the default is the whole split).
        config: method config shared by every method (e.g. ``max_steps``).
    """
    spec = SEG_TASKS[task]
    data = load_dataset(spec["dataset"], root=root)
    train_all = task_samples([s for s in data.split("train")], spec["structure"], spec["parts"])
    test_split = data.split("test")
    n_test = len(test_split) if limit is None else min(limit, len(test_split))
    test = task_samples([test_split[i] for i in range(n_test)], spec["structure"], spec["parts"])
    base = {"structure": spec["structure"], "keyword": spec["keyword"], "class_prompt": spec["class_prompt"],
            "cache_dir": cache_dir, **(config or {})}
    records = []
    for fraction in fractions:
        per_method: dict[str, dict[str, list]] = {}
        info: dict[str, dict[str, Any]] = {}
        for seed in range(seeds):
            train = [train_all[i] for i in label_subset(len(train_all), fraction, seed)]
            for name in methods:
                method = load_method(name, backbone=backbone, seed=seed, **base)
                method.fit(train)
                scored = [(name, method)] + ([("concept_text_teacher", method.as_teacher())]
                                             if name == "concept_text" else [])
                for label, m in scored:
                    start = time.perf_counter()
                    rows = [metrics.segmentation_scores(m.predict(s.image, source=s.id,
                                                                  **m.prompts_from_truth(s)).mask,
                                                        s.masks[spec["structure"]]) for s in test]
                    sec = (time.perf_counter() - start) / len(test)
                    slot = per_method.setdefault(label, {"rows": [], "fit": [], "sec": []})
                    slot["rows"].append(rows)
                    slot["fit"].append(method.fit_seconds)
                    slot["sec"].append(sec)
                    trainable = sum(p.numel() for p in method.model.parameters() if p.requires_grad)
                    info[label] = {"setting": m.setting(), "trainable_params": trainable}
                    log(f"{label} {task} {fraction:.0%} seed {seed}: fit {method.fit_seconds:.0f} s, "
                        f"Dice {np.mean([r['dice'] for r in rows]):.3f}, {sec:.2f} s/image")
        for label, slot in per_method.items():
            for metric in ("dice", "iou", "hd95"):
                per_seed = [np.array([r[metric] for r in rows], float) for rows in slot["rows"]]
                summary = (metrics.summarize(per_seed[0]) if len(per_seed) == 1
                           else metrics.summarize([v.mean() for v in per_seed], ci="t"))
                setting = {k: v for k, v in info[label]["setting"].items() if k != "seed"}
                records.append(make_record(
                    method=label, backbone=backbone, dataset=spec["dataset"], structure=spec["structure"],
                    task="segmentation", setting={**setting, "label_fraction": fraction, "seeds": seeds,
                                                  "train_images": len(label_subset(len(train_all), fraction, 0))},
                    metric=metric, summary=summary, seconds_per_image=float(np.mean(slot["sec"])), command=command,
                    extra={"fit_seconds": round(float(np.mean(slot["fit"])), 1),
                           "trainable_params": info[label]["trainable_params"], "test_images": len(test),
                           "ci": "bootstrap over images" if seeds == 1 else "t over seeds",
                           "empty_predictions": int(sum(r["dice"] == 0 for rows in slot["rows"] for r in rows)),
                           # per-image values of seed 0, in test order: paired tests between methods (§6.4)
                           "per_image": [round(float(v), 4) for v in per_seed[0]]}))
    return records
