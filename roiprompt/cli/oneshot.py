"""``roiprompt oneshot``: segment a folder from one annotated reference image."""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data import read_image
from ..batch.inputs import IMAGE_SUFFIXES, Input, list_inputs, mask_name, output_stems
from ..batch.runs import BatchRun, escape, prediction_row, write_output
from ..errors import RoiPromptError, shown
from ._common import OUTPUT_LAYOUT, SAM_BACKBONES, _console, _is_structure_name, add_slice_options, backbone_option
from ._loop import Job, process
from ._ray import add_ray_options, executor
from .segment import _weights_setting


def _parse_labels(text: str) -> dict:
    """``--labels 1=liver,2=spleen`` (or ``'#ff0000=lesion'``) -> ``{1: "liver", 2: "spleen"}``."""
    from ..data.masks import parse_label

    labels: dict = {}
    for part in text.split(","):
        value, sep, name = part.partition("=")
        if not sep or not _is_structure_name(name.strip()):
            raise RoiPromptError(f"--labels {text!r}: give VALUE=NAME pairs separated by commas, e.g. "
                                 "--labels 1=liver,2=spleen or --labels '#ff0000=lesion'")
        labels[parse_label(value)] = name.strip()
    return labels


def _reference_masks(args: argparse.Namespace, image_hw: tuple[int, int]) -> tuple[dict[str, np.ndarray], list[Path]]:
    """``--reference-mask`` values (``PATH`` or ``NAME=PATH``), converted as ``--mask-threshold`` / ``--labels``
    say -> ({structure: HxW bool mask}, the mask files)."""
    from ..data import read_label_map, read_mask
    from ..methods.oneshot import DEFAULT_STRUCTURE

    specs: Sequence[str] = args.reference_mask
    where = {"slice": args.reference_slice, "axis": args.axis}
    if args.labels is not None:
        if len(specs) != 1 or "=" in specs[0] and not Path(specs[0]).exists():
            raise RoiPromptError("--labels reads several structures from one label map: give one --reference-mask "
                                 "LABELMAP (no NAME=)")
        return read_label_map(specs[0], _parse_labels(args.labels), image_hw=image_hw, **where), [Path(specs[0])]
    masks: dict[str, np.ndarray] = {}
    paths: list[Path] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or "/" in name or "\\" in name or Path(spec).exists():  # a plain path
            name, path = DEFAULT_STRUCTURE, spec
        elif not path or not _is_structure_name(name):
            raise RoiPromptError(f"--reference-mask {spec!r}: give MASK or NAME=MASK, NAME made of letters, digits, "
                                 "'_' or '-'")
        if name in masks:
            raise RoiPromptError(f"--reference-mask: structure {name!r} given twice; name each mask with NAME=MASK "
                                 "(e.g. --reference-mask left_lung=a.png --reference-mask heart=b.png)")
        masks[name] = read_mask(path, image_hw=image_hw, threshold=args.mask_threshold, **where)
        paths.append(Path(path))
    return masks, paths


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:  # pragma: no cover - unresolvable path: compare as given
        return a == b


def _seeded_methods() -> list[str]:
    """The one-shot methods that fit a warping model (they take --seed and --warp-iterations)."""
    from ..methods import list_methods
    from ..methods.oneshot import config_fields

    return [m for m in list_methods(task="oneshot") if "seed" in config_fields(m)]


def _fitted_reference(args: argparse.Namespace) -> tuple[str, np.ndarray, dict[str, np.ndarray], list[str], dict]:
    """``--reference-dir``: (method, the first reference image and its masks, the reference sources, the settings
    entry naming the folder by its record's SHA-256 and its backbone), read without loading a model."""
    from ..files import sha256_file
    from ..methods import method_info
    from ..methods.references import saved_references
    from ..methods.saving import FITTED_FILE, read_fitted

    folder = Path(args.reference_dir)
    record, tensors = read_fitted(folder)
    method = record["method"]
    if method_info(method).task != "oneshot":
        raise RoiPromptError(f"--reference-dir {args.reference_dir}: holds a fitted {method!r}, not a one-shot "
                             "method (a classifier is used with `roiprompt classify predict --model`)")
    if args.method is not None and args.method != method:
        raise RoiPromptError(f"--reference-dir {args.reference_dir} holds a fitted {method!r}; --method "
                             f"{args.method} does not apply (leave --method out)")
    references = saved_references(record["state"], tensors)
    entry = {"fitted_sha256": sha256_file(folder / FITTED_FILE), "backbone": record["backbone"]["name"]}
    first = references[0]
    return method, first["image"], first["masks"], [r["source"] for r in references], entry


def cmd_oneshot(args: argparse.Namespace) -> int:
    from ..version import __version__
    from ..data import write_overlay_png
    from ..files import sha256_file
    from ..methods.oneshot import DEFAULT_ONESHOT_METHOD

    # Bad reference inputs fail here, before the model is loaded.
    if (args.reference is None) == (args.reference_dir is None):
        raise RoiPromptError("give the reference as --reference IMG --reference-mask MASK, or as --reference-dir DIR "
                             "(a reference saved with --save-reference); not both")
    if args.reference_dir is not None:
        if args.save_reference is not None or args.reference_mask:
            raise RoiPromptError("--reference-dir is a fitted reference: --reference-mask and --save-reference do "
                                 "not apply")
        method, ref_image, ref_masks, sources, reference_entry = _fitted_reference(args)
        reference_paths = [Path(source) for source in sources]
        mask_paths: list[Path] = []
    else:
        if not args.reference_mask:
            raise RoiPromptError("--reference needs its mask: --reference-mask MASK (or NAME=MASK, repeated)")
        method = args.method or DEFAULT_ONESHOT_METHOD
        ref_path = Path(args.reference)
        ref_image = read_image(ref_path, slice=args.reference_slice, axis=args.axis)
        ref_masks, mask_paths = _reference_masks(args, ref_image.shape[:2])
        reference_paths = [ref_path]
        reference_entry = {"image_sha256": sha256_file(ref_path), "slice": args.reference_slice,
                           "masks": [[name, sha256_file(path)] for name, path in zip(ref_masks, mask_paths)],
                           "mask_threshold": args.mask_threshold, "labels": args.labels}

    def is_reference(item: Input) -> bool:
        """The reference and its masks are never targets; of a reference volume, only the reference slice."""
        if any(_same_file(item.path, m) for m in mask_paths):
            return True
        return any(_same_file(item.path, r) for r in reference_paths) and (
            item.slice is None or item.slice == args.reference_slice)

    images = [item for item in list_inputs(Path(args.images), args.slice, args.axis) if not is_reference(item)]
    if not images:
        raise RoiPromptError(f"{args.images}: no target images found besides the reference (looked for "
                             f"{', '.join(IMAGE_SUFFIXES)})")
    config: dict = {}
    if args.reference_dir is None and method in _seeded_methods():
        config["seed"] = args.seed
        if args.warp_iterations is not None:
            config["warp_iterations"] = args.warp_iterations
    elif args.warp_iterations is not None or args.seed != 0:
        why = "the reference is fitted already" if args.reference_dir else f"{method} fits no warping model"
        _console().print(f"note: {why}; --seed and --warp-iterations have no effect")
    structures = list(ref_masks)
    backbone = args.backbone or reference_entry.get("backbone") or DEFAULT_BACKBONE
    settings = {"command": "oneshot", "method": method, "backbone": backbone,
                "weights": _weights_setting(args.weights),
                # what changes the masks; the embedding cache (--cache-dir) only changes how fast they come
                "config": config, "reference": reference_entry, "slice": args.slice, "axis": args.axis,
                "roiprompt": __version__}
    reference_overlay = f"overlays/{REFERENCE_OVERLAY}.png"
    run = BatchRun(Path(args.out), settings, images, output_stems(images, structures, reserved=[reference_overlay]),
                   overwrite=args.overwrite).open()
    run.run_output(reference_overlay, lambda p: write_overlay_png(p, ref_image, ref_masks))
    job = OneShotJob(out=run.out.resolve(), method=method, backbone=args.backbone, weights=args.weights,
                     config=config, cache_dir=args.cache_dir,
                     fitted=None if args.reference_dir is None else Path(args.reference_dir).resolve(),
                     reference=None if args.reference_dir else (ref_image, ref_masks, str(reference_paths[0])))
    if args.save_reference is not None:  # fitted now, whatever is left to do: the folder is asked for
        job.ensure_loaded()
        job.save(Path(args.save_reference))
        _console().print(f"saved the fitted reference to {escape(shown(args.save_reference))} (reuse it with "
                         f"--reference-dir)")
    scratch: list[Path] = []

    def prepare() -> OneShotJob:
        """Before a Ray run: the reference fitted once, here, and saved where every worker reads it."""
        if job.fitted is not None:
            return job.for_workers()
        if args.save_reference is not None:
            job.release()
            return job.for_workers(Path(args.save_reference).resolve())
        folder = Path(tempfile.mkdtemp(prefix=".roiprompt-reference-", dir=run.out)).resolve()
        scratch.append(folder)
        job.save(folder)
        job.release()  # the driver only records from here on: its model would only hold memory
        return job.for_workers(folder)

    try:
        return process(run, job, command="oneshot", argv=args.argv, verb=f"{method}: segmenting",
                       executor=executor(args, prepare))
    finally:
        for folder in scratch:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class OneShotJob(Job):
    """``oneshot``'s work on one image: every structure of the reference, from one encode (picklable for Ray:
    workers get ``fitted``, a saved reference folder, and no arrays).

    Either ``fitted`` (a folder :meth:`Method.save` wrote) or ``reference`` (image, {structure: mask}, source) is
    set; :meth:`load` loads the first or fits the second."""

    out: Path
    method: str
    backbone: str | None
    weights: str | None
    config: dict
    cache_dir: str | None
    fitted: Path | None = None
    reference: tuple | None = None

    def load(self) -> None:
        from ..methods import load_fitted, load_method

        if self.fitted is not None:
            method = load_fitted(self.fitted, self.backbone, weights=self.weights, cache_dir=self.cache_dir)
        else:
            _console().print(f"{self.method}: loading the model and fitting the reference")
            method = load_method(self.method, backbone=self.backbone or DEFAULT_BACKBONE, weights=self.weights,
                                 cache_dir=self.cache_dir, **self.config)
            image, masks, source = self.reference
            method.set_reference(image, masks, source=source)
        self.weights_sha256 = getattr(getattr(method, "backbone", None), "weights_sha256", None)
        self._method = method

    def save(self, folder: Path) -> None:
        """Save the fitted method (loading it first) to ``folder``."""
        self.ensure_loaded()
        self._method.save(folder)

    def release(self) -> None:
        """Drop the loaded method (its memory), as if never loaded."""
        self._method, self._loaded = None, False
        gc.collect()

    def for_workers(self, fitted: Path | None = None) -> "OneShotJob":
        """This job as Ray workers get it: the saved folder, no arrays, nothing loaded."""
        return OneShotJob(out=self.out, method=self.method, backbone=self.backbone, weights=self.weights,
                          config=self.config, cache_dir=self.cache_dir, fitted=fitted or self.fitted)

    def predict(self, item: Input, image: np.ndarray):
        return self._method.predict_all(image, source=str(item))

    def write(self, item: Input, stem: str, image: np.ndarray, preds):
        from ..data import write_mask_png, write_overlay_png

        outputs = {}
        for structure, pred in preds.items():
            rel = f"masks/{mask_name(stem, structure)}"
            outputs[rel] = write_output(self.out, rel, lambda p, mask=pred.mask: write_mask_png(p, mask))
        outputs[f"overlays/{stem}.png"] = write_output(
            self.out, f"overlays/{stem}.png",
            lambda p: write_overlay_png(p, image, {s: q.mask for s, q in preds.items()}))
        rows, messages = [], []
        for structure, pred in preds.items():
            empty = not pred.mask.any()
            if empty:
                messages.append(f"{item}: the {structure} mask is empty")
            rows.append(prediction_row(structure, pred.scores, pred.mask, ["empty"] if empty else []))
        return outputs, rows, messages


#: Backbone of a reference fitted here when --backbone is not given (a --reference-dir names its own).
DEFAULT_BACKBONE = "litemedsam"


#: Overlay of the reference with its masks: ``overlays/reference.png``.
REFERENCE_OVERLAY = "reference"


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``oneshot`` subcommand."""
    from ..methods import list_methods, method_info
    from ..methods.oneshot import DEFAULT_ONESHOT_METHOD as DEFAULT_METHOD

    methods = list_methods(task="oneshot")
    seeded = ", ".join(_seeded_methods())
    p = sub.add_parser(
        "oneshot", parents=parents,
        help=f"segment a folder from one annotated reference image ({method_info(DEFAULT_METHOD).paper} or a "
             "one-shot baseline)",
        description="Learn the structures of one annotated reference image and segment them in every target image "
                    f"(also overlays/{REFERENCE_OVERLAY}.png: the reference with its masks). " + OUTPUT_LAYOUT)
    p.add_argument("--reference", metavar="IMG", help="the annotated reference image")
    p.add_argument("--reference-mask", action="append", metavar="[NAME=]MASK",
                   help="binary mask of the reference, the size of the image; repeat with NAME=MASK for several "
                        "structures (e.g. --reference-mask left_lung=a.png --reference-mask heart=b.png); a plain "
                        "path names the structure 'roi'")
    p.add_argument("--mask-threshold", type=float, metavar="T",
                   help="binarise a reference mask that is not binary (soft, grey or a lossy JPEG): foreground where "
                        "the value is >= T (e.g. 128 for a JPEG, 0.5 for probabilities); masks must be binary "
                        "otherwise")
    p.add_argument("--labels", metavar="V=NAME,...",
                   help="the reference mask is a label map: one structure per value, e.g. 1=liver,2=spleen (or "
                        "'#ff0000=lesion' for a colour label map)")
    p.add_argument("--reference-slice", type=int, metavar="N",
                   help="the reference is a NIfTI volume: its slice N (along --axis), for the image and its masks")
    p.add_argument("--reference-dir", metavar="DIR",
                   help="a reference fitted and saved by an earlier run (--save-reference DIR) or by "
                        "method.save(DIR), instead of --reference and --reference-mask: nothing is refit, and the "
                        "method and structures are the saved ones")
    p.add_argument("--save-reference", metavar="DIR",
                   help="save the fitted reference (method, references, what it learned; JSON + safetensors, no "
                        "pickle) to DIR, for --reference-dir, roiprompt.load_fitted(DIR) or a cluster run")
    p.add_argument("--images", required=True, metavar="DIR_OR_GLOB",
                   help="target images: a folder, a glob or a file (the reference and its masks are left out)")
    p.add_argument("--out", required=True,
                   help="output folder (masks/, overlays/, predictions.csv, manifest.jsonl); a rerun resumes")
    p.add_argument("--overwrite", action="store_true",
                   help="redo every image, replacing the results in --out (default: resume, skipping finished ones)")
    add_slice_options(p)
    p.add_argument("--method", choices=methods, help=f"default: {DEFAULT_METHOD} (a --reference-dir's own)")
    p.add_argument("--backbone", **{**backbone_option(SAM_BACKBONES, default=None),
                                    "help": f"model (default: {DEFAULT_BACKBONE}, or a --reference-dir's own)"})
    p.add_argument("--weights", help="local checkpoint file or Hugging Face-format folder")
    p.add_argument("--cache-dir", help="on-disk embedding cache directory")
    p.add_argument("--seed", type=int, default=0, help=f"seed of the warping fit ({seeded})")
    p.add_argument("--warp-iterations", type=int, metavar="N",
                   help=f"Adam steps of the warping fit ({seeded}; default: the method's)")
    add_ray_options(p)
    p.set_defaults(func=cmd_oneshot)
