"""``roiprompt classify fit | predict``: train a few-shot ROI classifier, save it, and classify a folder with it.

``fit`` trains a classifier (``linear_probe_masked`` by default, ``segprompt``, ``medfocusclip``, ...) on the
labelled images of a dataset (a shared one, or your folder with ``images/``, ``masks/`` and ``labels.csv``) and
saves it with :meth:`Method.save` (JSON + safetensors, no pickle). ``predict`` loads it and classifies every
image, streaming like ``segment``: one row per image in ``predictions.csv`` (written as it goes, resumable, on Ray
with ``--ray``). The ROI of each image comes from ``--masks DIR`` or from the one-shot segmenter saved with the
classifier (``fit --segmenter-dir``), which then also writes the masks it used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..batch.inputs import IMAGE_SUFFIXES, Input, list_inputs, mask_name, output_stems
from ..batch.runs import BatchRun, escape, score_cell, write_output
from ..errors import InputError, RoiPromptError, shown
from ._common import _console, _parse_config, add_slice_options, backbone_option
from ._loop import Job, process
from ._ray import add_ray_options, executor
from .segment import _weights_setting

#: Classifier ``fit`` trains unless --method says otherwise: the masked linear probe, level with or above the
#: ROI-prompted heads at every k in the committed BUS-BRA results (benchmarks/RESULTS.md).
DEFAULT_CLASSIFIER = "linear_probe_masked"
#: Structure name of the ROI masks ``predict`` writes when the segmenter made them.
ROI = "roi"


# -- fit ----------------------------------------------------------------------------------------------------------
def cmd_fit(args: argparse.Namespace) -> int:
    from ..data import load_dataset, sample_per_class, sample_support
    from ..methods import load_fitted, load_method, method_info

    if method_info(args.method).task != "classification":
        raise RoiPromptError(f"--method {args.method} is not a classifier")
    options: dict[str, Any] = {}
    if args.label is not None:
        options["label"] = args.label
    if args.mask_threshold is not None:
        options["mask_threshold"] = args.mask_threshold
    data = load_dataset(args.dataset, root=args.root, **options)
    if args.split is not None:
        data = data.split(args.split)
    labelled = [i for i, label in enumerate(data.labels) if label is not None]
    if not labelled:
        raise RoiPromptError(f"{args.dataset}: no labelled image (a folder dataset needs labels.csv: id,label)")
    if args.shots in (None, "all"):
        support = data.subset(labelled)
    elif args.shots.endswith("%"):  # a share of each class (MedFocusCLIP's fraction protocol)
        support = data.subset(sample_support(data, args.shots, seed=args.seed))
    else:
        support = data.subset(sample_per_class(data, _positive(args.shots, "--shots"), seed=args.seed))
    config = {"seed": args.seed, **_parse_config(args.config or [])}
    parts: dict[str, Any] = {}
    if args.segmenter_dir is not None:
        parts["segmenter"] = load_fitted(args.segmenter_dir, cache_dir=args.cache_dir)
    console = _console()
    counts = {c: support.labels.count(c) for c in sorted(set(support.labels))}
    console.print(f"{args.method}: training on {len(support)} labelled images "
                  f"({', '.join(f'{c}: {n}' for c, n in counts.items())})")
    method = load_method(args.method, backbone=args.backbone, weights=args.weights, cache_dir=args.cache_dir,
                         **config, **parts)
    method.fit(list(support))
    method.save(args.save)
    console.print(f"saved {args.method} ({', '.join(method.classes)}) to {escape(shown(args.save))} in "
                  f"{method.fit_seconds:.1f} s; classify with: roiprompt classify predict --model "
                  f"{escape(shown(args.save))} --images DIR --out DIR")
    return 0


def _positive(text: str, option: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise RoiPromptError(f"{option} must be a positive number of images per class or 'all', got {text!r}")
    return value


# -- predict ------------------------------------------------------------------------------------------------------
def mask_files(folder: Path, inputs: list[Input]) -> dict[Input, list[Path]]:
    """The ROI mask file(s) of each input in ``folder``: ``<stem>.<ext>`` (the image's name with any image
    extension), else every ``<stem>_<structure>.png`` (what ``segment`` and ``oneshot`` write under ``masks/``,
    united into one ROI); inputs with none are left out. A slice of a volume looks for its output stem
    (``case_z040``)."""
    from ..data import IMAGE_EXTENSIONS
    from ..data.io import split_extension

    if not folder.is_dir():
        raise RoiPromptError(f"--masks {shown(folder)}: not a folder")
    by_base: dict[str, list[Path]] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        base, ext = split_extension(path)
        if ext in IMAGE_EXTENSIONS:
            by_base.setdefault(base, []).append(path)
    stems = output_stems(inputs, [ROI])
    # <stem>_<structure> belongs to the longest input stem it starts with (a_2_roi is a_2's, not a's)
    owners = sorted(set(stems.values()), key=len, reverse=True)
    structures: dict[str, list[Path]] = {}
    for base, paths in by_base.items():
        owner = next((s for s in owners if base.startswith(s + "_")), None)
        if owner is not None:
            structures.setdefault(owner, []).extend(paths)
    found: dict[Input, list[Path]] = {}
    for item in inputs:
        stem = stems[item]
        if stem in by_base:
            found[item] = by_base[stem][:1]
        elif stem in structures:
            found[item] = structures[stem]
    return found


def cmd_predict(args: argparse.Namespace) -> int:
    from ..methods import method_class, method_info
    from ..methods.saving import FITTED_FILE, read_fitted
    from ..files import sha256_file
    from ..version import __version__

    record, _ = read_fitted(args.model)
    if method_info(record["method"]).task != "classification":
        raise RoiPromptError(f"--model {args.model}: holds a fitted {record['method']!r}, not a classifier (a "
                             "one-shot reference is used with `roiprompt oneshot --reference-dir`)")
    classes = list(record["state"]["classes"])
    has_segmenter = "segmenter" in record["parts"]
    images = list_inputs(Path(args.images), args.slice, args.axis)
    if not images:
        raise RoiPromptError(f"{args.images}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    masks: dict[str, list[str]] = {}
    if args.masks is not None:
        masks = {_key(item): [str(p.resolve()) for p in paths]
                 for item, paths in mask_files(Path(args.masks), images).items()}
    elif not has_segmenter and method_class(record["method"]).uses_mask:
        raise RoiPromptError(f"--model {args.model}: {record['method']} classifies the ROI: give --masks DIR (one "
                             "mask per image), or fit it with --segmenter-dir so it segments the ROI itself")
    # the masks decide the outputs: one hash over every input's mask files (their names and bytes)
    mask_hashes = {k: [sha256_file(Path(p)) for p in v] for k, v in sorted(masks.items())}
    settings = {"command": "classify predict", "model_sha256": sha256_file(Path(args.model) / FITTED_FILE),
                "masks_sha256": hashlib.sha256(json.dumps(mask_hashes).encode()).hexdigest() if masks else None,
                "mask_threshold": args.mask_threshold, "slice": args.slice, "axis": args.axis,
                "weights": _weights_setting(args.weights), "roiprompt": __version__}
    columns = ("image", "slice", "label", *(f"p_{c}" for c in classes), "roi")
    run = BatchRun(Path(args.out), settings, images, output_stems(images, [ROI]), overwrite=args.overwrite,
                   columns=columns, folders=("masks",)).open()
    job = ClassifyJob(out=run.out.resolve(), model=Path(args.model).resolve(), weights=args.weights,
                      cache_dir=args.cache_dir, masks=masks, mask_threshold=args.mask_threshold)
    return process(run, job, command="classify predict", argv=args.argv, verb=f"{record['method']}: classifying",
                   executor=executor(args), noun="classified")


def _key(item: Input) -> str:
    """How the job finds an input's masks, the same on the driver and on a worker (absolute path, slice)."""
    return f"{Path(item.path).resolve()}::{item.slice}"


@dataclass
class ClassifyJob(Job):
    """``classify predict``'s work on one image (picklable, for Ray): its ROI from ``masks`` (files per input) or
    the saved segmenter, then the class probabilities."""

    out: Path
    model: Path
    weights: str | None
    cache_dir: str | None
    masks: dict[str, list[str]]
    mask_threshold: float | None

    def load(self) -> None:
        from ..methods import load_fitted

        self._method = load_fitted(self.model, weights=self.weights, cache_dir=self.cache_dir)
        self.weights_sha256 = self._method.backbone.weights_sha256

    def predict(self, item: Input, image: np.ndarray):
        from ..data import read_mask

        method = self._method
        mask, source = None, ""
        paths = self.masks.get(_key(item))
        if method.uses_mask and paths:
            mask = np.logical_or.reduce([read_mask(p, image_hw=image.shape[:2], threshold=self.mask_threshold,
                                                   allow_empty=True) for p in paths])
            source = ";".join(Path(p).name for p in paths)
        elif method.uses_mask and method.segmenter is None:
            raise InputError(f"{item}: no ROI mask for it in --masks (looked for its name, or its name + "
                             "_<structure>.png)")
        pred = method.predict(image, mask, source=str(item))
        return pred, source or (f"segmenter {method.segmenter.name}" if method.uses_mask else "")

    def write(self, item: Input, stem: str, image: np.ndarray, result):
        from ..data import write_mask_png

        pred, source = result
        outputs = {}
        if source.startswith("segmenter"):  # the ROI the classifier used, for review
            rel = f"masks/{mask_name(stem, ROI)}"
            outputs[rel] = write_output(self.out, rel, lambda p: write_mask_png(p, pred.extras["mask"]))
        row = {"label": str(pred.label), **{f"p_{c}": score_cell(p) for c, p in pred.scores.items()}, "roi": source}
        return outputs, [row], []


# -- the command --------------------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``classify fit`` and ``classify predict``."""
    from ..methods import list_methods

    p = sub.add_parser("classify", parents=parents, help="train a few-shot ROI classifier and classify a folder",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    commands = p.add_subparsers(dest="classify_command", required=True, metavar="{fit,predict}")
    fit = commands.add_parser(
        "fit", parents=parents, help="train on labelled images and save the classifier",
        description="Train a classifier on the labelled images of a dataset (with their ROI masks) and save it "
                    "(a folder: JSON + safetensors).")
    fit.add_argument("--dataset", default="folder",
                     help="kvasir_seg, busbra, jsrt, or folder (default: your own, with --root: images/, masks/, "
                          "labels.csv)")
    fit.add_argument("--root", help="data root (folder: the folder holding images/, masks/, labels.csv)")
    fit.add_argument("--split", help="train on this split of a shared dataset (e.g. train)")
    fit.add_argument("--label", help="busbra: the label to learn (pathology, birads)")
    fit.add_argument("--shots", metavar="K|P%|all", help="K labelled images per class, or P%% of each class, drawn "
                     "with --seed (default: all)")
    fit.add_argument("--mask-threshold", type=float, metavar="T", help="binarise non-binary masks at T (folder)")
    fit.add_argument("--method", default=DEFAULT_CLASSIFIER, choices=list_methods(task="classification"),
                     help=f"default: {DEFAULT_CLASSIFIER} (see README: which classifier to use)")
    fit.add_argument("--config", action="append", metavar="KEY=VALUE", help="method option, repeatable")
    fit.add_argument("--seed", type=int, default=0, help="seed of the head and of --shots (default 0)")
    fit.add_argument("--segmenter-dir", metavar="DIR",
                     help="a one-shot reference saved with `roiprompt oneshot --save-reference DIR`: saved with "
                          "the classifier, it segments the ROI of each image at predict time (no --masks needed)")
    fit.add_argument("--save", required=True, metavar="DIR", help="folder to save the fitted classifier to")
    fit.add_argument("--backbone", **backbone_option())
    fit.add_argument("--weights", help="local checkpoint file or Hugging Face-format folder")
    fit.add_argument("--cache-dir", help="on-disk embedding cache directory")
    fit.set_defaults(func=cmd_fit)

    pred = commands.add_parser(
        "predict", parents=parents, help="classify a folder with a saved classifier",
        description="Classify every image with a classifier saved by `classify fit`. Writes to --out: "
                    "predictions.csv (image, slice, label, p_<class> for each class, roi: the mask file(s) used, "
                    "or the segmenter), masks/<stem>_roi.png when the saved segmenter made the ROI, and "
                    "manifest.jsonl; a rerun resumes, as for segment.")
    pred.add_argument("--model", required=True, metavar="DIR", help="the folder `classify fit --save` wrote")
    pred.add_argument("--images", required=True, metavar="DIR_OR_GLOB", help="images: a folder, a glob or a file")
    pred.add_argument("--masks", metavar="DIR",
                      help="ROI masks: <name>.<ext> for each image, or the <name>_<structure>.png files a "
                           "segment/oneshot run wrote in its masks/ (several structures are united)")
    pred.add_argument("--mask-threshold", type=float, metavar="T", help="binarise non-binary masks at T")
    pred.add_argument("--out", required=True, help="output folder (predictions.csv, manifest.jsonl, masks/)")
    pred.add_argument("--overwrite", action="store_true", help="redo every image (default: resume)")
    add_slice_options(pred)
    pred.add_argument("--weights", help="the backbone checkpoint the classifier was fitted with, if not the default")
    pred.add_argument("--cache-dir", help="on-disk embedding cache directory")
    add_ray_options(pred)
    pred.set_defaults(func=cmd_predict)
