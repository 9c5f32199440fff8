"""A folder mixing real images with one file of every class of bad input that issue 20's probe found."""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.data._make import save_dicom, save_nifti, save_pil

#: Good inputs: real images under names that once broke outputs (a comma, a quote, two dots, a space).
GOOD_NAMES = ("plain.png", "a.1.png", "a.2.png", "comma, and 'quote'.png", "with space.png")


def _declaring(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header declares width x height (a decompression bomb)."""
    save_pil(path, np.zeros((4, 4), np.uint8))
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def build(folder: Path, sources: list[Path]) -> tuple[list[str], list[str]]:
    """Write the corpus into ``folder``; returns (good file names, bad file names as the CLI shows them)."""
    import pydicom

    folder.mkdir(parents=True, exist_ok=True)
    for name, src in zip(GOOD_NAMES, sources, strict=False):
        shutil.copy(src, folder / name)
    good = list(GOOD_NAMES[: len(sources)])
    bad = []
    # truncated PNG
    data = sources[0].read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 3])
    bad.append("truncated.png")
    # 16-bit PNG, RGBA with transparency
    save_pil(folder / "sixteen.png", (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 15))
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 3] = 100
    save_pil(folder / "transparent.png", rgba)
    bad += ["sixteen.png", "transparent.png"]
    # a decompression bomb: 11000 x 11000 declared in a few hundred bytes
    _declaring(folder / "bomb.png", 11000, 11000)
    bad.append("bomb.png")
    # DICOM with its rescale slope stored as text
    dcm = save_dicom(folder / "text_slope.dcm", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    ds = pydicom.dcmread(dcm)
    tag = pydicom.datadict.tag_for_keyword("RescaleSlope")
    ds[tag] = pydicom.DataElement(tag, "LO", "one")
    ds.save_as(dcm)
    bad.append("text_slope.dcm")
    # a 3-D NIfTI given without --slice
    save_nifti(folder / "volume.nii.gz", np.zeros((64, 64, 4), np.uint8))
    bad.append("volume.nii.gz")
    # garbage with an image extension, an empty file
    (folder / "garbage.jpg").write_bytes(b"not a jpeg" * 50)
    (folder / "empty.bmp").write_bytes(b"")
    bad += ["garbage.jpg", "empty.bmp"]
    # a file name that is not UTF-8 (Linux allows any bytes but "/" and NUL)
    raw = os.fsencode(folder) + b"/latin1_caf\xe9.png"
    with open(raw, "wb") as f:
        f.write(sources[0].read_bytes())
    bad.append("latin1_caf\\xe9.png")
    return good, bad


def first_images(root: Path, n: int) -> list[Path]:
    """The first ``n`` images of a dataset image folder, sorted."""
    return sorted(p for p in root.iterdir() if p.suffix.lower() in (".png", ".jpg"))[:n]


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))
