"""BUS-BRA: 1875 breast ultrasound images with lesion masks, pathology, BI-RADS (Gómez-Flores et al., 2024).

Layout (official Zenodo record 10.5281/zenodo.7730709)::

    busbra/BUSBRA/Images/bus_XXXX-{l,r,s}.png
    busbra/BUSBRA/Masks/mask_XXXX-{l,r,s}.png
    busbra/BUSBRA/bus_data.csv     ID, Case, Histology, Pathology, BIRADS, Device, Width, Height, Side, BBOX [x,y,w,h]
    busbra/BUSBRA/5-fold-cv.csv    ID, Pathology, kFold, valid_1..valid_5 (patient-wise folds)

Splits (methods.md §6.1, our choice of fold 1): test = ``kFold == 1``; of the rest, ``valid_1 == 1`` is train
and ``valid_1 == 0`` is validation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DataError, InputError
from ._files import files_by_stem, missing_list, read_csv
from .datasets import Dataset, Record, register_dataset

STRUCTURE = "lesion"
LABELS = ("pathology", "birads", "histology")
_DATA_COLUMNS = ("ID", "Case", "Histology", "Pathology", "BIRADS", "Device", "Side", "BBOX")
_FOLD_COLUMNS = ("ID", "kFold", "valid_1")


def _int_or_none(value: str) -> int | None:
    value = value.strip()
    if value == "" or value.lower() == "nan":
        return None
    return int(float(value))


def _bbox_xyxy(text: str, where: str) -> list[float]:
    """``"[x,y,w,h]"`` -> ``[x, y, x + w, y + h]`` (XYXY pixels; x + w is one past the last lesion column)."""
    try:
        x, y, w, h = (float(v) for v in json.loads(text))
    except (ValueError, TypeError) as err:
        raise DataError(f"{where}: BBOX {text!r} is not [x, y, w, h] ({err})") from err
    return [x, y, x + w, y + h]


@register_dataset("busbra", marker="BUSBRA/bus_data.csv", source="https://doi.org/10.5281/zenodo.7730709")
def read_busbra(folder: Path, label: str | None = "pathology") -> Dataset:
    """BUS-BRA from ``folder`` (holding ``BUSBRA/``): structure "lesion".

    Args:
        folder: the dataset folder.
        label: "pathology" (default: "benign"/"malignant"), "birads" ("2".."5" as strings), "histology"
            (e.g. "fibroadenoma") or None (no label).

    Sample meta: ``path``, ``case`` (patient number), ``group`` (the patient, for grouped splits), ``histology``,
    ``pathology``, ``birads`` (int), ``device``,
    ``side``, ``bbox`` (XYXY pixels), ``kfold`` (1..5, official 5-fold CV), ``valid`` ({fold: 1 train / 0 val /
    None test}) and ``split``. ``dataset.fold(k)`` -> (train+val, test) for the official fold k.
    """
    if label not in (*LABELS, None):
        raise InputError(f"busbra: label must be one of {list(LABELS)} or None, got {label!r}")
    base = folder / "BUSBRA"
    data_rows = read_csv(base / "bus_data.csv", _DATA_COLUMNS)
    fold_path = base / "5-fold-cv.csv"
    folds = {r["ID"]: r for r in read_csv(fold_path, _FOLD_COLUMNS)} if fold_path.is_file() else {}
    images = files_by_stem(base / "Images", (".png",))
    masks = files_by_stem(base / "Masks", (".png",))
    ids = [r["ID"] for r in data_rows]
    if no_image := [i for i in ids if i not in images]:
        raise DataError(f"{base / 'Images'}: no image for {missing_list(no_image)} row(s) of bus_data.csv")
    if no_mask := [i for i in ids if i.replace("bus_", "mask_", 1) not in masks]:
        raise DataError(f"{base / 'Masks'}: no mask for {missing_list(no_mask)} image(s)")
    if folds and (no_fold := [i for i in ids if i not in folds]):
        raise DataError(f"{fold_path}: no fold for {missing_list(no_fold)} image(s)")

    records = []
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []} if folds else {}
    for row in data_rows:
        sid = row["ID"]
        where = f"{base / 'bus_data.csv'} row {sid}"
        try:
            meta: dict[str, Any] = {"case": int(row["Case"]), "group": f"case {int(row['Case'])}",
                                    "histology": row["Histology"],
                                    "pathology": row["Pathology"], "birads": int(row["BIRADS"]),
                                    "device": row["Device"], "side": row["Side"],
                                    "bbox": _bbox_xyxy(row["BBOX"], where)}
            if folds:
                f = folds[sid]
                meta["kfold"] = _int_or_none(f["kFold"])
                meta["valid"] = {k: _int_or_none(f.get(f"valid_{k}", "")) for k in range(1, 6)}
        except ValueError as err:
            raise DataError(f"{where}: bad value ({err})") from err
        if folds:
            if meta["kfold"] == 1:
                split = "test"
            elif meta["valid"][1] in (0, 1):
                split = "train" if meta["valid"][1] == 1 else "val"
            else:
                raise DataError(f"{fold_path} row {sid}: valid_1 is {meta['valid'][1]!r} outside the test fold; "
                                "expected 1 (train) or 0 (validation)")
            meta["split"] = split
            splits[split].append(sid)
        value = None if label is None else str(meta[label])
        records.append(Record(sid, images[sid], {STRUCTURE: masks[sid.replace("bus_", "mask_", 1)]}, value, meta))
    return Dataset("busbra", records, (STRUCTURE,), root=folder, splits=splits)
