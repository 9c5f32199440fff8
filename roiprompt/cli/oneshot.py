"""``roiprompt oneshot``: segment a folder from one annotated reference image."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import RoiPromptError
from ._common import (IMAGE_SUFFIXES, OUTPUT_LAYOUT, SAM_BACKBONES, _console, _is_structure_name, _list_images,
                      _mask_name, _output_stems, _PredictionTable, _progress, _report_skipped, backbone_option)



def _reference_masks(specs: Sequence[str], image_hw: tuple[int, int]) -> tuple[dict[str, np.ndarray], list[Path]]:
    """``--reference-mask`` values (``PATH`` or ``NAME=PATH``) -> ({structure: HxW bool mask}, the mask files)."""
    from ..data import read_mask
    from ..methods.oneshot import DEFAULT_STRUCTURE

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
        masks[name] = read_mask(path, image_hw=image_hw)
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
    from ..data import read_image, write_mask_png, write_overlay_png
    from ..methods import load_method

    # Bad reference inputs fail here, before the model is loaded.
    ref_path = Path(args.reference)
    ref_image = read_image(ref_path)
    ref_masks, mask_paths = _reference_masks(args.reference_mask, ref_image.shape[:2])
    reference_files = [ref_path, *mask_paths]  # never targets, even when they sit in the target folder
    images = [p for p in _list_images(Path(args.images)) if not any(_same_file(p, r) for r in reference_files)]
    if not images:
        raise RoiPromptError(f"{args.images}: no target images found besides the reference (looked for "
                             f"{', '.join(IMAGE_SUFFIXES)})")
    stems = _output_stems(images, reserved=[REFERENCE_OVERLAY])
    config: dict = {"weights": args.weights, "cache_dir": args.cache_dir}
    if args.method in _seeded_methods():
        config["seed"] = args.seed
        if args.warp_iterations is not None:
            config["warp_iterations"] = args.warp_iterations
    elif args.warp_iterations is not None or args.seed != 0:
        _console().print(f"note: {args.method} fits no warping model; --seed and --warp-iterations have no effect")
    out = Path(args.out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    write_overlay_png(out / "overlays" / f"{REFERENCE_OVERLAY}.png", ref_image, ref_masks)

    failures: list[str] = []
    targets: list[tuple[Path, np.ndarray]] = []
    with _progress() as bar, _PredictionTable(out / "predictions.csv") as table:
        task = bar.add_task("reading targets", total=len(images))
        for path in images:  # read all first, so a bad file is reported before the model loads
            try:
                targets.append((path, read_image(path)))
            except RoiPromptError as err:  # skip a bad file, report it at the end, finish the rest
                failures.append(str(err))
            bar.advance(task)
        if targets:
            task = bar.add_task(f"{args.method}: fitting the reference", total=None)
            method = load_method(args.method, backbone=args.backbone, **config)
            method.set_reference(ref_image, ref_masks, source=str(ref_path))
            bar.update(task, total=1, completed=1)
            task = bar.add_task(f"{args.method}: segmenting", total=len(targets))
        for path, image in targets:
            try:
                preds = method.predict_all(image, source=str(path))
                stem = stems[path]
                for structure, pred in preds.items():
                    write_mask_png(out / "masks" / _mask_name(stem, structure), pred.mask)
                write_overlay_png(out / "overlays" / f"{stem}.png", image, {s: p.mask for s, p in preds.items()})
                for structure, pred in preds.items():
                    table.add(path, structure, pred.scores, pred.mask)
            except RoiPromptError as err:
                failures.append(str(err))
            bar.advance(task)
    _console().print(f"{len(images) - len(failures)} segmented, {len(failures)} skipped: masks, overlays and "
                     f"predictions.csv in {out}")
    return _report_skipped(failures)


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
    p.add_argument("--images", required=True, metavar="DIR_OR_GLOB",
                   help="target images: a folder, a glob or a file (the reference and its masks are left out)")
    p.add_argument("--out", required=True, help="output folder (masks/, overlays/, predictions.csv)")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=methods, help=f"default: {DEFAULT_METHOD}")
    p.add_argument("--backbone", **backbone_option(SAM_BACKBONES))
    p.add_argument("--weights", help="local checkpoint file or Hugging Face-format folder")
    p.add_argument("--cache-dir", help="on-disk embedding cache directory")
    p.add_argument("--seed", type=int, default=0, help=f"seed of the warping fit ({seeded})")
    p.add_argument("--warp-iterations", type=int, metavar="N",
                   help=f"Adam steps of the warping fit ({seeded}; default: the method's)")
    p.set_defaults(func=cmd_oneshot)
