"""Supervised-segmentation benchmark for the conceptual-text segmenters (methods.md §4.5, §6).

Protocol: for each label budget (fraction of the train split, seeded subset) and seed, every method is fitted on
the same training samples and segments the whole test split; Dice, IoU and HD95 are computed per image at the
original resolution. A method whose fitted model also yields its teacher (``as_teacher()``: ``concept_text``) is
fitted once and scored twice: as the text-free student and, with the oracle attribute text of each test ROI, as
that teacher (``concept_text_teacher``); asking for the teacher beside it does not fit it again.

Tasks: the :data:`~roiprompt.evaluation.tasks.SEG_TASKS` of the official datasets, or any dataset's structure
(:func:`~roiprompt.evaluation.tasks.segmentation_task`). The split is the official one where the dataset has it,
else ``seed:0`` (a seeded 70/30 split, grouped by patient); every record names it (``"split"``,
``"split_sizes"``). A test image that cannot be read is left out, counted in ``"failures"``, listed in ``"failed"``.

Records: one per method x budget x metric; mean over test images (and seeds) with a bootstrap 95 % CI over
images for one seed, a t-interval over seeds for several; fit seconds, seconds per image, trainable parameters.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .. import metrics
from ..data import load_dataset
from ..data.splits import resolve_split
from ..errors import InputError, RoiPromptError
from ..methods import load_method
from ..methods.base import Method
from ..types import Sample
from .records import make_record
from .tasks import SEG_TASKS, segmentation_task

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


def derived_methods(method: Method) -> list[Method]:
    """The other methods a fitted ``method`` yields without another fit: its teacher, when it is a student with
    ``as_teacher()`` (``concept_text`` -> ``concept_text_teacher``); none otherwise."""
    as_teacher = getattr(method, "as_teacher", None)
    if as_teacher is None:
        return []
    try:
        return [as_teacher()]
    except InputError:  # not a student (e.g. the teacher itself, or a baseline)
        return []


def run_concept_bench(
    methods: Sequence[str],
    task: str | Mapping[str, Any],
    fractions: Sequence[float] = (1.0,),
    seeds: int = 1,
    root: str | None = None,
    backbone: str = "litemedsam",
    cache_dir: str | None = None,
    config: dict[str, Any] | None = None,
    limit: int | None = None,
    command: str = "",
    log: Callable[[str], None] = print,
    split: str | None = None,
    split_file: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Fit and score ``methods`` on one task; a student also yields its teacher's rows (module doc).

    Args:
        task: a :data:`SEG_TASKS` name, or a task dict of the same form (:func:`segmentation_task`).
        limit: score the first ``limit`` test images only (development; the default is the whole split).
        config: method config shared by every method (e.g. ``max_steps``).
        split, split_file: train / test parts: None = the official split, else ``seed:0``
            (:func:`~roiprompt.data.splits.resolve_split`).
        progress: callback ``(done, total)`` over fractions x seeds x methods.
    """
    spec = SEG_TASKS[task] if isinstance(task, str) else dict(task)
    task_name = task if isinstance(task, str) else f"{spec['dataset']}/{spec['structure']}"
    data = load_dataset(spec["dataset"], root=root)
    data_split = resolve_split(data, split, split_file)
    train_all = task_samples([s for s in data_split.train], spec["structure"], spec["parts"])
    test_split = data_split.test
    n_test = len(test_split) if limit is None else min(limit, len(test_split))
    loaded, failures = [], []
    for i in range(n_test):
        try:
            loaded.append(test_split[i])
        except RoiPromptError as err:  # left out of the scores, counted and listed in every record
            failures.append(f"{test_split.ids[i]}: {err}")
    if failures:
        log(f"{len(failures)} test image(s) failed: " + "; ".join(failures[:10]))
    test = task_samples(loaded, spec["structure"], spec["parts"])
    if not test:
        raise InputError(f"no test image of {spec['dataset']!r} could be read ({len(failures)} failed)")
    text = {k: spec[k] for k in ("keyword", "class_prompt") if spec.get(k) is not None}
    base = {"structure": spec["structure"], **text, "cache_dir": cache_dir, **(config or {})}
    records = []
    total, done = len(fractions) * seeds * len(methods), 0
    for fraction in fractions:
        per_method: dict[str, dict[str, list]] = {}
        info: dict[str, dict[str, Any]] = {}
        for seed in range(seeds):
            train = [train_all[i] for i in label_subset(len(train_all), fraction, seed)]
            scored_this_seed: set[str] = set()
            for name in methods:
                done += 1
                if progress:
                    progress(done - 1, total)
                if name in scored_this_seed:
                    continue  # already scored as a method another fit yields (a student's teacher)
                method = load_method(name, backbone=backbone, seed=seed, **base)
                method.fit(train)
                scored = [(name, method)] + [(type(m).name, m) for m in derived_methods(method)
                                             if type(m).name not in scored_this_seed]
                for label, m in scored:
                    scored_this_seed.add(label)
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
                    log(f"{label} {task_name} {fraction:.0%} seed {seed}: fit {method.fit_seconds:.0f} s, "
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
                           "per_image": [round(float(v), 4) for v in per_seed[0]],
                           **data_split.record_fields(),
                           **({"failures": len(failures), "failed": failures} if failures else {})}))
    if progress:
        progress(total, total)
    return records


def bench_concept(
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
    fractions: Sequence[float] = (1.0,),
) -> list[dict[str, Any]]:
    """The ``text_free_segmentation`` runner of :data:`~roiprompt.evaluation.RUNNERS`: the task of ``dataset``
    and the one structure in ``structures`` (:func:`segmentation_task`) through :func:`run_concept_bench`."""
    if structures is not None and len(structures) > 1:
        tasks = ", ".join(f"{t['dataset']}/{t['structure']}" for t in SEG_TASKS.values())
        raise InputError(f"{method}: one structure per run (got {list(structures)}); a union of masks is a task "
                         f"of its own: {tasks}")
    available = load_dataset(dataset, root=root).structures
    spec = segmentation_task(dataset, structures[0] if structures else None, available)
    return run_concept_bench([method], spec, fractions, seeds=seeds, root=root, backbone=backbone,
                             cache_dir=cache_dir, config=config, limit=limit, command=command, log=log, split=split,
                             split_file=split_file, progress=progress)
