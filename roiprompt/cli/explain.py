"""``roiprompt explain``: fit MedFocusCLIP few-shot and draw its attention with and without guidance."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import RoiPromptError
from ._common import _console, _progress, _stem, backbone_option
from .datasets import FOLDER

#: The method ``explain`` fits and draws (the one whose attention the segmentation guides).
EXPLAIN_METHOD = "medfocusclip"


def _task(dataset: str, label: str | None) -> dict[str, Any]:
    """The benchmark task of ``dataset`` (and ``label``, when given): its label column, structures and class
    prompts; ``{}`` for a dataset without one (e.g. a folder dataset)."""
    from ..evaluation.tasks import TASKS

    return next((dict(t) for t in TASKS.values()
                 if t.get("dataset") == dataset and (label is None or t.get("label") == label)), {})


def _open(args: argparse.Namespace, label: str | None):
    """The dataset of ``--dataset``/``--root``/``--label`` (a folder dataset needs ``--root``)."""
    from ..data import load_dataset

    if args.dataset == FOLDER and not args.root:
        raise RoiPromptError("--dataset folder needs --root DIR, the folder holding images/ (and masks/, labels.csv)")
    if args.dataset == FOLDER and label:
        raise RoiPromptError("--label: a folder dataset has one label column, labels.csv (id,label)")
    return load_dataset(args.dataset, root=args.root, **({"label": label} if label else {}))


def _support_and_test(data, shots: int, seed: int):
    """(support samples, the pool of test targets): ``shots`` labelled images with a mask per class, drawn from the
    official train split (targets: the test split); without official splits, from every labelled image with a mask
    (targets: the others)."""
    from ..data import sample_per_class

    usable = [i for i, r in enumerate(data.records) if r.label is not None and r.masks]
    if len(usable) < len(data):  # images without a label or a mask can be neither support nor target
        data = data.subset(usable)
    classes = data.classes
    where = f"{data.root}" if data.root is not None else data.name
    if len(classes) < 2:
        raise RoiPromptError(f"{where}: explain needs labelled images of at least two classes with a mask; found "
                             f"{len(data)} labelled image(s) with a mask, classes {classes}"
                             + (" (labels come from labels.csv: id,label)" if data.name == FOLDER else ""))
    splits = data.splits
    train = data.split("train") if "train" in splits else data
    counts = {c: train.labels.count(c) for c in classes}
    if short := [c for c, n in counts.items() if n < shots]:
        raise RoiPromptError(f"--shots {shots}: class(es) {short} have fewer labelled images with a mask "
                             f"{'in the train split ' if train is not data else ''}(counts: {counts}); lower --shots")
    picked = sample_per_class(train, shots, seed)
    support = [train[i] for i in picked]
    if "test" in splits:
        test = data.split("test")
    else:
        chosen = {train.records[i].id for i in picked}
        test = data.subset(i for i, r in enumerate(data.records) if r.id not in chosen)
    return support, test


def cmd_explain(args: argparse.Namespace) -> int:
    """Fit MedFocusCLIP on K images per class of a dataset's train split, then draw, for each target, the
    attention of its visual pooling with and without the segmentation guidance."""
    from ..data import read_image, read_mask, write_attention_png
    from ..methods import load_method
    from ..methods.classification.features import roi_mask

    if (args.image is None) != (args.mask is None):
        raise RoiPromptError("explain: give --image and --mask together (or neither, for test images of --dataset)")
    if args.shots < 1:
        raise RoiPromptError(f"--shots must be >= 1, got {args.shots}")
    task = _task(args.dataset, args.label)
    label = args.label or task.get("label")
    data = _open(args, label)
    support, test = _support_and_test(data, args.shots, args.seed)
    if task.get("class_prompts") is None:
        _console().print(f"class prompts: {args.dataset} has no curated ones; using the class names "
                         f"({', '.join(data.classes)}) in {EXPLAIN_METHOD}'s prompt templates")
    config = {"weights": args.weights, "cache_dir": args.cache_dir, "views": args.views, "seed": args.seed,
              "class_prompts": task.get("class_prompts"), "structures": task.get("structures")}
    method = load_method(EXPLAIN_METHOD, backbone=args.backbone, **{k: v for k, v in config.items() if v is not None})
    with _progress() as bar:
        bar.add_task(f"{EXPLAIN_METHOD}: fitting {args.shots} per class", total=None)
        method.fit(support)
    if args.image is not None:
        image = read_image(args.image)
        mask = read_mask(args.mask, image.shape[:2], threshold=args.mask_threshold)
        targets = [(_stem(Path(args.image)), image, mask, None)]
    else:
        picked = [test[i] for i in range(min(args.n, len(test)))]
        targets = [(s.id, s.image, roi_mask(dict(s.masks), method.config.structures, s.id), s.label) for s in picked]
    out = Path(args.out)
    for stem, image, mask, truth in targets:
        pred = method.predict(image, mask=mask, source=stem)
        maps = method.attention(image, mask=mask, resolution="image", source=stem)
        p = pred.scores[pred.label]
        panels = {"unguided": maps["unguided"], f"guided (p {pred.label} = {p:.2f})": maps["guided"]}
        path = write_attention_png(out / f"{stem}_attention.png", image, panels, mask=maps["mask"])
        inside = float(maps["guided"][mask].sum() / maps["guided"].sum()), float(
            maps["unguided"][mask].sum() / maps["unguided"].sum())
        _console().print(f"{stem}: {pred.label} ({p:.2f})" + (f", truth {truth}" if truth is not None else "")
                         + f"; attention inside the ROI {inside[1]:.0%} -> {inside[0]:.0%}; {path}")
    return 0


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``explain`` subcommand."""
    from ..data import list_datasets

    p = sub.add_parser(
        "explain", parents=parents,
        help=f"fit {EXPLAIN_METHOD} few-shot and draw its attention with and without segmentation guidance",
        description=f"Fit {EXPLAIN_METHOD} on --shots images per class of the dataset's train split (a dataset "
                    "without official splits: of all its labelled images with a mask), then write "
                    "<stem>_attention.png for each target: the pooling attention without guidance next to the "
                    "guided one, with the ROI contour. Targets: --image/--mask, else the first --n test images "
                    "(without splits: the first --n images outside the support set). Your own data: "
                    "--dataset folder --root DIR, with DIR/images, DIR/masks and DIR/labels.csv (id,label); its "
                    "class prompts are the class names in the method's templates.")
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help=f"support set source: {', '.join(list_datasets())} (with --root DIR)")
    p.add_argument("--label", help="label column (busbra: pathology or birads)")
    p.add_argument("--shots", type=int, default=8, help="training images per class (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--views", type=int, default=1, help="augmented views per training image (default 1: fast)")
    p.add_argument("--image", help="a target image (with --mask)")
    p.add_argument("--mask", help="the target's ROI mask, the size of the image (binary: 0/1, 0/255 or 1-bit)")
    p.add_argument("--mask-threshold", type=float, metavar="T",
                   help="binarise a --mask that is not binary (soft, grey or a lossy JPEG): foreground where >= T")
    p.add_argument("--n", type=int, default=4, help="without --image: this many test images of the dataset")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--root", help="data root; with --dataset folder, the dataset's own folder")
    p.add_argument("--backbone", **backbone_option())
    p.add_argument("--weights", help="local checkpoint file or Hugging Face-format folder")
    p.add_argument("--cache-dir", help="on-disk embedding cache directory")
    p.set_defaults(func=cmd_explain)
