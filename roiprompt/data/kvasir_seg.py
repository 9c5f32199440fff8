"""Kvasir-SEG: 1000 colonoscopy images with one polyp mask each (Jha et al., MMM 2020).

Layout (official zip)::

    kvasir_seg/Kvasir-SEG/images/<id>.jpg
    kvasir_seg/Kvasir-SEG/masks/<id>.jpg          lossy RGB JPEG masks: binarised at 128 (MASK_THRESHOLD)
    kvasir_seg/Kvasir-SEG/kavsir_bboxes.json      boxes per image (optional)
    kvasir_seg/medvlsm_splits/{train,val,test}.json   MedVLSM 800/100/100 split with text prompts p0..p9
                                                     (also looked for under Kvasir-SEG/)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from ._files import files_by_stem, missing_list, read_json
from .datasets import Dataset, Record, register_dataset

STRUCTURE = "polyp"
SPLITS = ("train", "val", "test")
_EXTENSIONS = (".jpg", ".jpeg", ".png")
#: Kvasir-SEG ships its masks as lossy RGB JPEGs (values near 0 and near 255): binarised at the midpoint.
MASK_THRESHOLD = 128


def _boxes(path: Path) -> dict[str, list[list[float]]]:
    """id -> XYXY boxes from ``kavsir_bboxes.json`` (``{"<id>": {"bbox": [{"xmin", "ymin", "xmax", "ymax"}]}}``)."""
    if not path.is_file():
        return {}
    table = read_json(path)
    try:
        return {key: [[float(b["xmin"]), float(b["ymin"]), float(b["xmax"]), float(b["ymax"])]
                      for b in entry.get("bbox", [])] for key, entry in table.items()}
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: unexpected layout ({type(err).__name__}: {err}); expected "
                        '{"<id>": {"bbox": [{"xmin": .., "ymin": .., "xmax": .., "ymax": ..}]}}') from err


def _splits(folder: Path, ids: set[str]) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    """MedVLSM split lists (split -> ids) and the per-image text prompts, when the split files are there."""
    split_dir = next((d for d in (folder / "medvlsm_splits", folder / "Kvasir-SEG" / "medvlsm_splits")
                      if d.is_dir()), None)
    if split_dir is None:
        return {}, {}
    splits: dict[str, list[str]] = {}
    prompts: dict[str, dict[str, Any]] = {}
    for name in SPLITS:
        path = split_dir / f"{name}.json"
        if not path.is_file():
            raise DataError(f"{split_dir}: has no {name}.json; the MedVLSM split needs train.json, val.json and "
                            "test.json (github.com/naamiinepal/medvlsm, data/kvasir_polyp/anns/)")
        entries = read_json(path)
        try:
            split_ids = [Path(e["img_name"]).stem for e in entries]
        except (KeyError, TypeError) as err:
            raise DataError(f"{path}: expected a list of records with 'img_name' ({err!r})") from err
        if unknown := sorted(set(split_ids) - ids):
            raise DataError(f"{path}: names {missing_list(unknown)} image(s) missing from Kvasir-SEG/images")
        splits[name] = split_ids
        for sid, entry in zip(split_ids, entries, strict=True):
            if isinstance(entry.get("prompts"), dict):
                prompts[sid] = dict(entry["prompts"])
    return splits, prompts


@register_dataset("kvasir_seg", marker="Kvasir-SEG/images",
                  source="https://datasets.simula.no/kvasir-seg/ (Kvasir-SEG.zip)")
def read_kvasir_seg(folder: Path) -> Dataset:
    """Kvasir-SEG from ``folder`` (holding ``Kvasir-SEG/``): structure "polyp", no class label.

    Sample meta: ``path``, ``bbox`` (XYXY pixels enclosing all polyps, from kavsir_bboxes.json), ``boxes`` (one
    XYXY box per polyp), ``split`` ("train"/"val"/"test" or None) and ``prompts`` (MedVLSM p0..p9) when the
    split files are present. ``dataset.split("test")`` is the MedVLSM test list (100 images).
    """
    base = folder / "Kvasir-SEG"
    images = files_by_stem(base / "images", _EXTENSIONS)
    if not images:
        raise DataError(f"{base / 'images'}: no images (.jpg) found")
    mask_dir = base / "masks"
    if not mask_dir.is_dir():
        raise DataError(f"{mask_dir}: missing; Kvasir-SEG ships images/ and masks/ side by side")
    masks = files_by_stem(mask_dir, _EXTENSIONS)
    if unmasked := sorted(set(images) - set(masks)):
        raise DataError(f"{mask_dir}: no mask for {missing_list(unmasked)} image(s)")
    if orphans := sorted(set(masks) - set(images)):
        raise DataError(f"{base / 'images'}: no image for {missing_list(orphans)} mask(s)")
    boxes = _boxes(base / "kavsir_bboxes.json")
    splits, prompts = _splits(folder, set(images))
    split_of = {i: name for name, ids in splits.items() for i in ids}
    records = []
    for sid, path in images.items():
        meta: dict[str, Any] = {"split": split_of.get(sid)}
        if sid in boxes and boxes[sid]:
            b = boxes[sid]
            meta["boxes"] = b
            meta["bbox"] = [min(x[0] for x in b), min(x[1] for x in b), max(x[2] for x in b), max(x[3] for x in b)]
        if sid in prompts:
            meta["prompts"] = prompts[sid]
        records.append(Record(sid, path, {STRUCTURE: masks[sid]}, None, meta, mask_threshold=MASK_THRESHOLD))
    return Dataset("kvasir_seg", records, (STRUCTURE,), root=folder, splits=splits)
