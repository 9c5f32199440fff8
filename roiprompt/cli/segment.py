"""``roiprompt segment``: segment an image or a folder from a box and/or points."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import RoiPromptError
from ._common import (IMAGE_SUFFIXES, OUTPUT_LAYOUT, SAM_BACKBONES, _console, _list_images, _mask_name,
                      _output_stems, _PredictionTable, _progress, _report_skipped, _structure_name, backbone_option)

#: Structure name of the masks ``segment`` writes unless ``--structure`` names it (the name a single-structure
#: folder dataset and a plain ``oneshot --reference-mask`` use too).
DEFAULT_STRUCTURE = "roi"


def cmd_segment(args: argparse.Namespace) -> int:
    from ..data import read_image, write_mask_png, write_overlay_png
    from ..models.backbones import load_backbone
    from ..predictor import SamPredictor

    images = _list_images(Path(args.images))
    if not images:
        raise RoiPromptError(f"{args.images}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    if args.box is None and not args.point and not args.negative_point:
        raise RoiPromptError("give a prompt: --box X0 Y0 X1 Y1 and/or --point X Y (repeatable)")
    stems = _output_stems(images)
    points = [*(args.point or []), *(args.negative_point or [])]
    labels = [1] * len(args.point or []) + [0] * len(args.negative_point or [])
    out = Path(args.out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    predictor = SamPredictor(load_backbone(args.backbone, weights=args.weights))
    failures: list[str] = []
    with _progress() as bar, _PredictionTable(out / "predictions.csv") as table:
        task = bar.add_task("segmenting", total=len(images))
        for path in images:
            try:
                image = read_image(path)
                predictor.set_image(image, source=str(path))
                res = predictor.predict(points=np.array(points, float) if points else None,
                                        point_labels=np.array(labels) if points else None,
                                        box=np.array(args.box, float) if args.box else None)
                mask, iou, _ = res.best()
                stem = stems[path]
                write_mask_png(out / "masks" / _mask_name(stem, args.structure), mask)
                write_overlay_png(out / "overlays" / f"{stem}.png", image, {args.structure: mask},
                                  boxes=[args.box] if args.box else None,
                                  points=points or None, labels=labels or None)
                # the scores a SAM-family prediction reports everywhere (box_prompt too): quality = predicted IoU
                table.add(path, args.structure, {"iou_pred": iou, "quality": iou}, mask)
            except RoiPromptError as err:  # skip a bad file, report it at the end, finish the rest
                failures.append(str(err))
            bar.advance(task)
    _console().print(f"{len(images) - len(failures)} segmented, {len(failures)} skipped: masks, overlays and "
                     f"predictions.csv in {out}")
    return _report_skipped(failures)


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``segment`` subcommand."""
    p = sub.add_parser(
        "segment", parents=parents, help="segment an image or a folder from a box or points",
        description="Segment one structure in each image from the same box and/or points (pixels of the original "
                    "image). " + OUTPUT_LAYOUT)
    p.add_argument("images", help="an image file, a folder, or a glob")
    p.add_argument("--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"), help="box in pixels")
    p.add_argument("--point", nargs=2, type=float, action="append", metavar=("X", "Y"), help="foreground point")
    p.add_argument("--negative-point", nargs=2, type=float, action="append", metavar=("X", "Y"),
                   help="background point")
    p.add_argument("--structure", default=DEFAULT_STRUCTURE, type=_structure_name, metavar="NAME",
                   help=f"name of the segmented structure, in mask file names and the CSV (default: "
                        f"{DEFAULT_STRUCTURE})")
    p.add_argument("--out", required=True, help="output folder (masks/, overlays/, predictions.csv)")
    p.add_argument("--backbone", **backbone_option(SAM_BACKBONES))
    p.add_argument("--weights", help="local checkpoint file or Hugging Face-format folder")
    p.set_defaults(func=cmd_segment)
