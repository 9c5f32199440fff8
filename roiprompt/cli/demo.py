"""``roiprompt demo``: the flagship on each dataset found. One annotated train image per dataset, its structure
segmented in the first test images by the one-shot default (the ``roiprompt oneshot`` command itself), Dice next
to the box oracle, an HTML report per dataset, and the ``roiprompt app`` command to go on in the browser."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from ..batch.runs import escape
from ._common import _console
from .datasets import _find_datasets

#: The oracle printed beside the one-shot Dice: LiteMedSAM prompted with the ground-truth box (an upper bound).
ORACLE = "box_prompt"
#: The structure shown per dataset (default: its first): JSRT's heart, the anatomy the one-shot table leads with.
DEMO_STRUCTURE = {"jsrt": "heart"}


def _link_images(folder: Path, records) -> None:
    """``folder`` holds a link to each record's image (the study the app opens, the targets oneshot reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        link = folder / record.image.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.abspath(record.image))


def _demo_dataset(name: str, root: Path, n: int, out: Path, threads: int | None, warp: int | None) -> dict:
    """Run one dataset: oneshot from one train reference over ``n`` test images; Dice, oracle Dice, report."""
    from .. import metrics
    from ..data import load_dataset, read_mask, write_mask_png
    from ..evaluation.report import build_report
    from ..files import atomic_write_text
    from ..methods import load_method
    from . import main

    data = load_dataset(name, root=root)
    structure = DEMO_STRUCTURE.get(name, data.structures[0])
    splits = data.splits
    train = data.split("train") if "train" in splits else data
    test = data.split("test") if "test" in splits else data
    reference = next(train[i] for i in range(len(train)) if train[i].masks[structure].any())
    targets = [s for s in (test[i] for i in range(min(len(test), n + 1))) if s.id != reference.id][:n]
    ref_record = train.records[train.ids.index(reference.id)]
    target_records = [test.records[test.ids.index(s.id)] for s in targets]
    images, run, truth = out / name / "images", out / name / "oneshot", out / name / "truth"
    fitted = out / name / "reference"
    _link_images(images, [ref_record, *target_records])
    argv = ["oneshot", "--reference", str(images / ref_record.image.name), "--reference-mask",
            f"{structure}={ref_record.masks[structure]}", "--images", str(images), "--out", str(run), "--overwrite",
            "--save-reference", str(fitted)]
    if ref_record.mask_threshold is not None:
        argv += ["--mask-threshold", str(ref_record.mask_threshold)]
    if warp is not None:
        argv += ["--warp-iterations", str(warp)]
    if threads is not None:
        argv = ["--threads", str(threads), *argv]
    status = main(argv)
    if status not in (0, 1):
        raise SystemExit(status)
    by_name = {r.image.name: s for r, s in zip(target_records, targets)}
    oracle = load_method(ORACLE)
    dice, oracle_dice = [], []
    lines = (run / "manifest.jsonl").read_text().splitlines()[1:]
    for entry in map(json.loads, lines):
        sample = by_name[Path(entry["input"]).name]
        predicted = read_mask(run / "masks" / f"{entry['stem']}_{structure}.png")
        dice.append(metrics.dice(predicted, sample.masks[structure]))
        boxed = oracle.predict(sample.image, **oracle.prompts_from_truth(sample, structure)).mask
        oracle_dice.append(metrics.dice(boxed, sample.masks[structure]))
        write_mask_png(truth / f"{entry['stem']}_{structure}.png", sample.masks[structure])
    report = run / "report.html"
    atomic_write_text(report, build_report(run, truth, html_path=report))
    return {"dataset": name, "structure": structure, "images": len(dice), "dice": dice, "oracle": oracle_dice,
            "report": report, "study": images, "reference_dir": fitted}


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..errors import shown
    from ..files import atomic_write_text
    from ..methods.oneshot import DEFAULT_ONESHOT_METHOD

    root, found = _find_datasets(args)
    if not found:
        return 2  # set-up: no data
    console = _console()
    out = Path(args.out)
    results = [_demo_dataset(name, root, args.n, out, getattr(args, "threads", None), args.warp_iterations)
               for name in sorted(found) if name != "folder"]
    table = Table(title=f"{DEFAULT_ONESHOT_METHOD}: one annotated train image -> {args.n} test images per dataset "
                        f"(Dice); {ORACLE} = LiteMedSAM with the true box, the upper bound")
    for col in ("dataset", "structure", "images", "one-shot mean Dice", "min", f"{ORACLE} mean Dice", "report"):
        table.add_column(col)
    for r in results:
        table.add_row(r["dataset"], r["structure"], str(r["images"]), f"{np.mean(r['dice']):.3f}",
                      f"{np.min(r['dice']):.3f}", f"{np.mean(r['oracle']):.3f}", escape(shown(r["report"])))
    console.print(table)
    summary = [{**{k: r[k] for k in ("dataset", "structure", "images", "dice", "oracle")},
                "report": str(r["report"]), "study": str(r["study"]), "reference_dir": str(r["reference_dir"])}
               for r in results]
    atomic_write_text(out / "demo.json", json.dumps(summary, indent=1) + "\n")
    if results:
        console.print("Go on in the browser (annotate, propagate, review, correct, export):\n"
                      f"  roiprompt app {escape(shown(results[0]['study']))} --reference-dir "
                      f"{escape(shown(results[0]['reference_dir']))}")
    return 0


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo", parents=parents, help="one-shot segmentation from one annotated image on each dataset found, "
                                      "with the box oracle beside it and an HTML report",
        description="For each dataset under the data root: take one annotated train image as the reference, run "
                    "`roiprompt oneshot` (the one-shot default) on the first --n test images, print the Dice next "
                    f"to {ORACLE} (LiteMedSAM with the ground-truth box, the upper bound), write "
                    "<out>/<dataset>/oneshot/ (masks, overlays, predictions.csv) with its report.html (Dice "
                    "against the truth), <out>/<dataset>/reference/ (the fitted reference) and <out>/demo.json (every "
                    "Dice), and print the `roiprompt app` command that opens the same images in the "
                    "browser. Exit status: 0 done, 2 no dataset found.")
    p.add_argument("--root", help="data root")
    p.add_argument("--n", type=int, default=4, help="test images per dataset")
    p.add_argument("--out", default="demo_output", help="output folder")
    p.add_argument("--warp-iterations", type=int, metavar="N",
                   help="Adam steps of the reference's warping fit (default: the method's; fewer: a quicker demo)")
    p.set_defaults(func=cmd_demo)
