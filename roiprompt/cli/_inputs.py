"""What a batch command runs on: one 2-D image per :class:`Input`, a file or one slice of a NIfTI volume.

``--slice N`` picks slice N of every NIfTI input, ``--slice all`` makes each slice an input of its own; without
``--slice`` a 3-D NIfTI is refused (a silent middle slice is rarely the one meant) and reported as a skipped file.
"""

from __future__ import annotations

import argparse
import glob
from dataclasses import dataclass
from pathlib import Path

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
