"""A self-contained HTML report of one ``segment``, ``oneshot`` or ``classify predict`` output folder.

:func:`collect_report` reads the folder (``manifest.jsonl`` is the source of truth: its settings line, then one line
per finished input with its output files and its rows, the same rows as ``predictions.csv``), checks every output
file against its recorded SHA-256, makes the thumbnails and, given a folder of ground-truth masks, the Dice of every
mask. :func:`build_report` renders it (:mod:`.report_html`) as one HTML page without any external resource.

Nothing in a damaged folder stops the report: a mask or overlay that is missing, changed or unreadable, a damaged
manifest line, an unreadable truth mask are listed in :attr:`RunReport.problems`. Only a folder that is no run at all
(no ``manifest.jsonl``, or not a roiprompt manifest) raises :class:`~roiprompt.errors.RoiPromptError`.

Thumbnails are embedded (base64 JPEG, longest side ``thumb_size``), so the page can be mailed or moved anywhere;
JPEG because ultrasound speckle makes PNG thumbnails 5 to 10 times larger (about 7 kB a tile at 200 px here, so a
1,000-image report is about 10 MB). Each tile also links to its full-size overlay by relative path.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RoiPromptError, shown
from ..files import sha256_file

MANIFEST = "manifest.jsonl"
#: The run-level overlay of a ``oneshot`` run (its reference image and masks).
REFERENCE_OVERLAY = "overlays/reference.png"
#: Extensions a ground-truth mask may have (those :func:`roiprompt.data.read_mask` reads).
_TRUTH_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".dcm", ".dicom", ".nii", ".nii.gz")


@dataclass
class Row:
    """One structure of one image (a row of ``predictions.csv``), with its Dice when a truth mask was read."""

    structure: str
    iou_pred: float | None
    quality: float | None
    area_px: int | None
    warning: str
    mask: str  # path of the mask under the run folder
    dice: float | None = None
    truth: str | None = None  # the truth file used, or None
    mask_ok: bool = True


@dataclass
class Tile:
    """One finished input: its stem, input file, rows, and its overlay (thumbnail as a data URI, None if bad)."""

    stem: str
    input: str
    rows: list[Row]
    overlay: str  # relative to the run folder
    thumb: str | None = None
    raw_rows: list[dict] = field(default_factory=list)  # the manifest's rows, as written (classify: label, p_*)

    def score(self, metric: str | None) -> float | None:
        """The tile's worst ``metric`` value over its structures (None: none given)."""
        values = [getattr(r, metric) for r in self.rows if metric and getattr(r, metric) is not None]
        return min(values) if values else None


@dataclass
class RunReport:
    """What the HTML page shows (see :func:`collect_report`)."""

    run_dir: Path
    settings: dict[str, Any]
    weights_sha256: str | None
    written: str  # when manifest.jsonl was last written (the settings hold no date)
    kind: str  # "masks" (segment, oneshot) or "classes" (classify predict)
    tiles: list[Tile]  # sorted: worst sort_metric first, tiles without it last, else in manifest order
    sort_metric: str | None
    has_reference: bool = False  # a oneshot run: its reference overlay comes first in the gallery
    reference: str | None = None  # data URI of the reference overlay (None: missing or unreadable)
    problems: list[str] = field(default_factory=list)
    truth_dir: Path | None = None
    no_truth: list[str] = field(default_factory=list)  # "<stem> (<structure>)" without a truth mask
    links: dict[str, str] = field(default_factory=dict)  # overlay rel -> href from the HTML file


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN is no value


def read_manifest(run_dir: Path) -> tuple[dict, list[dict], list[str]]:
    """(the run line, the input lines in order, problems) of ``run_dir/manifest.jsonl``; a later line for a stem
    replaces an earlier one, a damaged line is a problem.

    Raises:
        RoiPromptError: ``run_dir`` is no run folder (no manifest, or not a roiprompt manifest).
    """
    path = run_dir / MANIFEST
    if not run_dir.is_dir():
        raise RoiPromptError(f"{shown(run_dir)}: no such folder; give the --out folder of a segment, oneshot or "
                             "classify predict run")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RoiPromptError(f"{shown(run_dir)}: not a roiprompt run folder (no {MANIFEST}); give the --out folder "
                             "of a segment, oneshot or classify predict run") from None
    lines = data.split(b"\n")
    try:
        header = json.loads(lines[0])
    except ValueError:
        header = None
    if not isinstance(header, dict) or not isinstance(header.get("settings"), dict) or "roiprompt_run" not in header:
        raise RoiPromptError(f"{shown(path)}: not a roiprompt run manifest (its first line holds no run settings)")
    entries: dict[str, dict] = {}
    problems = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not (isinstance(entry, dict) and isinstance(entry.get("stem"), str)
                and isinstance(entry.get("outputs"), dict) and isinstance(entry.get("rows"), list)):
            problems.append(f"{MANIFEST} line {number}: damaged, ignored (rerun the command to redo its input)")
            continue
        entries.pop(entry["stem"], None)
        entries[entry["stem"]] = entry
    return header, list(entries.values()), problems


def _check_file(run_dir: Path, rel: str, digest: Any, problems: list[str]) -> bool:
    """Whether output ``rel`` is on disk; a missing file or one whose SHA-256 is not the recorded one is a
    problem (a changed file is still used)."""
    path = run_dir / rel
    try:
        actual = sha256_file(path)
    except FileNotFoundError:
        problems.append(f"{rel}: listed in the manifest but missing")
        return False
    except OSError as err:
        problems.append(f"{rel}: cannot read: {err.strerror or err}")
        return False
    if isinstance(digest, str) and actual != digest:
        problems.append(f"{rel}: changed since the run (its SHA-256 is not the one in the manifest)")
    return True


def thumbnail(path: Path, size: int) -> str:
    """``path`` (an image) as a ``data:image/jpeg;base64,...`` URI, its longest side at most ``size`` pixels.

    Raises:
        InputError: the image cannot be read.
    """
    from PIL import Image

    from ..data import read_image

    image = Image.fromarray(read_image(path)).convert("RGB")
    image.thumbnail((size, size), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class TruthIndex:
    """The ground-truth masks of a folder: ``<name>.<ext>``, ``<name>_<structure>.<ext>`` or
    ``<structure>/<name>.<ext>``, where ``<name>`` is an input's output stem or its file name without extension."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._files: dict[str, dict[str, Path]] = {}  # sub-folder ("" = top) -> {casefolded base: path}
        for sub in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
            files: dict[str, Path] = {}
            for path in sorted(sub.iterdir()):
                base, ext = _split(path.name)
                if ext in _TRUTH_EXTENSIONS and path.is_file():
                    files.setdefault(base.casefold(), path)
            self._files["" if sub == folder else sub.name] = files

    def find(self, names: list[str], structure: str, single: bool) -> Path | None:
        """The truth mask of ``structure`` for an input known by ``names``; ``<name>.<ext>`` only when the run has
        a ``single`` structure."""
        top = self._files.get("", {})
        for name in names:
            if (path := self._files.get(structure, {}).get(name.casefold())) is not None:
                return path
        for name in names:
            if (path := top.get(f"{name}_{structure}".casefold())) is not None:
                return path
        if single:
            for name in names:
                if (path := top.get(name.casefold())) is not None:
                    return path
        return None


def _split(name: str) -> tuple[str, str]:
    if name.lower().endswith(".nii.gz"):
        return name[: -len(".nii.gz")], ".nii.gz"
    base, ext = os.path.splitext(name)
    return base, ext.lower()


def _rows(entry: dict) -> list[Row]:
    """The structure rows of a manifest line."""
    rows = []
    for raw in entry["rows"]:
        if not isinstance(raw, dict) or not isinstance(raw.get("structure"), str):
            continue
        area = _float(raw.get("area_px"))
        rows.append(Row(structure=raw["structure"], iou_pred=_float(raw.get("iou_pred")),
                        quality=_float(raw.get("quality")), area_px=None if area is None else int(area),
                        warning=str(raw.get("warning") or ""), mask=f"masks/{entry['stem']}_{raw['structure']}.png"))
    return rows


def _dice(run_dir: Path, tile: Tile, entry: dict, row: Row, truth_path: Path, threshold: float | None,
          problems: list[str]) -> None:
    """Set ``row.dice`` from its mask and ``truth_path``; a mask that cannot be read is a problem."""
    from ..data import read_mask
    from ..errors import InputError
    from ..metrics import dice

    try:
        pred = read_mask(run_dir / row.mask, allow_empty=True)
    except InputError as err:
        problems.append(f"{row.mask}: {err}")
        row.mask_ok = False
        return
    nifti = _split(truth_path.name)[1] in (".nii", ".nii.gz")
    try:
        truth = read_mask(truth_path, image_hw=pred.shape, allow_empty=True, threshold=threshold,
                          slice=entry.get("slice") if nifti else None, axis=entry.get("axis") if nifti else None)
    except InputError as err:
        problems.append(f"truth of {tile.stem} ({row.structure}): {err}")
        return
    row.dice = dice(pred, truth)


def collect_report(run_dir: str | os.PathLike, truth: str | os.PathLike | None = None, *,
                   truth_threshold: float | None = None, thumb_size: int = 200,
                   html_path: str | os.PathLike | None = None) -> RunReport:
    """Read a run folder into a :class:`RunReport`.

    Args:
        run_dir: the ``--out`` folder of a ``segment``, ``oneshot`` or ``classify predict`` run.
        truth: folder of ground-truth masks (see :class:`TruthIndex`); None: no Dice.
        truth_threshold: ``threshold=`` of :func:`~roiprompt.data.read_mask` for soft or JPEG truth masks.
        thumb_size: longest side of the embedded thumbnails, pixels.
        html_path: where the page will be written; tiles then link to the full-size overlays by relative path.

    Raises:
        RoiPromptError: no run folder, or ``truth`` is no folder.
    """
    run_dir = Path(run_dir)
    header, entries, problems = read_manifest(run_dir)
    settings = header["settings"]
    stamp = _dt.datetime.fromtimestamp((run_dir / MANIFEST).stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S")
    has_masks = any(isinstance(r, dict) and "structure" in r for e in entries for r in e["rows"])
    kind = "masks" if has_masks or settings.get("command") in ("segment", "oneshot") else "classes"
    index = None
    if truth is not None:
        if not Path(truth).is_dir():
            raise RoiPromptError(f"--truth {shown(truth)}: no such folder")
        index = TruthIndex(Path(truth))
    outputs = header.get("outputs") if isinstance(header.get("outputs"), dict) else {}
    report = RunReport(run_dir=run_dir, settings=settings, weights_sha256=header.get("weights_sha256"),
                       written=stamp, kind=kind, tiles=[], sort_metric=None, problems=problems,
                       truth_dir=None if truth is None else Path(truth))
    if kind == "masks" and REFERENCE_OVERLAY in outputs:
        report.has_reference = True
        if _check_file(run_dir, REFERENCE_OVERLAY, outputs[REFERENCE_OVERLAY], problems):
            report.reference = _thumb(run_dir / REFERENCE_OVERLAY, thumb_size, problems)
    structures = list(dict.fromkeys(r.structure for e in entries for r in _rows(e)))
    for entry in entries:
        tile = Tile(stem=entry["stem"], input=str(entry.get("input", "")), rows=_rows(entry),
                    overlay=f"overlays/{entry['stem']}.png", raw_rows=[r for r in entry["rows"] if isinstance(r, dict)])
        report.tiles.append(tile)
        listed = entry["outputs"]
        present = {rel: _check_file(run_dir, rel, digest, problems) for rel, digest in listed.items()}
        if kind == "classes":
            continue
        if present.get(tile.overlay):
            tile.thumb = _thumb(run_dir / tile.overlay, thumb_size, problems)
        elif tile.overlay not in listed:
            problems.append(f"{tile.overlay}: not listed in the manifest for {tile.stem}")
        names = list(dict.fromkeys([tile.stem, _split(Path(tile.input).name)[0]]))
        for row in tile.rows:
            if not present.get(row.mask):
                row.mask_ok = False
                if row.mask not in listed:
                    problems.append(f"{row.mask}: not listed in the manifest for {tile.stem}")
                continue
            if index is None:
                continue
            found = index.find(names, row.structure, single=len(structures) == 1)
            if found is None:
                report.no_truth.append(f"{tile.stem} ({row.structure})")
                continue
            row.truth = str(found)
            _dice(run_dir, tile, entry, row, found, truth_threshold, problems)
    if kind == "masks":
        rows = [r for t in report.tiles for r in t.rows]
        report.sort_metric = next((m for m in ("quality", "iou_pred") if any(getattr(r, m) is not None
                                                                                 for r in rows)), None)
        order = {id(t): i for i, t in enumerate(report.tiles)}
        report.tiles.sort(key=lambda t: (t.score(report.sort_metric) is None, t.score(report.sort_metric) or 0.0,
                                         order[id(t)]))
    if html_path is not None:
        home = Path(html_path).resolve().parent
        for rel in [REFERENCE_OVERLAY, *(t.overlay for t in report.tiles)]:
            report.links[rel] = Path(os.path.relpath((run_dir / rel).resolve(), home)).as_posix()
    return report


def _thumb(path: Path, size: int, problems: list[str]) -> str | None:
    from ..errors import InputError

    try:
        return thumbnail(path, size)
    except InputError as err:
        problems.append(str(err))
        return None


def build_report(run_dir: str | os.PathLike, truth: str | os.PathLike | None = None, **options: Any) -> str:
    """The HTML page of a run folder (see :func:`collect_report` for the arguments); write it with
    :func:`roiprompt.files.atomic_write_text`."""
    from .report_html import render_html

    return render_html(collect_report(run_dir, truth, **options))
