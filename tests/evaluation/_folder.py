"""A small ``folder`` dataset made of real BUS-BRA images, for the benchmark tests (no official split)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import data_root

# patients (BUS-BRA case numbers) with two images each (-l, -r) of the same pathology
BENIGN = ("0002", "0004", "0007")
MALIGNANT = ("0001", "0003", "0005")


def busbra_folder(tmp_path: Path, benign: tuple[str, ...] = BENIGN, malignant: tuple[str, ...] = MALIGNANT,
                  groups: bool = True, name: str = "my_data") -> Path:
    """``images/<id>.png``, ``masks/lesion/<id>.png`` and ``labels.csv`` (``id,label[,group]``): 2 images per patient,
    copied from BUS-BRA; the group is the patient."""
    source = data_root("busbra") / "BUSBRA"
    root = tmp_path / name
    (root / "images").mkdir(parents=True)
    (root / "masks" / "lesion").mkdir(parents=True)
    rows = ["id,label,group" if groups else "id,label"]
    for label, cases in (("benign", benign), ("malignant", malignant)):
        for case in cases:
            for side in ("l", "r"):
                sid = f"p{case}_{side}"
                shutil.copy(source / "Images" / f"bus_{case}-{side}.png", root / "images" / f"{sid}.png")
                shutil.copy(source / "Masks" / f"mask_{case}-{side}.png", root / "masks" / "lesion" / f"{sid}.png")
                rows.append(f"{sid},{label},patient{case}" if groups else f"{sid},{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root
