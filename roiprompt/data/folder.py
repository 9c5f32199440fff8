"""Your own data in a plain folder::

    my_data/images/<id>.<ext>                 .png .jpg .jpeg .bmp .tif .tiff .gif .dcm .nii .nii.gz
    my_data/masks/<structure>/<id>.<ext>      one folder per structure ...
    my_data/masks/<id>.<ext>                  ... or files directly in masks/ for one structure, named "roi"
    my_data/labels.csv                        optional: id,label (header optional)
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import DataError
from ._files import files_by_stem, missing_list
from .datasets import Dataset, Record, register_dataset
from .io import IMAGE_EXTENSIONS

SINGLE_STRUCTURE = "roi"


def _labels(path: Path, ids: set[str]) -> dict[str, str]:
    """``id -> label`` from ``labels.csv`` (two columns; a first row ``id,label`` is taken as a header)."""
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [[c.strip() for c in row] for row in csv.reader(f) if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read CSV ({type(err).__name__}: {err})") from err
    if rows and [c.lower() for c in rows[0][:2]] == ["id", "label"]:
        rows = rows[1:]
    if bad := [i + 1 for i, row in enumerate(rows) if len(row) < 2 or not row[0]]:
        raise DataError(f"{path}: rows {bad[:10]} do not have the two columns id,label")
    labels = {row[0]: row[1] for row in rows}
    if len(labels) != len(rows):
        raise DataError(f"{path}: some ids appear twice; give one label per id")
    if unknown := sorted(set(labels) - ids):
        raise DataError(f"{path}: labels for {missing_list(unknown)} id(s) with no file in images/")
    return labels


@register_dataset("folder", marker="images", source="your own files")
def read_folder(folder: Path) -> Dataset:
    """A dataset from ``folder`` laid out as in the module docstring; its name is "folder".

    Ids without a mask get an empty ``masks`` dict (for a structure they lack, no entry); empty mask files
    are allowed (negative images). Sample meta: ``path``, ``mask_paths``.

    Raises:
        DataError: no images/ folder or no image in it, a mask or label without an image, two files for one id,
            masks/ mixing files and structure folders.
    """
    image_dir = folder / "images"
    if not image_dir.is_dir():
        raise DataError(f"{folder}: no images/ folder; expected {folder}/images/<id>.png (and optionally "
                        "masks/<structure>/<id>.png or masks/<id>.png, labels.csv)")
    images = files_by_stem(image_dir, IMAGE_EXTENSIONS)
    if not images:
        raise DataError(f"{image_dir}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    masks: dict[str, dict[str, Path]] = {}
    direct: dict[str, Path] = {}
    mask_dir = folder / "masks"
    if mask_dir.is_dir():
        direct = files_by_stem(mask_dir, IMAGE_EXTENSIONS)
        subdirs = sorted(p for p in mask_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if direct and subdirs:
            raise DataError(f"{mask_dir}: has both mask files and structure folders ({[p.name for p in subdirs]}); "
                            "use masks/<id>.png for one structure or masks/<structure>/<id>.png, not both")
        if direct:
            masks[SINGLE_STRUCTURE] = direct
        for sub in subdirs:
            masks[sub.name] = files_by_stem(sub, IMAGE_EXTENSIONS)
    orphans = sorted(i if direct else f"{s}/{i}" for s, by_id in masks.items() for i in by_id if i not in images)
    if orphans:
        raise DataError(f"{mask_dir}: no image in {image_dir} for {missing_list(orphans)} mask(s); "
                        "mask files must be named like their image (<id>.<ext>)")
    labels = _labels(folder / "labels.csv", set(images))
    records = [Record(sid, path, {s: by_id[sid] for s, by_id in masks.items() if sid in by_id}, labels.get(sid), {})
               for sid, path in images.items()]
    return Dataset("folder", records, tuple(masks), root=folder)
