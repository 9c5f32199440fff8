"""Command line: ``roiprompt datasets | segment | oneshot | bench | demo``.

One ``main(argv=None) -> int`` with argparse subcommands, callable from tests.

- ``datasets``: list the datasets found under the data root.
- ``segment``: segment an image or a folder from a box and/or points.
- ``oneshot``: segment a folder from one annotated reference image (Med-PerSAM or a one-shot baseline).
- ``bench``: benchmark a method on a dataset and write JSON records.
- ``demo``: run box_prompt on a few images of each dataset found and write overlays.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import RoiPromptError

SAM_BACKBONES = ("litemedsam", "sam", "medsam", "sam2")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".nii", ".nii.gz", ".gif")


def _console():
    from rich.console import Console

    # Wide, unwrapped output when piped (logs, CI); rich would otherwise wrap at 80 columns.
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=False)


# -- datasets -----------------------------------------------------------------------------------------------
def _find_datasets(args: argparse.Namespace) -> tuple[Path, dict[str, int]]:
    """(data root, {dataset: count}); explains how to get the data when nothing is found."""
    from .data import default_root, find_datasets

    root = Path(args.root) if args.root else default_root()
    found = find_datasets(root)
    if not found:
        _console().print(f"[red]no datasets found under {root}[/red]\n" + _HOW_TO_GET_DATA)
    return root, found


def cmd_datasets(args: argparse.Namespace) -> int:
    from rich.table import Table

    root, found = _find_datasets(args)
    if not found:
        return 1
    console = _console()
    table = Table(title=f"datasets under {root}")
    for col in ("name", "images"):
        table.add_column(col)
    for name, count in sorted(found.items()):
        table.add_row(name, str(count))
    console.print(table)
    return 0


_HOW_TO_GET_DATA = (
    "roiprompt reads public datasets in their official folder layouts:\n"
    "  kvasir_seg/Kvasir-SEG/{images,masks}     https://datasets.simula.no/kvasir-seg/\n"
    "  busbra/BUSBRA/{Images,Masks,bus_data.csv,5-fold-cv.csv}   https://doi.org/10.5281/zenodo.7730709\n"
    "  jsrt/JSRT/{jsrt_images/images,masks/masks/<structure>}   http://db.jsrt.or.jp/eng.php + SCR masks\n"
    "Put them under one folder and set ROIPROMPT_DATA=/that/folder (default: ../shared/data next to the\n"
    "checkout), or pass --root. Your own data: `roiprompt segment` works on any image folder.")


# -- segment ------------------------------------------------------------------------------------------------
def _list_images(target: Path) -> list[Path]:
    if target.is_dir():
        return sorted(p for p in target.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))
    if target.exists():
        return [target]
    return sorted(Path(p) for p in glob.glob(str(target)))


def _stem(path: Path) -> str:
    """Output name of an input file: its name up to the first dot (``JPCLN001.IMG.png`` -> ``JPCLN001``)."""
    return path.name.split(".")[0]


def cmd_segment(args: argparse.Namespace) -> int:
    from .data import read_image, write_mask_png, write_overlay_png
    from .models.backbones import load_backbone
    from .predictor import SamPredictor

    images = _list_images(Path(args.images))
    if not images:
        raise RoiPromptError(f"{args.images}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    if args.box is None and not args.point and not args.negative_point:
        raise RoiPromptError("give a prompt: --box X0 Y0 X1 Y1 and/or --point X Y (repeatable)")
    points = [*(args.point or []), *(args.negative_point or [])]
    labels = [1] * len(args.point or []) + [0] * len(args.negative_point or [])
    out = Path(args.out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    predictor = SamPredictor(load_backbone(args.backbone, weights=args.weights))
    failures: list[str] = []
    rows = ["file,iou_pred,area_px"]
    with _progress() as bar:
        task = bar.add_task("segmenting", total=len(images))
        for path in images:
            try:
                image = read_image(path)
                predictor.set_image(image, source=str(path))
                res = predictor.predict(points=np.array(points, float) if points else None,
                                        point_labels=np.array(labels) if points else None,
                                        box=np.array(args.box, float) if args.box else None)
                mask, iou, _ = res.best()
                stem = _stem(path)
                write_mask_png(out / "masks" / f"{stem}.png", mask)
                write_overlay_png(out / "overlays" / f"{stem}.png", image, mask,
                                  boxes=[args.box] if args.box else None,
                                  points=points or None, labels=labels or None)
                rows.append(f"{path.name},{iou:.4f},{int(mask.sum())}")
            except RoiPromptError as err:  # skip a bad file, report it at the end, finish the rest
                failures.append(str(err))
            bar.advance(task)
    (out / "predictions.csv").write_text("\n".join(rows) + "\n")
    _console().print(f"wrote {len(images) - len(failures)} masks and overlays to {out}")
    return _report_skipped(failures)


def _report_skipped(failures: Sequence[str]) -> int:
    """List the files a batch command skipped; exit status 1 if any, else 0."""
    if not failures:
        return 0
    console = _console()
    console.print(f"[red]skipped {len(failures)} file(s):[/red]")
    for f in failures:
        console.print(f"  {f}")
    return 1


# -- oneshot ------------------------------------------------------------------------------------------------
def _reference_masks(specs: Sequence[str], image_hw: tuple[int, int]) -> tuple[dict[str, np.ndarray], list[Path]]:
    """``--reference-mask`` values (``PATH`` or ``NAME=PATH``) -> ({structure: HxW bool mask}, the mask files)."""
    from .data import read_mask
    from .methods.oneshot import DEFAULT_STRUCTURE

    masks: dict[str, np.ndarray] = {}
    paths: list[Path] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or "/" in name or "\\" in name or Path(spec).exists():  # a plain path
            name, path = DEFAULT_STRUCTURE, spec
        if not path:
            raise RoiPromptError(f"--reference-mask {spec!r}: give MASK or NAME=MASK")
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


def _score(value: float | None) -> str:
    """CSV cell of an optional score: empty when missing or NaN."""
    return "" if value is None or not np.isfinite(value) else f"{float(value):.4f}"


def cmd_oneshot(args: argparse.Namespace) -> int:
    from .data import read_image, write_mask_png, write_overlay_png
    from .methods import load_method
    from .methods.oneshot import config_fields

    # Bad reference inputs fail here, before the model is loaded.
    ref_path = Path(args.reference)
    ref_image = read_image(ref_path)
    ref_masks, mask_paths = _reference_masks(args.reference_mask, ref_image.shape[:2])
    reference_files = [ref_path, *mask_paths]  # never targets, even when they sit in the target folder
    images = [p for p in _list_images(Path(args.images)) if not any(_same_file(p, r) for r in reference_files)]
    if not images:
        raise RoiPromptError(f"{args.images}: no target images found besides the reference (looked for "
                             f"{', '.join(IMAGE_SUFFIXES)})")
    config: dict = {"weights": args.weights, "cache_dir": args.cache_dir}
    if "seed" in config_fields(args.method):  # the methods that fit a warping model
        config["seed"] = args.seed
        if args.warp_iterations is not None:
            config["warp_iterations"] = args.warp_iterations
    elif args.warp_iterations is not None or args.seed != 0:
        _console().print(f"note: {args.method} fits no warping model; --seed and --warp-iterations have no effect")
    out = Path(args.out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    write_overlay_png(out / "overlays" / "reference.png", ref_image, ref_masks)

    failures: list[str] = []
    targets: list[tuple[Path, np.ndarray]] = []
    rows: list[list[str]] = []
    with _progress() as bar:
        task = bar.add_task("reading targets", total=len(images))
        for path in images:  # all first: the readable ones are the pool the warping model learns from
            try:
                targets.append((path, read_image(path)))
            except RoiPromptError as err:  # skip a bad file, report it at the end, finish the rest
                failures.append(str(err))
            bar.advance(task)
        if targets:
            task = bar.add_task(f"{args.method}: fitting the reference", total=None)
            method = load_method(args.method, backbone=args.backbone, **config)
            method.set_reference(ref_image, ref_masks, source=str(ref_path), pool=[image for _, image in targets])
            bar.update(task, total=1, completed=1)
            task = bar.add_task(f"{args.method}: segmenting", total=len(targets))
        for path, image in targets:
            try:
                preds = method.predict_all(image, source=str(path))
                stem = _stem(path)
                for structure, pred in preds.items():
                    write_mask_png(out / "masks" / f"{stem}_{structure}.png", pred.mask)
                write_overlay_png(out / "overlays" / f"{stem}.png", image, {s: p.mask for s, p in preds.items()})
                rows += [[path.name, s, _score(p.scores.get("iou_pred")), _score(p.scores.get("warp_agreement")),
                          str(int(p.mask.sum()))] for s, p in preds.items()]
            except RoiPromptError as err:
                failures.append(str(err))
            bar.advance(task)
    with open(out / "predictions.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "structure", "iou_pred", "warp_agreement", "area_px"])
        writer.writerows(rows)
    _console().print(f"{len(images) - len(failures)} segmented, {len(failures)} skipped: masks, overlays and "
                     f"predictions.csv in {out}")
    return _report_skipped(failures)


# -- bench --------------------------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from .engine.bench import run_segmentation_bench
    from .engine.oneshot_bench import run_oneshot_bench
    from .methods import method_class
    from .methods.oneshot import OneShotMethod

    config = {"cache_dir": args.cache_dir} if args.cache_dir else {}
    variant = _parse_config(args.config or [])
    config.update(variant)
    if method_class(args.method).task == "classification":
        return _bench_classifier(args, argv, config, variant)
    if args.method.startswith("concept_text"):
        return _bench_concept(args, argv, config, variant)
    oneshot = issubclass(method_class(args.method), OneShotMethod)
    if args.seeds != 1 and not oneshot:
        _console().print(f"note: {args.method} is deterministic given ground-truth prompts; --seeds has no effect")
    with _progress() as bar:
        task = bar.add_task(f"{args.method} on {args.dataset}", total=None)
        runner = run_oneshot_bench if oneshot else run_segmentation_bench
        extra = {"seeds": args.seeds} if oneshot else {}
        run = runner(args.method, args.dataset, structures=args.structure, limit=args.limit, root=args.root,
                     backbone=args.backbone, progress=lambda done, total: bar.update(task, completed=done, total=total),
                     **extra, **config)
    if run.failures:
        _console().print(f"[red]{len(run.failures)} image(s) failed:[/red] " + "; ".join(run.failures[:10]))
    return _report_records(args, run.records(command="roiprompt " + shlex.join(argv)), variant)


def _bench_classifier(args: argparse.Namespace, argv: Sequence[str], config: dict, variant: dict) -> int:
    """``bench`` for a few-shot classifier: K per class x seeds, the test split, the chosen test-time masks."""
    from .engine.classify_bench import run_classification_bench

    shots = [k if k == "all" else int(k) for k in args.shots.split(",")]
    cache_dir = config.pop("cache_dir", None)
    records = run_classification_bench(
        [args.method], args.dataset, label=args.label, structures=args.structure, shots=shots, seeds=args.seeds,
        mask_sources=args.masks.split(","), root=args.root, backbone=args.backbone, cache_dir=cache_dir,
        config=config, command="roiprompt " + shlex.join(argv), log=_console().print)
    return _report_records(args, records, variant)


# -- explain ------------------------------------------------------------------------------------------------
def cmd_explain(args: argparse.Namespace) -> int:
    """Fit MedFocusCLIP on K images per class of a dataset's train split, then draw, for each target, the
    attention of its visual pooling with and without the segmentation guidance."""
    from .data import load_dataset, read_image, read_mask, sample_per_class, write_attention_png
    from .engine.classify_bench import TASKS
    from .methods import load_method
    from .methods.classification.features import roi_mask

    if (args.image is None) != (args.mask is None):
        raise RoiPromptError("explain: give --image and --mask together (or neither, for test images of --dataset)")
    label = args.label or ("pathology" if args.dataset == "busbra" else None)
    task = next((t for t in TASKS.values() if t["dataset"] == args.dataset and t["label"] == label), {})
    data = load_dataset(args.dataset, root=args.root, **({"label": label} if label else {}))
    train = data.split("train")
    config = {"weights": args.weights, "cache_dir": args.cache_dir, "views": args.views, "seed": args.seed,
              "class_prompts": task.get("class_prompts"), "structures": task.get("structures")}
    method = load_method("medfocusclip", backbone=args.backbone, **{k: v for k, v in config.items() if v is not None})
    with _progress() as bar:
        bar.add_task(f"medfocusclip: fitting {args.shots} per class", total=None)
        method.fit([train[i] for i in sample_per_class(train, args.shots, args.seed)])
    if args.image is not None:
        image = read_image(args.image)
        targets = [(_stem(Path(args.image)), image, read_mask(args.mask, image.shape[:2]), None)]
    else:
        test = data.split("test")
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


def _bench_concept(args: argparse.Namespace, argv: Sequence[str], config: dict, variant: dict) -> int:
    """``bench`` for a supervised conceptual-text segmenter: fit on label budgets of the train split, score test."""
    from .engine.concept_bench import SEG_TASKS, run_concept_bench

    structure = (args.structure or [None])[0]
    tasks = [name for name, t in SEG_TASKS.items() if t["dataset"] == args.dataset
             and (structure is None or t["structure"] == structure)]
    if len(tasks) != 1:
        raise RoiPromptError(f"{args.method}: choose one task with --dataset/--structure: "
                             + ", ".join(f"{t['dataset']}/{t['structure']}" for t in SEG_TASKS.values()))
    if args.method == "concept_text_teacher":
        raise RoiPromptError("concept_text_teacher is scored by `bench concept_text` (one fit gives both)")
    cache_dir = config.pop("cache_dir", None)
    records = run_concept_bench([args.method], tasks[0], [float(f) for f in args.fractions.split(",")],
                                seeds=args.seeds, root=args.root, backbone=args.backbone, cache_dir=cache_dir,
                                config=config, limit=args.limit, command="roiprompt " + shlex.join(argv),
                                log=_console().print)
    return _report_records(args, records, variant)


def _report_records(args: argparse.Namespace, records: list[dict], variant: dict) -> int:
    """Label ablation rows with their config overrides, print the records and write them to ``--json``."""
    from .engine.records import write_records

    if variant:  # ablation rows are told apart from the defaults by this label
        label = ",".join(f"{k}={v}" for k, v in variant.items())
        records = [{**r, "variant": label} for r in records]
    _print_records(records)
    if args.json:
        path = write_records(args.json, records)
        _console().print(f"wrote {len(records)} records to {path}")
    return 0


def _parse_config(items: Sequence[str]) -> dict:
    """``["refine_rounds=3", "points=subregion"]`` -> ``{"refine_rounds": 3, "points": "subregion"}`` (JSON values,
    else strings)."""
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RoiPromptError(f"--config expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _print_records(records: list[dict]) -> None:
    from rich.table import Table

    table = Table()
    for col in ("method", "dataset", "structure / K, masks", "metric", "mean", "95% CI", "n", "s/image",
                "peak RSS MB"):
        table.add_column(col)
    for r in records:
        where = (f"K={r['setting']['shots']}, {r['mask_source']}" if r["task"] == "classification"
                 else str(r["structure"]))
        table.add_row(r["method"], r["dataset"], where, r["metric"], f"{r['mean']:.4f}",
                      f"[{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}]", str(r["n"]), f"{r['seconds_per_image']:.3f}",
                      f"{r['peak_rss_mb']:.0f}")
    _console().print(table)


# -- demo ---------------------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from rich.table import Table

    from . import metrics
    from .data import load_dataset, write_overlay_png
    from .methods import load_method

    root, found = _find_datasets(args)
    if not found:
        return 1
    console = _console()
    method = load_method("box_prompt")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = Table(title=f"box_prompt (LiteMedSAM + ground-truth box): Dice on {args.n} images per dataset")
    for col in ("dataset", "structure", "images", "mean Dice", "min Dice"):
        table.add_column(col)
    with _progress() as bar:
        for name in sorted(found):
            data = load_dataset(name, root=root)
            n = min(args.n, len(data))
            task = bar.add_task(f"demo: {name}", total=n)
            dice: dict[str, list[float]] = {s: [] for s in data.structures}
            for i in range(n):
                sample = data[i]
                masks = {}
                for structure in data.structures:
                    if not sample.masks[structure].any():
                        continue
                    pred = method.predict(sample.image, **method.prompts_from_truth(sample, structure))
                    dice[structure].append(metrics.dice(pred.mask, sample.masks[structure]))
                    masks[structure] = pred.mask
                write_overlay_png(out / f"{name}_{sample.id}.png", sample.image, masks)
                bar.advance(task)
            for structure, values in dice.items():
                table.add_row(name, structure, str(len(values)), f"{np.mean(values):.3f}", f"{np.min(values):.3f}")
    console.print(table)
    console.print(f"overlays written to {out.resolve()} (predicted masks in colour)")
    return 0


# -- main ---------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from .engine.inference import RUNTIMES
    from .models.backbones import list_backbones

    from .methods import list_methods
    from .methods.oneshot import oneshot_methods

    parser = argparse.ArgumentParser(prog="roiprompt", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="CPU threads for the encoders (default: PyTorch's choice)")
    parser.add_argument("--runtime", choices=RUNTIMES,
                        help="how the image encoder runs (default auto: OpenVINO when installed, else eager); "
                             "sets $ROIPROMPT_RUNTIME")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list the datasets found under the data root, with counts")
    p.add_argument("--root", help="data root (default: $ROIPROMPT_DATA or ../shared/data)")

    p = sub.add_parser("segment", help="segment an image or a folder from a box or points")
    p.add_argument("images", help="an image file, a folder, or a glob")
    p.add_argument("--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"), help="box in pixels")
    p.add_argument("--point", nargs=2, type=float, action="append", metavar=("X", "Y"), help="foreground point")
    p.add_argument("--negative-point", nargs=2, type=float, action="append", metavar=("X", "Y"),
                   help="background point")
    p.add_argument("--out", required=True, help="output folder (masks/, overlays/, predictions.csv)")
    p.add_argument("--backbone", default="litemedsam", choices=SAM_BACKBONES)
    p.add_argument("--weights", help="local checkpoint file or Hugging Face-format folder")

    p = sub.add_parser(
        "oneshot", help="segment a folder from one annotated reference image (Med-PerSAM or a one-shot baseline)",
        description="Learn the structures of one annotated reference image and segment them in every target image; "
                    "writes masks/<stem>_<structure>.png, overlays/<stem>.png (and overlays/reference.png) and "
                    "predictions.csv. Exit code 1 when a target file was skipped.")
    p.add_argument("--reference", required=True, metavar="IMG", help="the annotated reference image")
    p.add_argument("--reference-mask", required=True, action="append", metavar="[NAME=]MASK",
                   help="binary mask of the reference, the size of the image; repeat with NAME=MASK for several "
                        "structures (e.g. --reference-mask left_lung=a.png --reference-mask heart=b.png); a plain "
                        "path names the structure 'roi'")
    p.add_argument("--images", required=True, metavar="DIR_OR_GLOB",
                   help="target images: a folder, a glob or a file (the reference and its masks are left out)")
    p.add_argument("--out", required=True, help="output folder (masks/, overlays/, predictions.csv)")
    p.add_argument("--method", default="med_persam", choices=oneshot_methods(), help="default: med_persam")
    p.add_argument("--backbone", default="litemedsam", choices=SAM_BACKBONES)
    p.add_argument("--weights", help="local checkpoint file or Hugging Face-format folder")
    p.add_argument("--cache-dir", help="on-disk embedding cache directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the warping fit (med_persam, registration)")
    p.add_argument("--warp-iterations", type=int, metavar="N",
                   help="Adam steps of the warping fit (med_persam, registration; default: the method's, 300)")

    p = sub.add_parser("bench", help="benchmark a method on a dataset and write JSON records")
    p.add_argument("method", choices=list_methods())
    p.add_argument("--dataset", required=True)
    p.add_argument("--structure", action="append", help="structure(s) to evaluate (default: all)")
    p.add_argument("--limit", type=int, help="first N images only (one-shot methods: first N test images)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (one-shot: references drawn from train)")
    p.add_argument("--root", help="data root")
    p.add_argument("--backbone", default="litemedsam", choices=list_backbones())
    p.add_argument("--cache-dir", help="on-disk embedding cache directory")
    p.add_argument("--json", help="write records to this JSON file")
    p.add_argument("--label", help="classifiers: label column (busbra: pathology, birads)")
    p.add_argument("--shots", default="8,16,32,64,all", help="classifiers: images per class, comma-separated")
    p.add_argument("--masks", default="gt", help="classifiers: test-time mask sources (gt, gt_eroded, gt_dilated, "
                                                 "box_prompt, med_persam)")
    p.add_argument("--fractions", default="1.0", help="concept_text*: label budgets, fractions of the train split")
    p.add_argument("--config", action="append", metavar="KEY=VALUE",
                   help="method config override, e.g. refine_rounds=3 (repeatable; recorded as the row's variant)")

    p = sub.add_parser(
        "explain", help="fit MedFocusCLIP few-shot and draw its attention with and without segmentation guidance",
        description="Fit MedFocusCLIP on --shots images per class of the dataset's train split, then write "
                    "<stem>_attention.png for each target: the pooling attention without guidance next to the "
                    "guided one, with the ROI contour. Targets: --image/--mask, else the first --n test images.")
    p.add_argument("--dataset", required=True, help="support set source: busbra, jsrt, ...")
    p.add_argument("--label", help="label column (busbra: pathology or birads)")
    p.add_argument("--shots", type=int, default=8, help="training images per class (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--views", type=int, default=1, help="augmented views per training image (default 1: fast)")
    p.add_argument("--image", help="a target image (with --mask)")
    p.add_argument("--mask", help="the target's ROI mask, the size of the image")
    p.add_argument("--n", type=int, default=4, help="without --image: this many test images of the dataset")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--root", help="data root")
    p.add_argument("--backbone", default="litemedsam", choices=list_backbones())
    p.add_argument("--weights", help="local checkpoint file or Hugging Face-format folder")
    p.add_argument("--cache-dir", help="on-disk embedding cache directory")

    p = sub.add_parser("demo", help="run box_prompt on a few images of each dataset found, write overlays")
    p.add_argument("--root", help="data root")
    p.add_argument("--n", type=int, default=4, help="images per dataset")
    p.add_argument("--out", default="demo_output", help="folder for overlay PNGs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``roiprompt`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            print(f"roiprompt: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        import torch

        torch.set_num_threads(args.threads)
    if args.runtime is not None:
        os.environ["ROIPROMPT_RUNTIME"] = args.runtime  # read by every backbone this command builds
    try:
        if args.command == "datasets":
            return cmd_datasets(args)
        if args.command == "segment":
            return cmd_segment(args)
        if args.command == "oneshot":
            return cmd_oneshot(args)
        if args.command == "bench":
            return cmd_bench(args, argv)
        if args.command == "explain":
            return cmd_explain(args)
        if args.command == "demo":
            return cmd_demo(args)
    except RoiPromptError as err:
        print(f"roiprompt {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
