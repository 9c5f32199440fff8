"""What every command shares: console and progress bars, image listing, output names and the predictions table,
skip reports, the ``--backbone`` option, and error messages in CLI terms."""

from __future__ import annotations

import argparse
import csv
import glob
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import RoiPromptError

SAM_BACKBONES = ("litemedsam", "sam", "medsam", "sam2")

#: Backbones registered for tests only (tiny random models): accepted, never offered in help or error messages.
INTERNAL_BACKBONE_PREFIX = "test-"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".nii", ".nii.gz", ".gif")

#: Columns of ``predictions.csv``, the same for every command that writes masks (``segment``, ``oneshot``).
PREDICTION_COLUMNS = ("image", "structure", "iou_pred", "quality", "area_px")
#: The score columns: keys of a prediction's ``scores``; a score the method does not give is an empty cell.
SCORE_COLUMNS = ("iou_pred", "quality")

#: The output layout of ``segment`` and ``oneshot``, for their --help.
OUTPUT_LAYOUT = (
    "Writes to --out: masks/<stem>_<structure>.png (one 0/255 PNG per image and structure; <stem> is the file "
    "name up to its first dot), overlays/<stem>.png, and predictions.csv with one row per image and structure and "
    "the columns " + ",".join(PREDICTION_COLUMNS) + " (iou_pred: the model's predicted IoU; quality: the method's "
    "own quality flag in [0, 1], empty when it gives none; area_px: mask pixels). "
    "Exit status: 0 done, 1 some input files were skipped (listed at the end), 2 bad arguments or set-up.")


def _console():
    from rich.console import Console

    # Wide, unwrapped output when piped (logs, CI); rich would otherwise wrap at 80 columns.
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=False)


def _list_images(target: Path) -> list[Path]:
    if target.is_dir():
        return sorted(p for p in target.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))
    if target.exists():
        return [target]
    return sorted(Path(p) for p in glob.glob(str(target)))


def _stem(path: Path) -> str:
    """Output name of an input file: its name up to the first dot (``JPCLN001.IMG.png`` -> ``JPCLN001``)."""
    return path.name.split(".")[0]


def _output_stems(images: Sequence[Path], reserved: Iterable[str] = ()) -> dict[Path, str]:
    """``{image: output stem}``; RoiPromptError when two inputs (or an input and a ``reserved`` output name)
    would write the same output files."""
    seen: dict[str, Path] = {}
    clashes = []
    reserved = set(reserved)
    for path in images:
        stem = _stem(path)
        if stem in reserved:
            clashes.append(f"{path.name} (overlays/{stem}.png is taken)")
        elif stem in seen:
            clashes.append(f"{seen[stem].name} and {path.name}")
        seen.setdefault(stem, path)
    if clashes:
        raise RoiPromptError("these inputs would write the same output files (outputs are named by the file name "
                             "up to its first dot): " + "; ".join(clashes[:10]) + ". Rename or move them.")
    return {path: _stem(path) for path in images}


def _mask_name(stem: str, structure: str) -> str:
    """File name of a predicted mask under ``masks/``, the same for every command."""
    return f"{stem}_{structure}.png"


def _is_structure_name(value: str) -> bool:
    """Whether ``value`` can name a structure: it becomes part of file names and a CSV cell."""
    return bool(value) and value == value.strip() and not value.startswith(".") and not re.search(
        r"[/\\:*?\"<>|=,\s]", value)


def _structure_name(value: str) -> str:
    """argparse type of a structure name (see :func:`_is_structure_name`)."""
    if not _is_structure_name(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid structure name (letters, digits, '_' or '-')")
    return value


class _PredictionTable:
    """``predictions.csv`` (:data:`PREDICTION_COLUMNS`), written row by row so an interrupted run keeps its rows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._writer.writerow(PREDICTION_COLUMNS)

    def add(self, image: Path, structure: str, scores: Mapping[str, Any], mask: np.ndarray) -> None:
        self._writer.writerow([image.name, structure, *(_score(scores.get(k)) for k in SCORE_COLUMNS),
                               str(int(np.count_nonzero(mask)))])
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "_PredictionTable":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _report_skipped(failures: Sequence[str]) -> int:
    """List the files a batch command skipped; exit status 1 if any, else 0."""
    if not failures:
        return 0
    console = _console()
    console.print(f"[red]skipped {len(failures)} file(s):[/red]")
    for f in failures:
        console.print(f"  {f}")
    return 1


def _score(value: Any) -> str:
    """CSV cell of an optional score: empty when missing or NaN."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return ""
    return f"{value:.4f}" if np.isfinite(value) else ""


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


# -- --backbone ----------------------------------------------------------------------------------------------
def public_backbones(names: Iterable[str] | None = None) -> list[str]:
    """``names`` (default: every registered backbone) without the internal test backbones."""
    if names is None:
        from ..models.backbones import list_backbones

        names = list_backbones()
    return [n for n in names if not n.startswith(INTERNAL_BACKBONE_PREFIX)]


def backbone_option(names: Sequence[str] | None = None, default: str = "litemedsam") -> dict[str, Any]:
    """Keyword arguments of ``add_argument("--backbone", ...)``: accepts ``names`` (default: every registered
    backbone) and their registered test doubles (``test-<name>``, used by the tests), but shows only the public
    names in --help and in the error for a bad value."""
    from ..models.backbones import list_backbones

    registered = list_backbones()
    shown = public_backbones(names if names is not None else registered)
    accepted = set(shown) | {n for n in registered if n.startswith(INTERNAL_BACKBONE_PREFIX)
                             and (names is None or n[len(INTERNAL_BACKBONE_PREFIX):] in shown)}

    def backbone(value: str) -> str:
        if value not in accepted:
            raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {', '.join(shown)})")
        return value

    backbone.__name__ = "backbone"  # argparse names the type in its messages
    return dict(default=default, type=backbone, metavar="{" + ",".join(shown) + "}",
                help=f"model (default: {default})")


# -- errors in CLI terms -------------------------------------------------------------------------------------
#: Advice in Python terms that library messages give, and what the CLI says instead.
_CLI_TERMS: tuple[tuple[str, Any], ...] = (
    (r"\(or pass root=\.\.\.\)", "(or pass --root DIR)"),
    (r"dataset 'folder' needs root=PATH", "dataset 'folder' needs --root DIR"),
    (r"; use subset\(indices\) or roiprompt\.data\.sample_per_class", ""),
    (r"; use split\(\.\.\.\)", ""),
    (r"sample_per_class: class\(es\) (.*) have fewer than k=(\w+) samples", r"class(es) \1 have fewer than \2 "
     r"labelled images, the --shots asked for"),
    (r"; lower k or use k='all'", "; lower --shots"),
    (r"sample_references: (.*) cannot draw k=(\w+) references", r"\1 cannot draw \2 reference image(s)"),
    (r"does not take option\(s\) \['(\w+)'\]; it accepts none", lambda m: f"has no --{m.group(1)} option"),
    (r"pass a path, (?:(`pip install [^`]+`), )?or allow_download=True \(needs internet\)",
     lambda m: "give --weights PATH (a checkpoint file or a Hugging Face-format folder)"
               + (f" or run {m.group(1)}" if m.group(1) else "")),
    (r"pass weights='/path/to/folder' \(", "give --weights /path/to/folder ("),
    (r", or allow_download=True to fetch it from the hub \(needs internet\)", ""),
)


def _cli_message(err: BaseException) -> str:
    """An error's message with advice given in Python terms replaced by the CLI's options."""
    message = str(err)
    for pattern, replacement in _CLI_TERMS:
        message = re.sub(pattern, replacement, message)
    return message
