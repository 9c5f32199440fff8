"""``roiprompt demo``: run the flagship on a few images of each dataset found and write overlays."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ._common import _console, _progress
from .datasets import _find_datasets

#: The method the demo runs: the oracle box prompt, the upper bound every other segmenter is compared with.
DEMO_METHOD = "box_prompt"


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .. import metrics
    from ..data import load_dataset, write_overlay_png
    from ..methods import load_method

    root, found = _find_datasets(args)
    if not found:
        return 2  # set-up: no data
    console = _console()
    method = load_method(DEMO_METHOD)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = Table(title=f"{DEMO_METHOD} (LiteMedSAM + ground-truth box): Dice on {args.n} images per dataset")
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


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo", parents=parents, help=f"run {DEMO_METHOD} on a few images of each dataset found, write overlays",
        description=f"Run {DEMO_METHOD} (LiteMedSAM prompted with the ground-truth box of each structure) on the "
                    "first --n images of each dataset under the data root; print the Dice per structure and write "
                    "<dataset>_<id>.png overlays to --out. Exit status: 0 done, 2 no dataset found.")
    p.add_argument("--root", help="data root")
    p.add_argument("--n", type=int, default=4, help="images per dataset")
    p.add_argument("--out", default="demo_output", help="folder for overlay PNGs")
    p.set_defaults(func=cmd_demo)
