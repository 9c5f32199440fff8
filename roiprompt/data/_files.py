"""Small helpers the dataset readers share: listing files by stem, reading JSON/CSV tables as DataError."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ..errors import DataError
from .io import split_extension


def files_by_stem(folder: Path, extensions: tuple[str, ...], strip: str = "") -> dict[str, Path]:
    """``{stem: path}`` of the files in ``folder`` with one of ``extensions`` (``strip`` removed from stems).

    Raises:
        DataError: two files share a stem (``a.png`` and ``a.jpg``): which one is meant is unknowable.
    """
    found: dict[str, Path] = {}
    clashes: list[str] = []
    for path in sorted(folder.iterdir()):
        stem, ext = split_extension(path)
        if not path.is_file() or ext not in extensions or path.name.startswith("."):
            continue
        stem = stem.removesuffix(strip) if strip else stem
        if stem in found:
            clashes.append(f"{found[stem].name} / {path.name}")
        found[stem] = path
    if clashes:
        raise DataError(f"{folder}: several files for one id: {clashes[:10]}; keep one file per id")
    return found


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read JSON ({type(err).__name__}: {err})") from err


def read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV file with a header; DataError naming the file when it is unreadable or lacks a column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
            header = [h.strip() for h in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read CSV ({type(err).__name__}: {err})") from err
    if missing := [c for c in required if c not in header]:
        raise DataError(f"{path}: missing column(s) {missing}; it has {header}")
    return rows


def missing_list(ids: list[str], limit: int = 10) -> str:
    """``"3 (a, b, c)"`` or ``"12 (a, b, ..., j, ...)"``: counts and the first few ids for messages."""
    shown = ", ".join(ids[:limit]) + (", ..." if len(ids) > limit else "")
    return f"{len(ids)} ({shown})"
