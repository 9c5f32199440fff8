"""Your own data in a plain folder::

    my_data/images/<id>.<ext>                 .png .jpg .jpeg .bmp .tif .tiff .gif .dcm .nii .nii.gz
    my_data/masks/<structure>/<id>.<ext>      one folder per structure ...
    my_data/masks/<id>.<ext>                  ... or files directly in masks/ for one structure, named "roi"
    my_data/labels.csv                        optional: id,label (header optional), or with a header
                                              id,label,group (group: the patient, kept on one side of a split)
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import DataError
from ._files import files_by_stem, missing_list
from .datasets import Dataset, Record, register_dataset
from .io import IMAGE_EXTENSIONS

SINGLE_STRUCTURE = "roi"


def _labels(path: Path, ids: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``(id -> label, id -> group)`` from ``labels.csv``.

    Without a header the first two columns are id,label. With a header row naming ``id`` and ``label`` (any
    order), an optional ``group`` column gives each image its patient (or any unit that must stay on one side of a
    train/test split); an empty group cell means the image is its own group.
    """
    if not path.is_file():
        return {}, {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [[c.strip() for c in row] for row in csv.reader(f) if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read CSV ({type(err).__name__}: {err})") from err
    header = [c.lower() for c in rows[0]] if rows else []
    if "id" in header and "label" in header:
        rows = rows[1:]
        col_id, col_label = header.index("id"), header.index("label")
        col_group = header.index("group") if "group" in header else None
    else:
        col_id, col_label, col_group = 0, 1, None
    width = max(col_id, col_label, -1 if col_group is None else col_group) + 1
    if bad := [i + 2 for i, row in enumerate(rows) if len(row) < min(width, 2) or not row[col_id]]:
        raise DataError(f"{path}: rows {bad[:10]} lack the columns {header[:width] or ['id', 'label']}")
    labels = {row[col_id]: row[col_label] for row in rows if len(row) > col_label}
    if len({row[col_id] for row in rows}) != len(rows):
        raise DataError(f"{path}: some ids appear twice; give one label per id")
    if unknown := sorted({row[col_id] for row in rows} - ids):
        raise DataError(f"{path}: labels for {missing_list(unknown)} id(s) with no file in images/")
    groups = {row[col_id]: row[col_group] for row in rows
              if col_group is not None and len(row) > col_group and row[col_group]}
    return labels, groups


@register_dataset("folder", marker="images", source="your own files")
def read_folder(folder: Path, mask_threshold: float | None = None) -> Dataset:
    """A dataset from ``folder`` laid out as in the module docstring; its name is "folder".

    Ids without a mask get an empty ``masks`` dict (for a structure they lack, no entry); empty mask files
    are allowed (negative images). Sample meta: ``path``, ``mask_paths``, and ``group`` where labels.csv gives one.
    Mask files must be binary unless ``mask_threshold`` says how to binarise them (JPEG masks: 128; see
    :func:`~roiprompt.data.read_mask`).

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
    labels, groups = _labels(folder / "labels.csv", set(images))
    records = [Record(sid, path, {s: by_id[sid] for s, by_id in masks.items() if sid in by_id}, labels.get(sid),
                      {"group": groups[sid]} if sid in groups else {}, mask_threshold=mask_threshold)
               for sid, path in images.items()]
    return Dataset("folder", records, tuple(masks), root=folder)
