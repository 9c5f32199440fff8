"""Few-shot classification benchmark for SegPrompt and its baselines (methods.md §2.5, §6.2-6.4).

Protocol: for each training size (K images per class, "all", or a percentage of each class such as "5%":
MedFocusCLIP's fraction protocol) and seed, the support set is drawn stratified from the train split with
:func:`~roiprompt.data.sample_support` (the same sets for every method); each method
is fitted on it and classifies the whole test split. Test-time ROI masks come from several *mask sources*:

* ``gt``: the ground truth (union of the task's structures);
* ``gt_eroded`` / ``gt_dilated``: the ground truth eroded / dilated by 5 % of the object's equivalent diameter;
* ``box_prompt``: LiteMedSAM prompted with the ground-truth box (a clinician's box, not a mask);
* ``med_persam``: Med-PerSAM from one train reference (seed 0) - no test-time annotation at all.

The train / test split is the official one where the dataset has it, else ``seed:0`` (a seeded 70/30 split,
stratified by label and grouped by patient); ``split`` / ``split_file`` choose another
(:func:`~roiprompt.data.splits.resolve_split`) and every record names it (``"split"``, ``"split_sizes"``). A test
image that cannot be read is left out, counted in ``"failures"`` and listed in ``"failed"``.

Metrics per (method, K, mask source): accuracy, balanced accuracy, macro-F1, AUROC as the mean over seeds with a
t-interval over seeds; fit seconds, test seconds per image (tokens cached), trainable parameters.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy import ndimage

from .. import metrics
from ..data import load_dataset, sample_references, sample_support
from ..data.splits import resolve_split
from ..errors import InputError, RoiPromptError
from ..methods import load_method
from ..methods.classification.base import ClassifierMethod
from ..methods.classification.features import roi_mask
from ..models.backbones.base import Backbone, load_backbone
from ..types import Sample
from .records import make_record
from ..methods.oneshot import DEFAULT_ONESHOT_METHOD
from .tasks import MASK_SOURCES

SCORES = ("accuracy", "balanced_accuracy", "macro_f1", "auroc")


def perturb_mask(mask: np.ndarray, fraction: float) -> np.ndarray:
    """Erode (``fraction`` < 0) or dilate (> 0) a mask by ``|fraction|`` of its equivalent diameter (>= 1 px)."""
    area = int(mask.sum())
    radius = max(1, round(abs(fraction) * 2 * np.sqrt(area / np.pi)))
    disk = np.hypot(*np.mgrid[-radius:radius + 1, -radius:radius + 1]) <= radius
    op = ndimage.binary_dilation if fraction > 0 else ndimage.binary_erosion
    out = op(mask, structure=disk)
    return out if out.any() else mask  # a thin object eroded away keeps its mask


def test_masks(source: str, samples: Sequence[Sample], structures: Sequence[str] | None, train: Any,
               backbone: Backbone, cache_dir: str | None) -> list[np.ndarray]:
    """The ROI mask of every test sample from ``source`` (see module doc); cached as .npz under ``cache_dir``."""
    if source not in MASK_SOURCES:
        raise InputError(f"unknown mask source {source!r}; choose from {MASK_SOURCES}")
    gt = [roi_mask(dict(s.masks), tuple(structures) if structures else None, f"sample {s.id!r}") for s in samples]
    if source == "gt":
        return gt
    if source in ("gt_eroded", "gt_dilated"):
        return [perturb_mask(m, -0.05 if source == "gt_eroded" else 0.05) for m in gt]
    names = list(structures) if structures else sorted(samples[0].masks)
    resolved = DEFAULT_ONESHOT_METHOD if source == "oneshot" else source  # the key names the method actually run
    key = hashlib.sha256(f"{resolved}|{names}|{[s.id for s in samples]}|{backbone.weights_sha256}".encode())
    path = Path(cache_dir) / "masks" / f"{source}-{key.hexdigest()[:16]}.npz" if cache_dir else None
    if path is not None and path.is_file():
        data = np.load(path)
        return [data[s.id].astype(bool) for s in samples]
    method_config = {"cache_dir": cache_dir} if cache_dir else {}
    if source == "box_prompt":
        method = load_method("box_prompt", backbone=backbone, **method_config)
        masks = []
        for s in samples:
            parts = [method.predict(s.image, **method.prompts_from_truth(s, n)).mask for n in names if s.masks[n].any()]
            masks.append(np.logical_or.reduce(parts) if parts else np.zeros(s.hw, bool))
    else:  # a one-shot method from one train reference (seed 0), every structure at once
        method = load_method(resolved, backbone=backbone, **method_config)
        reference = train[sample_references(train, 1, 0, structure=names[0])[0]]
        method.set_reference(reference.image, {n: reference.masks[n] for n in names})
        preds = method.predict_many([s.image for s in samples])
        masks = [np.logical_or.reduce([p[n].mask for n in names]) for p in preds]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **{s.id: m for s, m in zip(samples, masks)})
    return masks


def run_classification_bench(
    methods: Sequence[str],
    dataset: str,
    label: str | None = None,
    structures: Sequence[str] | None = None,
    shots: Sequence[int | str] = (8, 16, 32, 64, "all"),
    seeds: int = 5,
    mask_sources: Sequence[str] = ("gt",),
    root: str | None = None,
    backbone: str = "litemedsam",
    cache_dir: str | None = None,
    config: dict[str, Any] | None = None,
    config_for: Callable[[str, int | str], dict[str, Any]] | None = None,
    command: str = "",
    log: Callable[[str], None] = print,
    split: str | None = None,
    split_file: str | None = None,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every method x K x seed on one task and return benchmark records (see module doc).

    Args:
        methods: classifier names ("segprompt", "vpt", "linear_probe", "linear_probe_masked", "finetune", ...);
            ``name@variant`` is a named variant of ``name`` (its settings come from ``config_for``).
        dataset, label: the task, e.g. ("busbra", "pathology"), ("busbra", "birads"), ("jsrt", None).
        structures: masks forming the ROI (JSRT: the two lungs); None = every mask of a sample.
        shots: support sizes: images per class (int), "all", or a percentage of each class such as "5%"
            (:func:`~roiprompt.data.sampling.sample_support`).
        seeds: seeds 0 .. seeds-1 (support sets and head initialisation).
        mask_sources: test-time masks (:data:`MASK_SOURCES`).
        config: config shared by every method; ``config_for(method, k)`` adds per-method / per-K settings.
        split, split_file: the support pool (train) and the test images: None = the official split, else
            ``seed:0`` (:func:`~roiprompt.data.splits.resolve_split`).
        limit: score the first ``limit`` test images only (development; default: the whole test part).
        progress: callback ``(done, total)`` over methods x K x seeds.
    """
    kwargs = {"label": label} if label else {}
    data = load_dataset(dataset, root=root, **kwargs)
    data_split = resolve_split(data, split, split_file)
    train, test = data_split.train, data_split.test
    samples, failures = [], []
    for i in range(len(test) if limit is None else min(limit, len(test))):
        try:
            samples.append(test[i])
        except RoiPromptError as err:  # left out of the scores, counted and listed in every record
            failures.append(f"{test.ids[i]}: {err}")
    if failures:
        log(f"{len(failures)} test image(s) failed: " + "; ".join(failures[:10]))
    if not samples:
        raise InputError(f"no test image of {dataset!r} could be read ({len(failures)} failed)")
    y_true = [s.label for s in samples]
    model = load_backbone(backbone)
    masks = {}
    for source in mask_sources:
        start = time.perf_counter()
        masks[source] = test_masks(source, samples, structures, train, model, cache_dir)
        log(f"masks {source}: {time.perf_counter() - start:.0f} s")
    gt = masks.get("gt") or test_masks("gt", samples, structures, train, model, cache_dir)
    mask_dice = {s: float(np.mean([metrics.dice(p, t) for p, t in zip(masks[s], gt)])) for s in mask_sources}
    base = {"cache_dir": cache_dir, **({"structures": tuple(structures)} if structures else {}), **(config or {})}
    records = []
    total, done = len(methods) * len(shots) * seeds, 0
    for name in methods:
        for k in shots:
            runs: dict[str, list[dict[str, float]]] = {s: [] for s in mask_sources}
            fit_s, train_s, steps, test_s = [], [], [], []
            confusion, report, setting = {s: [] for s in mask_sources}, {}, {}
            for seed in range(seeds):
                try:
                    support = [train[i] for i in sample_support(train, k, seed)]
                except InputError as err:
                    log(f"skip {name} K={k}: {err}")
                    break
                extra = config_for(name, k) if config_for else {}
                # "name@variant" rows: the method ``name`` with the variant's settings from config_for
                method: ClassifierMethod = load_method(name.split("@")[0], backbone=model, seed=seed,
                                                       allow_empty_mask=True, **{**base, **extra})
                method.fit(support)
                fit_s.append(method.fit_seconds)
                steps.append(len(method.losses))  # fewer than the schedule's when training stopped early
                train_s.append(getattr(method, "train_seconds", float("nan")))
                report, setting = method.parameter_report(), method.setting()
                for source in mask_sources:
                    start = time.perf_counter()
                    parts = [method.inputs(s.image, m if method.uses_mask else None) for s, m in
                             zip(samples, masks[source])]
                    probs = method.predict_proba({key: torch.cat([p[key] for p in parts]) for key in parts[0]})
                    test_s.append((time.perf_counter() - start) / len(samples))
                    y_pred = [method.classes[i] for i in probs.argmax(1)]
                    runs[source].append(metrics.classification_scores(y_true, y_pred, probs, method.classes))
                    confusion[source].append(metrics.confusion_matrix(y_true, y_pred, method.classes).tolist())
                    if not method.uses_mask:  # the same answer for every mask source: compute it once
                        for other in mask_sources[1:]:
                            runs[other].append(runs[source][-1])
                            confusion[other].append(confusion[source][-1])
                        break
                log(f"{name} K={k} seed={seed}: fit {method.fit_seconds:.0f} s, "
                    + ", ".join(f"{s} bacc {runs[s][-1]['balanced_accuracy']:.3f}" for s in mask_sources))
                done += 1
                if progress:
                    progress(done, total)
            if not fit_s:
                continue
            setting = {k2: v for k2, v in setting.items() if k2 not in ("seed", "allow_empty_mask")}
            for source in mask_sources:
                for score in SCORES:
                    values = np.array([r[score] for r in runs[source]], dtype=float)
                    records.append(make_record(
                        method=name, backbone=backbone, dataset=dataset, structure=",".join(structures or []) or None,
                        task="classification", setting={**setting, "shots": k, "seeds": len(fit_s)}, metric=score,
                        summary=metrics.summarize(values, ci="t"), seconds_per_image=float(np.mean(test_s)),
                        command=command,
                        extra={"label": label or "label", "mask_source": source, "ci": "t over seeds",
                               "mask_dice_vs_gt": round(mask_dice[source], 4),
                               "seed_values": [round(float(v), 4) for v in values],
                               "fit_seconds": round(float(np.mean(fit_s)), 2),
                               "train_steps": round(float(np.mean(steps)), 1),
                               "train_seconds": round(float(np.mean(train_s)), 2), **report,
                               "classes": method.classes, "test_images": len(samples),
                               "confusion": confusion[source] if score == "accuracy" else None,
                               **data_split.record_fields(),
                               **({"failures": len(failures), "failed": failures} if failures else {})}))
    if progress:
        progress(total, total)
    return records


def bench_classification(
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
    config: dict[str, Any] | None = None,
    command: str = "",
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] = print,
    label: str | None = None,
    shots: Sequence[int | str] = (8, 16, 32, 64, "all"),
    mask_sources: Sequence[str] = ("gt",),
) -> list[dict[str, Any]]:
    """The ``classification`` runner of :data:`~roiprompt.evaluation.RUNNERS`: one method through
    :func:`run_classification_bench` (K per class x seeds, the chosen test-time mask sources)."""
    return run_classification_bench(
        [method], dataset, label=label, structures=structures, shots=shots, seeds=seeds, mask_sources=mask_sources,
        root=root, backbone=backbone, cache_dir=cache_dir, config=config, command=command, log=log, split=split,
        split_file=split_file, limit=limit, progress=progress)



def format_table(records: Sequence[dict[str, Any]]) -> str:
    """A text table of balanced accuracy (± CI half-width) and AUROC per method x K x mask source."""
    lines = [f"{'method':<24}{'K':>5} {'masks':<12}{'bal.acc':>16}{'AUROC':>8}{'fit s':>8}{'params':>10}"]
    for r in records:
        if r["metric"] != "balanced_accuracy":
            continue
        auc = next(x["mean"] for x in records if x["metric"] == "auroc" and x["method"] == r["method"]
                   and x["setting"]["shots"] == r["setting"]["shots"] and x["mask_source"] == r["mask_source"])
        lines.append(f"{r['method']:<24}{r['setting']['shots']:>5} {r['mask_source']:<12}"
                     f"{r['mean']:>7.3f} ±{(r['ci95'][1] - r['ci95'][0]) / 2:>6.3f}{auc:>8.3f}"
                     f"{r['fit_seconds']:>8.1f}{r['trainable_params']:>10}")
    return "\n".join(lines)
