"""What a batch command runs on, one 2-D image per :class:`Input` (a file or one slice of a NIfTI volume), and the
unique output names each input writes.

``--slice N`` picks slice N of every NIfTI input, ``--slice all`` makes each slice an input of its own; without
``--slice`` a 3-D NIfTI is refused (a silent middle slice is rarely the one meant) and reported as a skipped file.
"""

from __future__ import annotations

import glob
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import InputError, shown

#: File suffixes a folder listing picks up (lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".nii", ".nii.gz", ".gif")
#: Letter of each canonical axis in slice names: ``case_z040`` is axial slice 40.
AXIS_LETTERS = ("x", "y", "z")


@dataclass(frozen=True)
class Input:
    """One 2-D input: ``path``, or slice ``slice`` along canonical ``axis`` of the NIfTI volume ``path``."""

    path: Path
    slice: int | None = None
    axis: int | None = None

    @property
    def is_nifti(self) -> bool:
        return self.path.name.lower().endswith((".nii", ".nii.gz"))

    def suffix(self) -> str:
        """What the slice adds to output names (``_z040``), empty for a plain file."""
        if self.slice is None:
            return ""
        return f"_{AXIS_LETTERS[2 if self.axis is None else self.axis]}{self.slice:03d}"

    def slice_cell(self) -> str:
        """The ``slice`` cell of predictions.csv: ``z=40``, or empty for a plain file."""
        return "" if self.slice is None else f"{AXIS_LETTERS[2 if self.axis is None else self.axis]}={self.slice}"

    def __str__(self) -> str:
        return shown(self.path) + (f" [{self.slice_cell()}]" if self.slice is not None else "")

    def read(self) -> np.ndarray:
        """The image (HxW or HxWx3 uint8); InputError for a bad file, or a name that is not UTF-8."""
        from ..data import read_image

        try:
            self.path.name.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{shown(self.path)}: the file name is not valid UTF-8 (shown with \\x escapes); "
                             "outputs and predictions.csv are named after it: rename the file") from None
        return read_image(self.path, slice=self.slice, axis=self.axis)


def _list_files(target: Path) -> list[Path]:
    if target.is_dir():
        return sorted(p for p in target.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))
    if target.exists():
        return [target]
    return sorted(Path(p) for p in glob.glob(str(target)))


def list_inputs(target: Path, slice: int | str | None = None, axis: int = 2) -> list[Input]:
    """The inputs of ``target`` (a folder, a glob or a file), sorted by file, then slice.

    A NIfTI file with ``slice="all"`` gives one input per slice (counted from its header; an unreadable header
    gives one input, whose reading reports the problem); with an integer, that slice; without, the file itself.
    """
    from ..data.nifti import nifti_geometry

    inputs: list[Input] = []
    for path in _list_files(target):
        item = Input(path)
        if not item.is_nifti or slice is None:
            inputs.append(item)
        elif slice == "all":
            try:
                n = nifti_geometry(path).slices(axis)
            except Exception:  # noqa: BLE001 - a bad header: reading the file will say what is wrong
                inputs.append(item)
                continue
            inputs.extend(Input(path, k, axis) for k in range(n))
        else:
            inputs.append(Input(path, int(slice), axis))
    return inputs


# -- output names: unique per input ---------------------------------------------------------------------------------------------
def mask_name(stem: str, structure: str) -> str:
    """File name of a predicted mask under ``masks/``, the same for every command."""
    return f"{stem}_{structure}.png"


def _base_and_extension(path: Path) -> tuple[str, str]:
    """``("a.1", ".png")`` for ``a.1.png``; a name without an image extension (a DICOM file ``IM.0001``) is kept
    whole, with no extension."""
    from ..data import IMAGE_EXTENSIONS
    from ..data.io import split_extension

    base, ext = split_extension(path)
    if ext not in IMAGE_EXTENSIONS or not base:
        return path.name, ""
    return base, ext


def output_files(stem: str, structures: Iterable[str]) -> list[str]:
    """The files one input writes, relative to ``--out``: its masks, then its overlay."""
    return [f"masks/{mask_name(stem, s)}" for s in structures] + [f"overlays/{stem}.png"]


def output_stems(inputs: Sequence[Input], structures: Sequence[str],
                 reserved: Iterable[str] = ()) -> dict[Input, str]:
    """``{input: output stem}``, every input's output files distinct (compared ignoring case, as macOS and Windows
    do) and none of them one of ``reserved`` (relative paths such as ``overlays/reference.png``).

    The stem is the file name without its image extension (``a.1.png`` -> ``a.1``, ``case.nii.gz`` -> ``case``).
    Inputs sharing a stem with different extensions get theirs added (``a.png``, ``a.jpg`` -> ``a_png``,
    ``a_jpg``); a stem whose files are still taken (the same name in several folders, a reserved name) gets
    ``_2``, ``_3``, ... in input order, the first one keeping its name. A slice of a NIfTI volume adds its axis
    and index (``case_z040``). Deterministic for a given input list.
    """
    images = list(dict.fromkeys(item.path for item in inputs))  # each file once, in input order
    parts = {path: _base_and_extension(path) for path in images}
    counts = Counter(base.casefold() for base, _ in parts.values())
    extensions: dict[str, set[str]] = defaultdict(set)
    for base, ext in parts.values():
        extensions[base.casefold()].add(ext)
    taken = {r.casefold() for r in reserved}
    stems: dict[Path, str] = {}
    for path in images:
        base, ext = parts[path]
        key = base.casefold()
        preferred = f"{base}_{ext[1:].replace('.', '_')}" if counts[key] > 1 and len(extensions[key]) > 1 else base
        stem, n = preferred, 1
        while {f.casefold() for f in output_files(stem, structures)} & taken:
            n += 1
            stem = f"{preferred}_{n}"
        taken |= {f.casefold() for f in output_files(stem, structures)}
        stems[path] = stem
    out: dict[Input, str] = {}
    for item in inputs:
        preferred = stems[item.path] + item.suffix()
        stem, n = preferred, 1
        while item.slice is not None and {f.casefold() for f in output_files(stem, structures)} & taken:
            n += 1
            stem = f"{preferred}_{n}"
        taken |= {f.casefold() for f in output_files(stem, structures)}
        out[item] = stem
    return out


def volume_stems(inputs: Sequence[Input], stems: Mapping[Input, str]) -> dict[Path, str]:
    """``{NIfTI file: stem of its mask volumes}``: the stem of its slices without the slice suffix."""
    out: dict[Path, str] = {}
    for item in inputs:
        if item.is_nifti and item.path not in out:
            stem = stems[item]
            out[item.path] = stem[: len(stem) - len(item.suffix())] if item.suffix() else stem
    return out


def image_labels(inputs: Sequence[Input]) -> dict[Input, str]:
    """The ``image`` cell of each input: its file name, or the path as listed where several files share a name."""
    names = Counter(path.name for path in dict.fromkeys(item.path for item in inputs))
    return {item: shown(item.path.name if names[item.path.name] == 1 else item.path) for item in inputs}
