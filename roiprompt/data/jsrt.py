"""JSRT chest radiographs (Shiraishi et al., 2000) with the SCR masks of 5 structures (van Ginneken et al., 2006).

Layout (the uploader's layout kept by ``shared/data``; the official raw ``.IMG`` layout is not supported)::

    jsrt/JSRT/jsrt_images/images/<ID>.IMG.png                 ID = JPCLN### (nodule) or JPCNN### (normal)
    jsrt/JSRT/masks/masks/<structure>/<ID>.gif                 left_lung, right_lung, heart, left/right_clavicle

Intensity polarity: the images were converted from 12-bit raw files through an inverted grey ramp, and such
conversions can come out inverted (air bright). Every image is checked when it is read: when its lungs are
brighter on average than its heart, it is inverted (``255 - x``) so that air is dark as on any radiograph, and
``meta["inverted_on_disk"]`` says so. (On the ``shared/data`` copy no image needs it: all 247 have normal
polarity.) Some images of that copy have almost no contrast left (fewer than 64 grey levels, e.g. JPCLN031);
``meta["low_contrast"]`` flags them; they are returned as stored.

Split (methods.md §6.1, SCR-style two folds): odd case number = "train" (reference pool), even = "test".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..types import Sample
from ._files import files_by_stem, missing_list
from .datasets import Dataset, Record, load_record, register_dataset

STRUCTURES = ("left_lung", "right_lung", "heart", "left_clavicle", "right_clavicle")
_LABELS = {"JPCLN": "nodule", "JPCNN": "normal"}
_LOW_CONTRAST_LEVELS = 64


def normalise_polarity(image: np.ndarray, masks: dict[str, np.ndarray]) -> tuple[np.ndarray, bool | None]:
    """Invert a chest radiograph whose lungs are brighter than its heart (air must be dark).

    The reference region is the heart, or everything outside the lungs when there is no heart mask.

    Returns:
        (image with air dark, True if it was inverted / False if not / None if there were no lung pixels to
        decide from, in which case the image is returned unchanged).
    """
    lungs = np.zeros(image.shape[:2], bool)
    for name in ("left_lung", "right_lung"):
        if name in masks:
            lungs |= masks[name]
    heart = masks.get("heart")
    reference = heart if heart is not None and heart.any() else ~lungs
    if not lungs.any() or not reference.any():
        return image, None
    grey = image.mean(axis=2) if image.ndim == 3 else image
    if grey[lungs].mean() > grey[reference].mean():
        return 255 - image, True
    return image, False


def load_jsrt(record: Record) -> Sample:
    """Read a JSRT record and normalise its polarity (see module docstring)."""
    sample = load_record(record)
    image, inverted = normalise_polarity(sample.image, dict(sample.masks))
    levels = int(np.count_nonzero(np.bincount(image.ravel(), minlength=256)))
    meta = {**sample.meta, "inverted_on_disk": inverted, "grey_levels": levels,
            "low_contrast": levels < _LOW_CONTRAST_LEVELS}
    return dataclasses.replace(sample, image=image, meta=meta)


@register_dataset("jsrt", marker="JSRT/jsrt_images/images",
                  source="http://db.jsrt.or.jp/eng.php (images) and the SCR masks (van Ginneken et al.)")
def read_jsrt(folder: Path) -> Dataset:
    """JSRT + SCR from ``folder`` (holding ``JSRT/``): 5 structures, label "nodule" / "normal".

    Sample meta: ``path``, ``case_number`` (the ### of the ID), ``split``, ``inverted_on_disk``,
    ``grey_levels``, ``low_contrast``. Masks are independent and may overlap (do not arg-max across them).
    """
    base = folder / "JSRT"
    images = files_by_stem(base / "jsrt_images" / "images", (".png",), strip=".IMG")
    if not images:
        raise DataError(f"{base / 'jsrt_images' / 'images'}: no <ID>.IMG.png images found")
    mask_root = base / "masks" / "masks"
    masks: dict[str, dict[str, Path]] = {}
    for structure in STRUCTURES:
        if not (mask_root / structure).is_dir():
            raise DataError(f"{mask_root / structure}: missing; expected one folder per structure: {STRUCTURES}")
        masks[structure] = files_by_stem(mask_root / structure, (".gif", ".png"))
        if orphans := sorted(set(masks[structure]) - set(images)):
            raise DataError(f"{mask_root / structure}: no image for {missing_list(orphans)} mask(s)")
        if unmasked := sorted(set(images) - set(masks[structure])):
            raise DataError(f"{mask_root / structure}: no mask for {missing_list(unmasked)} image(s)")
    records = []
    splits: dict[str, list[str]] = {"train": [], "test": []}
    for sid, path in images.items():
        prefix, number = sid[:5], sid[5:]
        if not number.isdigit():
            raise DataError(f"{path}: id {sid!r} is not JPCLN### or JPCNN###")
        split = "train" if int(number) % 2 else "test"
        splits[split].append(sid)
        meta = {"case_number": int(number), "split": split}
        records.append(Record(sid, path, {s: masks[s][sid] for s in STRUCTURES}, _LABELS.get(prefix), meta))
    return Dataset("jsrt", records, STRUCTURES, root=folder, splits=splits, loader=load_jsrt)
