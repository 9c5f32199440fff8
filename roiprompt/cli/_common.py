"""What every command shares: console and progress bars, image listing, output and prediction-table conventions,
skip reports, the ``--backbone`` option, error messages in CLI terms, and the log file of internal errors."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..batch.runs import PREDICTION_COLUMNS, WARNINGS
from ..errors import RoiPromptError

SAM_BACKBONES = ("litemedsam", "sam", "medsam", "sam2")

#: Backbones registered for tests only (tiny random models): accepted, never offered in help or error messages.
INTERNAL_BACKBONE_PREFIX = "test-"

#: Exit codes of every command (the CLI's --help epilog).
EXIT_CODES = (
    "Exit status: 0 all done; 1 some input files were skipped (listed at the end); 2 bad arguments or set-up "
    "(including an output folder that cannot be written, or a write that fails mid-run, e.g. a full disk: the "
    "message names the file, and a rerun resumes); 3 internal error (one line on stderr naming a log file with the "
    "traceback, under $ROIPROMPT_LOG_DIR, default ~/.cache/roiprompt/logs).")

#: The output layout of ``segment`` and ``oneshot``, for their --help.
OUTPUT_LAYOUT = (
    "Writes to --out: masks/<stem>_<structure>.png (one 0/255 PNG per image and structure; <stem> is the file "
    "name without its image extension, a.1.png -> a.1; inputs sharing a stem get their extension added, a.png and "
    "a.jpg -> a_png and a_jpg, and those still sharing one, like the same name in several folders, _2, _3, ... in "
    "input order; a slice of a NIfTI volume adds its axis and index, case_z040), overlays/<stem>.png, for NIfTI "
    "inputs also masks/<stem>_<structure>.nii.gz (the slices' masks in the input's voxel grid and affine), "
    "predictions.csv with one row per image and structure and the columns "
    + ",".join(PREDICTION_COLUMNS) + " (slice: z=40 for a slice of a volume, else empty; iou_pred: the model's "
    "predicted IoU; quality: the method's own quality flag "
    "in [0, 1], empty when it gives none; area_px: mask pixels; warning: blank, or codes joined with ';': "
    + "; ".join(f"{code} ({what})" for code, what in WARNINGS.items()) + "), and manifest.jsonl (the run's "
    "settings, then one JSON line per finished input with its SHA-256 and its outputs' SHA-256). Each image's "
    "mask and overlay are written atomically before its manifest line and its rows, so an interrupted run loses "
    "nothing it finished. Rerunning the same command resumes: inputs whose outputs are complete (same input bytes, "
    "same settings, outputs intact) are skipped, and the model is not even loaded when nothing is left; "
    "--overwrite redoes everything. A run with other settings into a folder that holds a run is refused (exit 2) "
    "unless --overwrite is given.")


def _console():
    from rich.console import Console

    # Wide, unwrapped output when piped (logs, CI); rich would otherwise wrap at 80 columns.
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=False, console=_console())  # lines printed through its console do not wrap at 80



def _stem(path: Path) -> str:
    """Short name of an input file for ``explain``'s panels: its name up to the first dot (``JPCLN001.IMG.png`` ->
    ``JPCLN001``). The batch commands name their outputs by :func:`roiprompt.batch.inputs.output_stems` instead."""
    return path.name.split(".")[0]


def _is_structure_name(value: str) -> bool:
    """Whether ``value`` can name a structure: it becomes part of file names and a CSV cell."""
    return bool(value) and value == value.strip() and not value.startswith(".") and not re.search(
        r"[/\\:*?\"<>|=,\s]", value)


def _structure_name(value: str) -> str:
    """argparse type of a structure name (see :func:`_is_structure_name`)."""
    if not _is_structure_name(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid structure name (letters, digits, '_' or '-')")
    return value


def _report_skipped(failures: Sequence[str]) -> int:
    """List the files a batch command skipped; exit status 1 if any, else 0."""
    if not failures:
        return 0
    console = _console()
    console.print(f"[red]skipped {len(failures)} file(s):[/red]")
    for f in failures:
        console.print(f"  {f}")
    return 1


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


# -- internal errors -----------------------------------------------------------------------------------------
def log_dir() -> Path:
    """Folder of the internal-error logs: ``$ROIPROMPT_LOG_DIR``, default ``~/.cache/roiprompt/logs``."""
    return Path(os.environ.get("ROIPROMPT_LOG_DIR") or Path.home() / ".cache" / "roiprompt" / "logs")


def write_error_log(command: str, argv: Sequence[str], text: str) -> Path:
    """Write ``text`` (tracebacks) to a new log file under :func:`log_dir`, atomically; returns its path.

    Raises:
        OSError: the folder or file cannot be written.
    """
    from ..version import __version__
    from ..errors import shown
    from ..files import atomic_write_text

    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = log_dir() / f"roiprompt-{command}-{stamp}-{os.getpid()}.log"
    head = (f"roiprompt {__version__}, python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
            f"command: roiprompt {' '.join(shown(a) for a in argv)}\n\n")
    return atomic_write_text(path, head + text.encode("utf-8", "backslashreplace").decode("utf-8"))


def slice_option(value: str) -> int | str:
    """argparse type of ``--slice``: a non-negative integer or ``all``."""
    if value == "all":
        return value
    try:
        index = int(value)
    except ValueError:
        index = -1
    if index < 0:
        raise argparse.ArgumentTypeError(f"{value!r}: give a slice index (0, 1, ...) or 'all'")
    return index


def add_slice_options(p: argparse.ArgumentParser) -> None:
    """``--slice`` and ``--axis``: which slices of a NIfTI volume are inputs."""
    p.add_argument("--slice", type=slice_option, metavar="N|all",
                   help="NIfTI volumes: slice N, or every slice (all); needed for 3-D volumes, which are otherwise "
                        "skipped; slices are read in the orientation viewers show (see the README)")
    p.add_argument("--axis", type=int, choices=(0, 1, 2), default=2,
                   help="NIfTI volumes: axis of the slices, 0 sagittal, 1 coronal, 2 axial (default)")
