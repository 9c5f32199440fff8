"""A study: the images of one folder (files, DICOM, every slice of a NIfTI volume), read in the background.

Images are addressed by an integer id (their position in the folder listing), never by a path the browser sends:
the app reads only what :func:`roiprompt.batch.inputs.list_inputs` found in the study folder, plus files uploaded
into it under a cleaned name.
"""

from __future__ import annotations

import io
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image

from ..batch.inputs import IMAGE_SUFFIXES, Input, image_labels, list_inputs, output_stems
from ..data.overlay import STRUCTURE_COLOURS
from ..errors import InputError, shown

#: Longest side of the thumbnails in the study list and the review grid, pixels.
THUMB_SIZE = 192
#: Upload cap (bytes per file); the pixel cap is the readers' (ROIPROMPT_MAX_PIXELS).
MAX_UPLOAD_BYTES = 256 * 1024 * 1024


@dataclass
class StudyImage:
    """One 2-D image of the study: ``id`` (its index), the input, its display name and output stem, and once read:
    its size and thumbnail (JPEG bytes), or the reader's message."""

    id: int
    input: Input
    name: str
    stem: str
    hw: tuple[int, int] | None = None
    thumb: bytes | None = None
    error: str | None = None

    def summary(self) -> dict:
        return {"id": self.id, "name": self.name, "stem": self.stem, "loaded": self.hw is not None or bool(self.error),
                "size": None if self.hw is None else [self.hw[1], self.hw[0]], "error": self.error,
                # a NIfTI slice names its volume, so the page can step through the volume's slices
                "volume": self.input.path.name if self.input.slice is not None else None, "slice": self.input.slice}


def thumbnail(image: np.ndarray, masks: Mapping[str, np.ndarray] | None = None, size: int = THUMB_SIZE,
              colours: Mapping[str, tuple[int, int, int]] | None = None) -> bytes:
    """JPEG bytes of ``image`` (HxW[x3] uint8) shrunk to ``size`` on its longest side, with ``masks`` ({structure:
    HxW bool}) filled in their colours."""
    pil = Image.fromarray(image).convert("RGB")
    scale = size / max(pil.size)
    small = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
    out = np.asarray(pil.resize(small, Image.Resampling.BILINEAR), dtype=np.float32)
    for i, (name, mask) in enumerate((masks or {}).items()):
        colour = (colours or {}).get(name, STRUCTURE_COLOURS[i % len(STRUCTURE_COLOURS)])
        m = np.asarray(Image.fromarray(np.asarray(mask, np.uint8) * 255).resize(small, Image.Resampling.NEAREST)) > 0
        out[m] = 0.55 * out[m] + 0.45 * np.asarray(colour, np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def clean_upload_name(name: str) -> str:
    """A browser-given file name as a plain name inside the study folder: no folders, no leading dots, only
    letters, digits and ``._-`` (``../../x.png`` -> ``x.png``).

    Raises:
        InputError: nothing usable is left, or the suffix is not an image type the study reads.
    """
    base = re.split(r"[\\/]", name)[-1]
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
    if not base or not base.lower().endswith(IMAGE_SUFFIXES):
        raise InputError(f"upload {name!r}: not an image file name (expected one of {', '.join(IMAGE_SUFFIXES)})")
    return base


@dataclass
class Study:
    """The images of ``folder``: listed at once, read (size, thumbnail) by :meth:`load` in the background.

    Args:
        folder: the study folder; NIfTI volumes give one image per slice along ``axis``.
    """

    folder: Path
    axis: int = 2
    images: list[StudyImage] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder).resolve()
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.rescan()

    def rescan(self) -> list[StudyImage]:
        """List the folder again and append the images not seen before (ids never change: an image that left the
        folder keeps its id and reports the read error). Returns the new ones."""
        with self._lock:
            known = {img.input for img in self.images}
            found = [item for item in list_inputs(self.folder, "all", self.axis) if item not in known]
            everything = [img.input for img in self.images] + found
            stems, labels = output_stems(everything, []), image_labels(everything)
            start = len(self.images)
            new = [StudyImage(start + k, item, labels[item] + (f" [{item.slice_cell()}]" if item.slice is not None
                                                              else ""), stems[item]) for k, item in enumerate(found)]
            self.images += new
            for img in self.images:
                img.stem = stems[img.input]
            return new

    def __len__(self) -> int:
        return len(self.images)

    def get(self, image_id: int) -> StudyImage:
        """The image with ``image_id``; InputError (the browser sent an id the study does not have) otherwise."""
        if not isinstance(image_id, int) or not 0 <= image_id < len(self.images):
            raise InputError(f"no image {image_id!r} in the study ({len(self.images)} images)")
        return self.images[image_id]

    def read(self, image_id: int) -> np.ndarray:
        """The pixels (HxW[x3] uint8), from a small cache of recent images; InputError for an unreadable file."""
        with self._lock:
            if image_id in self._cache:
                self._cache.move_to_end(image_id)
                return self._cache[image_id]
        img = self.get(image_id)
        pixels = img.input.read()
        with self._lock:
            self._cache[image_id] = pixels
            while len(self._cache) > 8:
                self._cache.popitem(last=False)
        return pixels

    def load(self, image_id: int) -> StudyImage:
        """Read one image's size and thumbnail (once); a bad file records the reader's message, not raised."""
        img = self.get(image_id)
        if img.hw is None and img.error is None:
            try:
                pixels = self.read(image_id)
                img.thumb = thumbnail(pixels)
                img.hw = pixels.shape[:2]
            except InputError as err:
                img.error = str(err)
            except Exception as err:  # noqa: BLE001 - any reader failure is this file's problem, not the app's
                img.error = f"{shown(img.input.path)}: cannot read ({type(err).__name__}: {err})"
        return img

    def save_upload(self, name: str, data: bytes) -> Path:
        """Write an uploaded file into the study folder under a cleaned, unused name; returns its path."""
        if len(data) > MAX_UPLOAD_BYTES:
            raise InputError(f"upload {name!r}: {len(data) / 2**20:.0f} MiB is over the limit of "
                             f"{MAX_UPLOAD_BYTES // 2**20} MiB")
        from ..files import atomic_write_bytes

        base = clean_upload_name(name)
        target = self.folder / base
        k = 1
        while target.exists():
            stem, dot, ext = base.partition(".")
            target = self.folder / f"{stem}_{k}{dot}{ext}"
            k += 1
        if target.resolve().parent != self.folder:  # cannot happen after cleaning; checked all the same
            raise InputError(f"upload {name!r}: outside the study folder")
        atomic_write_bytes(target, data)
        return target
