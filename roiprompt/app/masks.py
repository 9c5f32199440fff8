"""What the app keeps per structure: checked structure names, and propagated masks packed to bits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import InputError

#: Structure names become file names and CSV cells.
_STRUCTURE_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def check_structure(name: Any) -> str:
    """``name`` if it can name a structure (1-40 letters, digits, ``_`` or ``-``), else InputError."""
    if not isinstance(name, str) or not 0 < len(name) <= 40 or not set(name) <= _STRUCTURE_CHARS:
        raise InputError(f"structure name {name!r}: use 1-40 letters, digits, '_' or '-' (e.g. heart, left_lung)")
    return name


@dataclass
class Result:
    """One structure's propagated mask (packed bits) with its scores."""

    packed: np.ndarray
    hw: tuple[int, int]
    quality: float | None
    iou_pred: float | None

    @classmethod
    def of(cls, mask: np.ndarray, scores: Mapping[str, Any]) -> "Result":
        def number(key: str) -> float | None:
            value = scores.get(key)
            return None if value is None or not np.isfinite(float(value)) else float(value)

        return cls(np.packbits(mask), mask.shape, number("quality"), number("iou_pred"))

    @property
    def mask(self) -> np.ndarray:
        return np.unpackbits(self.packed, count=self.hw[0] * self.hw[1]).reshape(self.hw).astype(bool)
