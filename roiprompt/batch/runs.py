"""Batch runs of ``segment`` and ``oneshot``: unique output names, the run manifest, resume, and the per-image loop.

The output folder (``--out``) holds ``masks/``, ``overlays/``, ``predictions.csv`` and ``manifest.jsonl``. The
manifest is JSON Lines (ASCII, keys sorted, so the same run always gives the same bytes):

* line 1, the run: ``{"roiprompt_run": 1, "settings": {...}, "weights_sha256": ..., "outputs": {...}}``;
  ``settings`` is everything that decides the outputs (command, method and its config, backbone, weights, prompts
  or the reference's SHA-256s, roiprompt's version); ``weights_sha256`` the loaded model's hash, once a model was
  loaded; ``outputs`` the run's own files (``overlays/reference.png``) with their SHA-256;
* then one line per finished input: ``{"input": path, "sha256": ..., "stem": ..., "outputs": {"masks/..png":
  sha256, "overlays/..png": sha256}, "rows": [{"structure", "iou_pred", "quality", "area_px", "warning"}]}``.

Per image, the order is: masks and overlay written atomically, then its manifest line appended (flushed and
fsync'd), then its CSV rows. A killed run therefore leaves at worst outputs without a manifest line (redone) or a
torn last line (ignored). ``predictions.csv`` is rewritten from the manifest (atomically, in input order) when a
run starts and when it ends, so it only ever lists images whose masks are on disk; an interrupted run followed by
a rerun ends with the same bytes as one run that was never interrupted.

Resume: an input is done when the manifest has a line for its output stem with the same input SHA-256 and every
output file listed there is on disk with its recorded SHA-256; the rest are redone. A folder whose manifest
records other settings and at least one finished input is refused unless ``overwrite`` (results of two settings
are never mixed). Files of earlier runs that the manifest does not list stay on disk but never reach the CSV.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import RoiPromptError, shown
from ..files import atomic_write_bytes, sha256_file
from .inputs import Input, image_labels, mask_name, volume_stems

#: Columns of ``predictions.csv``, the same for every command that writes masks (``segment``, ``oneshot``).
PREDICTION_COLUMNS = ("image", "slice", "structure", "iou_pred", "quality", "area_px", "warning")
#: The score columns: keys of a prediction's ``scores``; a score the method does not give is an empty cell.
SCORE_COLUMNS = ("iou_pred", "quality")
#: Codes of the ``warning`` column (several are joined with ``;``).
WARNINGS = {"empty": "the predicted mask has no pixel",
            "points_only": "points without a box, given to a backbone trained with boxes only, as LiteMedSAM"}


def score_cell(value: Any) -> str:
    """CSV cell of an optional score: empty when missing or NaN."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return ""
    return f"{value:.4f}" if np.isfinite(value) else ""


MANIFEST = "manifest.jsonl"
PREDICTIONS = "predictions.csv"
#: Format of ``manifest.jsonl`` (its first line's ``roiprompt_run``).
MANIFEST_FORMAT = 1
#: A temporary file of :func:`roiprompt.files.atomic_path` (``.<name>.<8 random>.tmp<suffix>``) that a killed run
#: left behind; cleared when the next run opens the folder.
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[a-z.]+)?$")


def prediction_row(structure: str, scores: Mapping[str, Any], mask: np.ndarray, warnings: Sequence[str]) -> dict:
    """One structure's row of ``predictions.csv`` (without the image cell), as the manifest stores it."""
    return {"structure": structure, **{k: score_cell(scores.get(k)) for k in SCORE_COLUMNS},
            "area_px": str(int(np.count_nonzero(mask))), "warning": ";".join(warnings)}


def _input_fields(item: Input) -> dict[str, Any]:
    """How a manifest line names its input: the file, and the slice of a volume."""
    fields: dict[str, Any] = {"input": str(item.path)}
    if item.slice is not None:
        fields.update(slice=item.slice, axis=item.axis)
    return fields


# -- the run ----------------------------------------------------------------------------------------------------
class StopRun(RoiPromptError):
    """An output could not be written (full disk, lost permission): the run stops (exit status 2)."""


def _cannot_write(path: Path, err: OSError) -> str:
    return f"cannot write {shown(path)}: {err.strerror or err}"


def write_output(out: Path, rel: str, write: Callable[[Path], Any]) -> str:
    """``write(path)`` one output file (``rel`` to the folder ``out``; the writer must write atomically); its
    SHA-256. Used by the driver and by Ray workers alike.

    Raises:
        StopRun: an OSError (full disk, permissions): the message names the file.
    """
    path = out / rel
    try:
        write(path)
        return sha256_file(path)
    except OSError as err:
        raise StopRun(_cannot_write(path, err)) from None


def escape(text: str) -> str:
    """``text`` printed as is by rich (a file name or message may hold ``[...]``)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _shown_value(value: Any) -> str:
    text = _dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_entry(obj: Any) -> bool:
    return (isinstance(obj, dict) and isinstance(obj.get("input"), str) and isinstance(obj.get("sha256"), str)
            and isinstance(obj.get("stem"), str) and isinstance(obj.get("outputs"), dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in obj["outputs"].items())
            and isinstance(obj.get("rows"), list) and all(isinstance(r, dict) for r in obj["rows"]))


class BatchRun:
    """One ``segment`` or ``oneshot`` run into ``out``: call :meth:`open`, then :func:`process`.

    Args:
        out: the output folder.
        settings: what decides the outputs (JSON values); compared with the manifest's to resume or refuse.
        inputs: the input files, in order.
        stems: ``{input: output stem}`` from :func:`output_stems`.
        overwrite: redo every input and replace the manifest, whatever the folder holds.
        columns: the columns of predictions.csv (``image``, ``slice``, then keys of the rows the job gives).
        folders: the sub-folders the run writes into.
    """

    def __init__(self, out: Path, settings: Mapping[str, Any], inputs: Sequence[Input], stems: Mapping[Input, str],
                 overwrite: bool = False, columns: Sequence[str] = PREDICTION_COLUMNS,
                 folders: Sequence[str] = ("masks", "overlays")) -> None:
        self.out = Path(out)
        self.settings = json.loads(_dumps(dict(settings)))  # as it reads back from the manifest (lists, not tuples)
        self.inputs = list(inputs)
        self.stems = dict(stems)
        self.labels = image_labels(self.inputs)
        self.overwrite = overwrite
        self.columns = tuple(columns)
        self.folders = tuple(folders)
        self.header: dict[str, Any] = {"roiprompt_run": MANIFEST_FORMAT, "settings": self.settings,
                                       "weights_sha256": None, "outputs": {}}
        self.entries: dict[str, dict] = {}  # stem -> manifest line of a finished input
        self.hashes: dict[Input, str] = {}
        self.pending: list[Input] = []
        self.unreadable: list[str] = []
        self.resumed = 0

    @property
    def manifest(self) -> Path:
        return self.out / MANIFEST

    @property
    def predictions(self) -> Path:
        return self.out / PREDICTIONS

    # -- start ------------------------------------------------------------------------------------------------
    def open(self) -> "BatchRun":
        """Check the folder is writable, compare settings, hash the inputs, find what is left to do, and rewrite
        the manifest and predictions.csv to what is complete on disk.

        Raises:
            RoiPromptError: the folder cannot be written, or it holds a run with other settings (no ``overwrite``).
        """
        self._check_writable()
        previous: list[dict] = []
        if not self.overwrite:
            header, previous = self._read_manifest()
            if header is not None and not previous:  # a run that finished no image (bad weights?): start anew
                header = None
            if header is not None:
                self._check_settings(header)
                self.header["weights_sha256"] = header.get("weights_sha256")
                outputs = header.get("outputs")
                self.header["outputs"] = dict(outputs) if isinstance(outputs, dict) else {}
        by_stem = {entry["stem"]: entry for entry in previous}  # a later line for a stem replaces an earlier one
        file_hashes: dict[Path, str | None] = {}  # the slices of a volume share its file: hashed once
        for item in self.inputs:
            if item.path not in file_hashes:
                try:
                    file_hashes[item.path] = sha256_file(item.path)
                except OSError as err:
                    file_hashes[item.path] = None
                    self.unreadable.append(f"{shown(item.path)}: cannot read: {err.strerror or err}")
            digest = file_hashes[item.path]
            if digest is None:
                continue
            self.hashes[item] = digest
            stem = self.stems[item]
            entry = by_stem.get(stem)
            if entry is not None and entry["sha256"] == digest and self._intact(entry["outputs"]):
                self.entries[stem] = {**entry, **_input_fields(item)}
                self.resumed += 1
            else:
                self.pending.append(item)
        self.rewrite()
        return self

    def _check_writable(self) -> None:
        """Create the folders and a file in each (then delete it), and clear temporaries a killed run left."""
        for folder in (self.out, *(self.out / name for name in self.folders)):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd, probe = tempfile.mkstemp(prefix=".roiprompt-probe-", dir=folder)
                os.close(fd)
                os.unlink(probe)
                for leftover in folder.iterdir():
                    if _TEMPORARY.match(leftover.name) and leftover.is_file():
                        leftover.unlink()
            except OSError as err:
                raise RoiPromptError(f"--out {shown(self.out)}: cannot write to {shown(folder)} "
                                     f"({err.strerror or err}); choose another --out or fix its permissions") from None

    def _read_manifest(self) -> tuple[dict | None, list[dict]]:
        """(the run's line or None when there is no manifest, the entries that parse); a torn last line (a kill
        mid-write) or any damaged line is ignored: its input is redone."""
        try:
            data = self.manifest.read_bytes()
        except FileNotFoundError:
            return None, []
        lines = data.split(b"\n")
        try:
            header = json.loads(lines[0])
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("roiprompt_run") != MANIFEST_FORMAT or not isinstance(
                header.get("settings"), dict):
            raise RoiPromptError(f"--out {shown(self.out)}: {MANIFEST} is not a roiprompt run manifest (or one of "
                                 "another format); give --overwrite to replace the folder's results or choose "
                                 "another --out")
        entries = []
        for line in lines[1:]:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if _is_entry(obj):
                entries.append(obj)
        return header, entries

    def _check_settings(self, header: Mapping[str, Any]) -> None:
        old = header["settings"]
        changed = [f"{key} {_shown_value(old.get(key))} -> {_shown_value(self.settings.get(key))}"
                   for key in sorted(set(old) | set(self.settings)) if old.get(key) != self.settings.get(key)]
        if changed:
            raise RoiPromptError(
                f"--out {shown(self.out)} holds the results of a run with other settings ({'; '.join(changed)}); "
                "its results are not mixed with this run's: give --overwrite to replace them, or choose another "
                "--out")

    def _intact(self, outputs: Mapping[str, str]) -> bool:
        try:
            return all(sha256_file(self.out / rel) == digest for rel, digest in outputs.items())
        except OSError:  # missing or unreadable: redo
            return False

    # -- run-level outputs and the model ----------------------------------------------------------------------
    def run_output(self, rel: str, write: Callable[[Path], Any], force: bool = False) -> None:
        """Write one of the run's own files (``overlays/reference.png``, NIfTI mask volumes) unless it is on disk as
        recorded (``force``: write it anyway; a file whose bytes come out the same is not a change)."""
        recorded = self.header["outputs"].get(rel)
        if not force and recorded is not None and self._intact({rel: recorded}):
            return
        self.header["outputs"][rel] = self.write_output(rel, write)
        self._write_manifest()

    def set_weights(self, sha256: str | None) -> None:
        """Record the loaded model's weights hash; refuse a model other than the one of the finished images."""
        recorded = self.header["weights_sha256"]
        if sha256 is None or recorded == sha256:
            return
        if recorded is not None and self.entries:
            raise RoiPromptError(
                f"--out {shown(self.out)} holds results of a model with other weights (SHA-256 {recorded[:12]}..., "
                f"now {sha256[:12]}...); give --overwrite to replace them, or choose another --out")
        self.header["weights_sha256"] = sha256
        self._write_manifest()

    # -- per image ----------------------------------------------------------------------------------------------
    def write_output(self, rel: str, write: Callable[[Path], Any]) -> str:
        """:func:`write_output` into this run's folder; the error says what is kept and how to resume."""
        try:
            return write_output(self.out, rel, write)
        except StopRun as err:
            raise StopRun(f"{err}. Stopped; the {len(self.entries)} image(s) finished are kept: rerun the same "
                          "command to resume once this is fixed") from None

    def _stop_message(self, path: Path, err: OSError) -> str:
        return (f"{_cannot_write(path, err)}. Stopped; the {len(self.entries)} image(s) finished are kept: rerun "
                "the same command to resume once this is fixed")

    def add(self, item: Input, outputs: Mapping[str, str], rows: Sequence[Mapping[str, str]]) -> None:
        """Record a finished input (its outputs already on disk): append its manifest line, then its CSV rows."""
        stem = self.stems[item]
        entry = {**_input_fields(item), "sha256": self.hashes[item], "stem": stem, "outputs": dict(outputs),
                 "rows": [dict(r) for r in rows]}
        try:
            with open(self.manifest, "a", encoding="ascii") as f:
                f.write(_dumps(entry) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise StopRun(self._stop_message(self.manifest, err)) from None
        self.entries[stem] = entry
        try:
            with open(self.predictions, "a", newline="", encoding="utf-8") as f:
                f.write(self._csv_text([item], header=False))
        except OSError as err:
            raise StopRun(self._stop_message(self.predictions, err)) from None

    # -- canonical files ----------------------------------------------------------------------------------------
    def _done(self) -> list[Input]:
        return [item for item in self.inputs if self.stems[item] in self.entries]

    def _manifest_bytes(self) -> bytes:
        lines = [self.header, *(self.entries[self.stems[item]] for item in self._done())]
        return "".join(_dumps(line) + "\n" for line in lines).encode("ascii")

    def _csv_text(self, items: Sequence[Input], header: bool = True) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if header:
            writer.writerow(self.columns)
        for item in items:
            for row in self.entries[self.stems[item]]["rows"]:
                writer.writerow([self.labels[item], item.slice_cell(), *(row.get(c, "") for c in self.columns[2:])])
        return buffer.getvalue()

    def _write_manifest(self) -> None:
        self._replace(self.manifest, self._manifest_bytes())

    def _replace(self, path: Path, data: bytes) -> None:
        try:
            if path.is_file() and path.read_bytes() == data:
                return  # unchanged: not even touched
            atomic_write_bytes(path, data)
        except OSError as err:
            raise StopRun(self._stop_message(path, err)) from None

    def write_volumes(self) -> None:
        """Each NIfTI input's masks as one uint8 volume per structure, ``masks/<stem>_<structure>.nii.gz``, in the
        input's voxel grid with its affine: the finished slices' PNG masks put back where they were read from."""
        from ..data import read_mask, write_mask_nifti

        volumes = volume_stems(self.inputs, self.stems)
        done = self._done()
        for path, stem in volumes.items():
            slices = [item for item in done if item.path == path]
            if not slices:
                continue
            structures = list(dict.fromkeys(row["structure"] for item in slices
                                            for row in self.entries[self.stems[item]]["rows"]))
            for structure in structures:
                rels = {item.slice or 0: f"masks/{mask_name(self.stems[item], structure)}" for item in slices}
                rel = f"masks/{mask_name(stem, structure).removesuffix('.png')}.nii.gz"
                # the volume is derived from its slices' masks (their SHA-256): rewritten only when they changed
                mask_hashes = {str(item.slice or 0): self.entries[self.stems[item]]["outputs"].get(
                    rels[item.slice or 0]) for item in slices}
                source = hashlib.sha256(_dumps(mask_hashes).encode()).hexdigest()
                sources = self.header.setdefault("volume_sources", {})
                recorded = self.header["outputs"].get(rel)
                if sources.get(rel) == source and recorded is not None and self._intact({rel: recorded}):
                    continue
                masks = {k: read_mask(self.out / r, allow_empty=True) for k, r in rels.items()}
                sources[rel] = source
                self.run_output(rel, lambda p, m=masks, a=slices[0].axis: write_mask_nifti(p, path, m, axis=a),
                                force=True)

    def rewrite(self) -> None:
        """Rewrite the manifest (the run, then the finished inputs in input order) and predictions.csv from it,
        atomically, leaving files whose bytes are already right untouched."""
        self._write_manifest()
        self._replace(self.predictions, self._csv_text(self._done()).encode("utf-8"))


