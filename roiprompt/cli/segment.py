"""``roiprompt segment``: segment an image or a folder from a box and/or points."""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..batch.inputs import IMAGE_SUFFIXES, Input, list_inputs, mask_name, output_stems
from ..batch.runs import BatchRun, prediction_row, write_output
from ..errors import PromptWarning, RoiPromptError
from ._common import OUTPUT_LAYOUT, SAM_BACKBONES, _structure_name, add_slice_options, backbone_option
from ._loop import Job, process
from ._ray import add_ray_options, executor

#: Structure name of the masks ``segment`` writes unless ``--structure`` names it (the name a single-structure
#: folder dataset and a plain ``oneshot --reference-mask`` use too).
DEFAULT_STRUCTURE = "roi"


def _weights_setting(weights: str | None) -> str | None:
    """``--weights`` as recorded in the run's settings: the absolute path (the same file from any directory)."""
    return None if weights is None else str(Path(weights).expanduser().resolve())


def cmd_segment(args: argparse.Namespace) -> int:
    from ..version import __version__

    images = list_inputs(Path(args.images), args.slice, args.axis)
    if not images:
        raise RoiPromptError(f"{args.images}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    if args.box is None and not args.point and not args.negative_point:
        raise RoiPromptError("give a prompt: --box X0 Y0 X1 Y1 and/or --point X Y (repeatable)")
    points = [*(args.point or []), *(args.negative_point or [])]
    labels = [1] * len(args.point or []) + [0] * len(args.negative_point or [])
    structure = args.structure
    settings = {"command": "segment", "backbone": args.backbone, "weights": _weights_setting(args.weights),
                "box": args.box, "points": args.point or [], "negative_points": args.negative_point or [],
                "structure": structure, "slice": args.slice, "axis": args.axis, "roiprompt": __version__}
    run = BatchRun(Path(args.out), settings, images, output_stems(images, [structure]),
                   overwrite=args.overwrite).open()
    job = SegmentJob(out=run.out.resolve(), backbone=args.backbone, weights=args.weights, box=args.box,
                     points=points, labels=labels, structure=structure)
    return process(run, job, command="segment", argv=args.argv, verb="segmenting", executor=executor(args))


@dataclass
class SegmentJob(Job):
    """``segment``'s work on one image: the same box and/or points on every image (picklable, for Ray)."""

    out: Path
    backbone: str
    weights: str | None
    box: list[float] | None
    points: list[list[float]]
    labels: list[int]
    structure: str

    def load(self) -> None:
        from ..models.backbones import load_backbone
        from ..predictor import SamPredictor

        backbone = load_backbone(self.backbone, weights=self.weights)
        self.weights_sha256 = backbone.weights_sha256
        self._predictor = SamPredictor(backbone)
        # A backbone trained with box prompts only says so (Backbone.point_prompts, False for LiteMedSAM): points
        # without a box then give a near-empty mask, and every such row is marked.
        self._points_only = bool(self.points) and self.box is None and not getattr(backbone, "point_prompts", True)

    def predict(self, item: Input, image: np.ndarray):
        predictor = self._predictor
        predictor.set_image(image, source=str(item))
        points = self.points
        with warnings.catch_warnings():  # the CLI says it itself, per image, and marks the CSV row
            warnings.simplefilter("ignore", PromptWarning)
            res = predictor.predict(points=np.array(points, float) if points else None,
                                    point_labels=np.array(self.labels) if points else None,
                                    box=np.array(self.box, float) if self.box else None)
        mask, iou, _ = res.best()
        return mask, iou

    def write(self, item: Input, stem: str, image: np.ndarray, result):
        from ..data import write_mask_png, write_overlay_png

        mask, iou = result
        structure = self.structure
        mask_rel = f"masks/{mask_name(stem, structure)}"
        outputs = {mask_rel: write_output(self.out, mask_rel, lambda p: write_mask_png(p, mask))}
        outputs[f"overlays/{stem}.png"] = write_output(
            self.out, f"overlays/{stem}.png",
            lambda p: write_overlay_png(p, image, {structure: mask}, boxes=[self.box] if self.box else None,
                                        points=self.points or None, labels=self.labels or None))
        codes, messages = [], []
        if self._points_only:
            codes.append("points_only")
            messages.append(f"{item}: points without a box: {self.backbone} was trained with boxes only, the "
                            "mask is likely poor (add --box)")
        if not mask.any():
            codes.append("empty")
            messages.append(f"{item}: the {structure} mask is empty")
        # the scores a SAM-family prediction reports everywhere (box_prompt too): quality = predicted IoU
        return outputs, [prediction_row(structure, {"iou_pred": iou, "quality": iou}, mask, codes)], messages


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
    p.add_argument("--out", required=True,
                   help="output folder (masks/, overlays/, predictions.csv, manifest.jsonl); a rerun resumes")
    p.add_argument("--overwrite", action="store_true",
                   help="redo every image, replacing the results in --out (default: resume, skipping finished ones)")
    add_slice_options(p)
    p.add_argument("--backbone", **backbone_option(SAM_BACKBONES))
    p.add_argument("--weights", help="local checkpoint file or Hugging Face-format folder")
    add_ray_options(p)
    p.set_defaults(func=cmd_segment)
