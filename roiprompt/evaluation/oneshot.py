"""One-shot segmentation benchmark behind ``roiprompt bench`` for ``med_persam`` and its baselines.

Protocol (methods.md §6.2-6.4): for each seed a reference is drawn uniformly from the dataset's train split
(every benchmarked structure non-empty); the targets are the test split (the first ``limit`` by sorted id, the
same for every seed and method). The split is the official one where the dataset has it, else ``seed:0`` (a
seeded 70/30 split, stratified by label and grouped by patient: a reference never comes from a target's
patient); ``split`` / ``split_file`` choose another (:func:`~roiprompt.data.splits.resolve_split`), and every
record names it. With ``shots`` = k > 1, seed s draws k references (the first of them is the k = 1 reference).
Each method sets its reference(s) (no unlabeled pool: a target's mask never depends on the other targets), then
segments every target with :meth:`~roiprompt.methods.oneshot.OneShotMethod.predict_many`. Dice is
summarised as the mean over seeds of the per-seed mean with a t-interval over seeds; the per-image bootstrap
interval over all (seed, image) rows is kept in the record too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy import ndimage

from .. import metrics
from ..data import load_dataset, sample_references
from ..data.splits import resolve_split
from ..errors import InputError, RoiPromptError
from ..methods import load_method, method_class
from ..methods.oneshot import OneShotMethod, config_fields
from ..models.backbones.base import load_backbone
from .records import make_record

#: Per-prediction scores whose power to flag failures (Dice < 0.5) is reported as an AUROC.
FLAG_SCORES = ("quality", "iou_pred", "warp_agreement")


@dataclass
class OneShotRun:
    """Per-(seed, image, structure) results of one one-shot method on one dataset."""

    method: str
    backbone: str
    dataset: str
    setting: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    reference_seconds: list[float] = field(default_factory=list)  # one per seed
    target_seconds: list[float] = field(default_factory=list)  # per target image, one per seed
    references: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    split: dict[str, Any] = field(default_factory=dict)  # record fields naming the split ("split", "split_sizes")
    shots: int = 1

    def records(self, command: str) -> list[dict[str, Any]]:
        """Records per structure: dice / iou / hd95 (t-interval over seeds) and flag AUROCs (pooled rows)."""
        out = []
        sec = float(np.mean(self.target_seconds)) if self.target_seconds else float("nan")
        common = {"seconds_set_reference": round(float(np.mean(self.reference_seconds)), 2),
                  "references": self.references, "seeds": len(self.references),
                  "targets_per_seed": len({r["id"] for r in self.rows}), "components_median": float(np.median([r["components"] for r in self.rows])) if self.rows else 0.0,
                  **self.split}
        if self.failures:
            common["failures"] = len(self.failures)
            common["failed"] = list(self.failures)
        for structure in sorted({r["structure"] for r in self.rows}):
            rows = [r for r in self.rows if r["structure"] == structure]
            seeds = sorted({r["seed"] for r in rows})
            for metric in ("dice", "iou", "hd95"):
                per_seed = [np.nanmean([r[metric] for r in rows if r["seed"] == s]) for s in seeds]
                pooled = metrics.summarize(np.array([r[metric] for r in rows], dtype=float))
                summary = metrics.summarize(np.array(per_seed), ci="t")
                out.append(make_record(
                    method=self.method, backbone=self.backbone, dataset=self.dataset, structure=structure,
                    task="oneshot", setting={**self.setting, "shots": self.shots, "seeds": len(seeds)}, metric=metric,
                    summary=summary, seconds_per_image=sec, command=command,
                    extra={**common, "ci": "t over seeds", "seed_means": [round(float(v), 4) for v in per_seed],
                           "images": pooled["n"], "image_ci95": pooled["ci95"]}))
            dice = np.array([r["dice"] for r in rows])
            for score in FLAG_SCORES:
                quality = np.array([r[score] for r in rows], dtype=float)
                if np.isnan(quality).all():
                    continue
                auc = metrics.flag_auroc(quality, dice)
                out.append(make_record(
                    method=self.method, backbone=self.backbone, dataset=self.dataset, structure=structure,
                    task="oneshot", setting={**self.setting, "shots": self.shots, "seeds": len(seeds)},
                    metric=f"flag_auroc_{score}", summary={"mean": auc, "ci95": [np.nan, np.nan], "n": len(rows)},
                    seconds_per_image=sec, command=command,
                    extra={**common, "failures_dice_lt_0.5": int((dice < 0.5).sum())}))
        return out


def run_oneshot_bench(
    method_name: str,
    dataset: str,
    structures: Sequence[str] | None = None,
    seeds: int = 5,
    limit: int | None = None,
    root: str | None = None,
    backbone: str = "litemedsam",
    progress: Callable[[int, int], None] | None = None,
    split: str | None = None,
    split_file: str | None = None,
    shots: int = 1,
    **config: Any,
) -> OneShotRun:
    """Benchmark a one-shot method: ``seeds`` references from the train split, targets from the test split.

    Args:
        method_name: a :class:`OneShotMethod` name ("med_persam", "persam", "persam_f", "registration").
        dataset: "jsrt", "kvasir_seg", "busbra", or "folder" with ``root`` (any dataset: see ``split``).
        structures: structures segmented at once (default: all the dataset has).
        seeds: references drawn, seeds 0 .. seeds-1.
        limit: first ``limit`` test images (sorted ids) as targets.
        progress: callback ``(done, total)`` over seeds x targets.
        shots: k, the references per seed (k-shot).
        split, split_file: the reference pool (train) and targets (test): None = the official split, else
            ``seed:0`` (:func:`~roiprompt.data.splits.resolve_split`; grouped by patient when the dataset has
            groups, so no reference shares a patient with a target).
        **config: method config (``cache_dir`` strongly advised: targets are encoded once per run otherwise).
    """
    data = load_dataset(dataset, root=root)
    structures = list(structures or data.structures)
    if unknown := [s for s in structures if s not in data.structures]:
        raise RoiPromptError(f"dataset {dataset!r} has no structure {unknown}; it has {list(data.structures)}")
    data_split = resolve_split(data, split, split_file)
    train, test = data_split.train, data_split.test
    n = len(test) if limit is None else min(limit, len(test))
    run = OneShotRun(method_name, backbone, dataset, setting={}, split=data_split.record_fields(), shots=shots)
    images, samples = [], []
    for i in range(n):
        try:
            sample = test[i]
            images.append(sample.image)
            samples.append(sample)
        except RoiPromptError as err:
            run.failures.append(f"{test.ids[i]}: {err}")
    model = load_backbone(backbone, weights=config.get("weights"))  # one backbone for every seed
    for seed in range(seeds):
        method = load_method(method_name, backbone=model, **_seeded(method_name, seed, config))
        # seeded draw; the k = 1 reference is the draw's first, so k-shot sets grow with k
        picks = _ordered_references(train, shots, seed, structures[0])
        references = [train[i] for i in picks]
        for reference in references:
            if missing := [s for s in structures if not reference.masks.get(s, np.zeros(1)).any()]:
                raise InputError(f"reference {reference.id} has empty {missing}; pick structures it has")
        start = time.perf_counter()
        method.set_reference([(r.image, {s: r.masks[s] for s in structures}) for r in references],
                             source=[str(r.meta.get("path", r.id)) for r in references])
        run.reference_seconds.append((time.perf_counter() - start) / len(references))
        run.references.append(",".join(r.id for r in references))
        run.setting = {k: v for k, v in method.setting().items() if k != "seed"}  # seeds are listed apart
        done = seed * len(images)

        def tick(k: int, total: int, done: int = done) -> None:
            if progress:
                progress(done + round(k * len(images) / max(total, 1)), seeds * len(images))

        start = time.perf_counter()
        preds = method.predict_many(images, [str(s.meta.get("path", s.id)) for s in samples], tick)
        run.target_seconds.append((time.perf_counter() - start) / max(len(images), 1))
        for sample, pred in zip(samples, preds):
            for s in structures:
                truth = sample.masks.get(s)
                if truth is None or not truth.any():
                    continue
                p = pred[s]
                run.rows.append({"seed": seed, "reference": run.references[-1], "id": sample.id, "structure": s,
                                 **metrics.segmentation_scores(p.mask, truth),
                                 **{k: float(p.scores.get(k, np.nan)) for k in FLAG_SCORES},
                                 "components": _components(p.mask)})
    return run


def bench_oneshot(
    method: str,
    dataset: str,
    *,
    root: str | None = None,
    backbone: str = "litemedsam",
    structures: Sequence[str] | None = None,
    limit: int | None = None,
    seeds: int = 5,
    split: str | None = None,
    split_file: str | None = None,
    cache_dir: str | None = None,
    shots: int | Sequence[int] | None = None,
    config: dict[str, Any] | None = None,
    command: str = "",
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The ``oneshot`` runner of :data:`~roiprompt.evaluation.RUNNERS`: :func:`run_oneshot_bench` as records,
    once per k in ``shots`` (references per seed; default 1)."""
    config = {**({"cache_dir": cache_dir} if cache_dir else {}), **(config or {})}
    if "backbone" in config:
        raise InputError("give the backbone as backbone=..., not in config")
    records = []
    for k in ([shots] if isinstance(shots, int) else list(shots or [1])):
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InputError(f"one-shot benchmarks take shots as references per seed (integers >= 1), got {k!r}")
        run = run_oneshot_bench(method, dataset, structures=structures, seeds=seeds, limit=limit, root=root,
                                backbone=backbone, progress=progress, split=split, split_file=split_file, shots=k,
                                **config)
        if run.failures:
            log(f"{len(run.failures)} image(s) failed: " + "; ".join(run.failures[:10]))
        records += run.records(command=command)
    return records


def _ordered_references(train: Any, k: int, seed: int, structure: str) -> list[int]:
    """``k`` reference indices in the seed's draw order (sample_references sorts them; the first drawn is the
    k = 1 reference, so k-shot sets are nested)."""
    first = sample_references(train, 1, seed, structure=structure)[0]
    rest = [i for i in sample_references(train, k, seed, structure=structure) if i != first] if k > 1 else []
    return [first, *rest[: k - 1]]


def _components(mask: np.ndarray) -> int:
    """Number of 8-connected foreground pieces of a mask (speckle shows as many)."""
    return int(ndimage.label(mask, structure=np.ones((3, 3)))[1])


def _seeded(method_name: str, seed: int, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` plus ``seed`` for the methods whose config has one (the warping fit is seeded)."""
    if not issubclass(method_class(method_name), OneShotMethod):
        raise InputError(f"{method_name!r} is not a one-shot method; use run_segmentation_bench")
    return {**config, "seed": seed} if "seed" in config_fields(method_name) else dict(config)
