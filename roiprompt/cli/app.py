"""``roiprompt app [STUDY_DIR]``: the browser app (:mod:`roiprompt.app`) on 127.0.0.1."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ..batch.runs import escape
from ..errors import RoiPromptError, shown
from ._common import SAM_BACKBONES, _console, backbone_option


def cmd_app(args: argparse.Namespace) -> int:
    from ..app import Session, Study, serve
    from ..methods.oneshot import DEFAULT_ONESHOT_METHOD

    if args.study is None:
        study_dir = Path(tempfile.mkdtemp(prefix="roiprompt-study-"))
    else:
        study_dir = Path(args.study)
        if not study_dir.is_dir():
            raise RoiPromptError(f"{shown(args.study)}: no such folder (give the folder of the study's images)")
    out = Path(args.out) if args.out is not None else study_dir.with_name(study_dir.name + "-roiprompt")
    if out.resolve() == study_dir.resolve():
        raise RoiPromptError("--out must not be the study folder itself")
    if args.truth is not None and not Path(args.truth).is_dir():
        raise RoiPromptError(f"--truth {shown(args.truth)}: no such folder")
    config = {"warp_iterations": args.warp_iterations} if args.warp_iterations is not None else {}
    session = Session(Study(study_dir, axis=args.axis), out, method=args.method or DEFAULT_ONESHOT_METHOD,
                      backbone=args.backbone, weights=args.weights, config=config,
                      truth=None if args.truth is None else Path(args.truth))
    console = _console()
    if args.reference_dir is not None:
        found = session.load_references(Path(args.reference_dir))
        console.print(f"references from {escape(shown(args.reference_dir))}: "
                      + (", ".join(escape(session.study.get(i).name) for i in found) or "none of them is in the study"))
    if args.labels is not None:
        path = Path(args.labels)
        if not path.is_file():
            raise RoiPromptError(f"--labels {shown(args.labels)}: no such file")
        loaded = session.classify.read_labels_csv(path.read_bytes(), shown(path))
        console.print(f"labels from {escape(shown(path))}: {loaded['set']} images"
                      + (f"; not in the study: {escape(', '.join(loaded['unknown'][:5]))}" if loaded["unknown"] else ""))
    console.print(f"roiprompt app: study {escape(shown(study_dir))} ({len(session.study)} images), exports to "
                  f"{escape(shown(out))}")
    console.print(f"open http://{'127.0.0.1' if args.host in ('127.0.0.1', '0.0.0.0') else args.host}:{args.port} "
                  "in a browser (Ctrl+C stops)")
    serve(session, host=args.host, port=args.port)
    return 0


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``app``."""
    from ..methods import list_methods

    p = sub.add_parser(
        "app", parents=parents, help="the browser app: annotate one image, propagate, review, correct, export",
        description="Start a local web app over a study folder: annotate a reference with a box, clicks or a brush "
                    "(LiteMedSAM), propagate it to every image with the one-shot default, review the results "
                    "sorted by the quality flag, correct and accept images as further references, and export "
                    "PNG and NIfTI masks, predictions.csv, the fitted reference and an HTML report. The Classify "
                    "tab trains a few-shot classifier on labelled images with their ROI masks and predicts the "
                    "rest. Everything "
                    "stays on this machine: the app listens on 127.0.0.1 unless --host is given, reads only the "
                    "study folder and writes only --out.")
    p.add_argument("study", nargs="?", metavar="STUDY_DIR",
                   help="folder of images (PNG, JPEG, BMP, TIFF, DICOM; every slice of a NIfTI volume); without "
                        "it, an empty study to upload files into")
    p.add_argument("--out", help="export folder (default: STUDY_DIR-roiprompt next to the study)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the study to "
                        "the network)")
    p.add_argument("--axis", type=int, choices=(0, 1, 2), default=2,
                   help="NIfTI volumes: axis of the slices, 0 sagittal, 1 coronal, 2 axial (default)")
    p.add_argument("--truth", metavar="DIR", help="ground-truth masks: the exported report gives Dice against them")
    p.add_argument("--reference-dir", metavar="DIR",
                   help="start from a fitted reference (oneshot --save-reference, or an export's reference/): its "
                        "method is used as fitted, and its reference images found in the study are shown accepted")
    p.add_argument("--labels", metavar="CSV",
                   help="labels for the Classify tab: a CSV with a header naming the image column (image, id, "
                        "name or file) and label")
    p.add_argument("--method", choices=list_methods(task="oneshot"), help="one-shot method (default: the default)")
    p.add_argument("--backbone", **backbone_option(SAM_BACKBONES))
    p.add_argument("--weights", help="local checkpoint file or Hugging Face-format folder")
    p.add_argument("--warp-iterations", type=int, metavar="N", help="Adam steps of the warping fit")
    p.set_defaults(func=cmd_app)
