"""``roiprompt datasets``: list the datasets found under the data root, with their structures and labels."""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ._common import _console

#: Dataset name of the user's own folder layout (``DIR/images``, ``DIR/masks``, ``DIR/labels.csv``).
FOLDER = "folder"


@dataclass
class Found:
    """One dataset found under a root: ``name`` as shown, the ``--dataset``/``--root`` that open it, and the
    dataset (or the reason it cannot be read)."""

    name: str
    options: str
    dataset: object | None = None
    error: str | None = None


def _find_datasets(args: argparse.Namespace) -> tuple[Path, dict[str, int]]:
    """(data root, {dataset: count}) of the named datasets (and ``folder`` when the root holds images/);
    explains how to get the data when nothing is found."""
    from ..data import default_root, find_datasets

    root = Path(args.root).expanduser() if args.root else default_root()
    found = find_datasets(root) if root.is_dir() else {}
    if not found:
        _console().print(f"[red]no datasets found under {root}[/red]\n" + _HOW_TO_GET_DATA)
    return root, found


def scan_datasets(root: Path) -> list[Found]:
    """Every dataset under ``root``: the official layouts (``root/<name>/...``), ``root`` itself when it is a folder
    dataset, and each subfolder of ``root`` that is one (``root/<sub>/images``). A folder dataset that breaks the
    layout is listed with its error."""
    from ..data import find_datasets, load_dataset

    if not root.is_dir():
        return []
    found: list[Found] = []
    named = find_datasets(root)  # the official layouts, and "folder" when root itself holds images/
    official = sorted(name for name in named if name != FOLDER)
    for name in official:
        found.append(Found(name, f"--dataset {name} --root {root}", load_dataset(name, root=root)))
    folders = [root] if FOLDER in named else []
    folders += [sub for sub in sorted(root.iterdir()) if sub.is_dir() and not sub.name.startswith(".")
                and (sub / "images").is_dir() and sub.name not in official]
    for folder in folders:
        entry = Found(f"{folder.name} ({FOLDER})", f"--dataset {FOLDER} --root {folder}")
        try:
            entry.dataset = load_dataset(FOLDER, root=folder)
        except DataError as err:
            entry.error = str(err)
        found.append(entry)
    return found


def _labels(dataset) -> str:
    counts = Counter(label for label in dataset.labels if label is not None)
    if not counts:
        return "-"
    return ", ".join(f"{label} ({counts[label]})" for label in sorted(counts))


def _structures(dataset) -> str:
    if not dataset.structures:
        return "- (no masks/)"
    counts = Counter(s for record in dataset.records for s in record.masks)
    return ", ".join(s if counts[s] == len(dataset) else f"{s} ({counts[s]} masks)" for s in dataset.structures)


def cmd_datasets(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..data import default_root

    root = Path(args.root).expanduser() if args.root else default_root()
    found = scan_datasets(root)
    console = _console()
    if not found:
        console.print(f"[red]no datasets found under {root}[/red]\n" + _HOW_TO_GET_DATA)
        return 2
    table = Table(title=f"datasets under {root}")
    for col in ("name", "images", "structures", "labels (images)", "open with"):
        table.add_column(col)
    for entry in found:
        if entry.dataset is None:
            table.add_row(entry.name, "-", "-", "-", "unreadable, see below")
            continue
        data = entry.dataset
        table.add_row(entry.name, str(len(data)), _structures(data), _labels(data), entry.options)
    console.print(table)
    broken = [entry for entry in found if entry.error]
    if broken:
        console.print(f"[red]{len(broken)} dataset folder(s) could not be read:[/red]")
        for entry in broken:
            console.print(f"  {entry.error}")
        return 1
    return 0


_HOW_TO_GET_DATA = (
    "roiprompt reads public datasets in their official folder layouts:\n"
    "  kvasir_seg/Kvasir-SEG/{images,masks}     https://datasets.simula.no/kvasir-seg/\n"
    "  busbra/BUSBRA/{Images,Masks,bus_data.csv,5-fold-cv.csv}   https://doi.org/10.5281/zenodo.7730709\n"
    "  jsrt/JSRT/{jsrt_images/images,masks/masks/<structure>}   http://db.jsrt.or.jp/eng.php + SCR masks\n"
    "Put them under one folder and set ROIPROMPT_DATA=/that/folder (default: ../shared/data next to the\n"
    "checkout), or pass --root. Your own data, one folder per dataset (open it with --dataset folder --root DIR):\n"
    "  DIR/images/<id>.png   DIR/masks/<structure>/<id>.png (or DIR/masks/<id>.png)   DIR/labels.csv (id,label)\n"
    "`roiprompt segment` and `roiprompt oneshot` work on any image folder.")


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``datasets`` subcommand."""
    p = sub.add_parser(
        "datasets", parents=parents, help="list the datasets found under the data root: images, structures, labels",
        description="List the datasets under the data root: the public ones in their official layouts, the root "
                    "itself when it is a folder dataset (DIR/images, DIR/masks, DIR/labels.csv), and each subfolder "
                    "that is one; with their image counts, structures (masks) and labels, and the options that "
                    "open each one in `bench` and `explain`. Exit status: 0 listed, 1 a dataset folder could not be "
                    "read (listed), 2 nothing found.")
    p.add_argument("--root", help="data root (default: $ROIPROMPT_DATA or ../shared/data)")
    p.set_defaults(func=cmd_datasets)
