"""``roiprompt oneshot``: segment a folder from one annotated reference image."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import RoiPromptError
from ._common import OUTPUT_LAYOUT, SAM_BACKBONES, _console, _is_structure_name, _mask_name, backbone_option
from ._inputs import IMAGE_SUFFIXES, Input, add_slice_options, list_inputs
from ._inputs import output_stems
from ._loop import process
from ._runs import BatchRun, prediction_row
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


def cmd_oneshot(args: argparse.Namespace) -> int:
    from ..version import __version__
    from ..data import read_image, write_mask_png, write_overlay_png
    from ..files import sha256_file

    # Bad reference inputs fail here, before the model is loaded.
    ref_path = Path(args.reference)
    ref_image = read_image(ref_path, slice=args.reference_slice, axis=args.axis)
    ref_masks, mask_paths = _reference_masks(args, ref_image.shape[:2])

    def is_reference(item: Input) -> bool:
        """The reference and its masks are never targets; of a reference volume, only the reference slice."""
        if any(_same_file(item.path, m) for m in mask_paths):
            return True
        return _same_file(item.path, ref_path) and (item.slice is None or item.slice == args.reference_slice)

    images = [item for item in list_inputs(Path(args.images), args.slice, args.axis) if not is_reference(item)]
    if not images:
        raise RoiPromptError(f"{args.images}: no target images found besides the reference (looked for "
                             f"{', '.join(IMAGE_SUFFIXES)})")
    config: dict = {"weights": args.weights, "cache_dir": args.cache_dir}
    if args.method in _seeded_methods():
        config["seed"] = args.seed
        if args.warp_iterations is not None:
            config["warp_iterations"] = args.warp_iterations
    elif args.warp_iterations is not None or args.seed != 0:
        _console().print(f"note: {args.method} fits no warping model; --seed and --warp-iterations have no effect")
    structures = list(ref_masks)
    settings = {"command": "oneshot", "method": args.method, "backbone": args.backbone,
                "weights": _weights_setting(args.weights),
                # what changes the masks; the embedding cache (--cache-dir) only changes how fast they come
                "config": {k: v for k, v in config.items() if k not in ("weights", "cache_dir")},
                "reference": {"image_sha256": sha256_file(ref_path), "slice": args.reference_slice,
                              "masks": [[name, sha256_file(path)] for name, path in zip(structures, mask_paths)],
                              "mask_threshold": args.mask_threshold, "labels": args.labels},
                "slice": args.slice, "axis": args.axis,
                "roiprompt": __version__}
    reference_overlay = f"overlays/{REFERENCE_OVERLAY}.png"
    run = BatchRun(Path(args.out), settings, images, output_stems(images, structures, reserved=[reference_overlay]),
                   overwrite=args.overwrite).open()
    run.run_output(reference_overlay, lambda p: write_overlay_png(p, ref_image, ref_masks))
    state: dict = {}

    def load() -> None:
        from ..methods import load_method

        console = _console()
        console.print(f"{args.method}: loading the model and fitting the reference")
        method = load_method(args.method, backbone=args.backbone, **config)
        run.set_weights(getattr(getattr(method, "backbone", None), "weights_sha256", None))
        method.set_reference(ref_image, ref_masks, source=str(ref_path))
        state["method"] = method

    def predict(item: Input, image: np.ndarray):
        return state["method"].predict_all(image, source=str(item))

    def write(item: Input, image: np.ndarray, preds):
        stem = run.stems[item]
        outputs = {}
        for structure, pred in preds.items():
            rel = f"masks/{_mask_name(stem, structure)}"
            outputs[rel] = run.write_output(rel, lambda p, mask=pred.mask: write_mask_png(p, mask))
        outputs[f"overlays/{stem}.png"] = run.write_output(
            f"overlays/{stem}.png", lambda p: write_overlay_png(p, image, {s: q.mask for s, q in preds.items()}))
        rows, warnings = [], []
        for structure, pred in preds.items():
            empty = not pred.mask.any()
            if empty:
                warnings.append(f"{item}: the {structure} mask is empty")
            rows.append(prediction_row(structure, pred.scores, pred.mask, ["empty"] if empty else []))
        return outputs, rows, warnings

    return process(run, command="oneshot", argv=args.argv, verb=f"{args.method}: segmenting", load=load,
                   predict=predict, write=write)


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
    p.add_argument("--reference", required=True, metavar="IMG", help="the annotated reference image")
    p.add_argument("--reference-mask", required=True, action="append", metavar="[NAME=]MASK",
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
    p.add_argument("--images", required=True, metavar="DIR_OR_GLOB",
                   help="target images: a folder, a glob or a file (the reference and its masks are left out)")
    p.add_argument("--out", required=True,
                   help="output folder (masks/, overlays/, predictions.csv, manifest.jsonl); a rerun resumes")
    p.add_argument("--overwrite", action="store_true",
                   help="redo every image, replacing the results in --out (default: resume, skipping finished ones)")
    add_slice_options(p)
    p.add_argument("--method", default=DEFAULT_METHOD, choices=methods, help=f"default: {DEFAULT_METHOD}")
    p.add_argument("--backbone", **backbone_option(SAM_BACKBONES))
    p.add_argument("--weights", help="local checkpoint file or Hugging Face-format folder")
    p.add_argument("--cache-dir", help="on-disk embedding cache directory")
    p.add_argument("--seed", type=int, default=0, help=f"seed of the warping fit ({seeded})")
    p.add_argument("--warp-iterations", type=int, metavar="N",
                   help=f"Adam steps of the warping fit ({seeded}; default: the method's)")
    p.set_defaults(func=cmd_oneshot)
