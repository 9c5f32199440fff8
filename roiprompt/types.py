"""The three value types used everywhere: :class:`Sample`, :class:`Prompt` and :class:`Prediction`.

Conventions (the same across the package): images are HxW or HxWx3 ``uint8`` arrays at their original
resolution; masks are HxW ``bool``; points are ``(x, y)`` pixels and boxes ``(x0, y0, x1, y1)`` pixels in the
original image frame. Only :mod:`roiprompt.prompts` converts to a model's frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Sample:
    """One image of a dataset with its structure masks and label.

    Attributes:
        id: unique id within its dataset (the file stem).
        image: HxW or HxWx3 uint8 array, original resolution.
        masks: structure name -> HxW bool array (may be empty for unlabelled data).
        label: class label as a string, or None.
        meta: anything else the dataset carries (path, fold, BI-RADS, box...).
    """

    id: str
    image: np.ndarray
    masks: Mapping[str, np.ndarray] = field(default_factory=dict)
    label: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    def mask(self, structure: str | None = None) -> np.ndarray:
        """The mask of ``structure`` (or the only mask when None); raises InputError listing the choices."""
        if structure is None:
            if len(self.masks) != 1:
                raise InputError(f"sample {self.id!r} has structures {sorted(self.masks)}; name one")
            return next(iter(self.masks.values()))
        if structure not in self.masks:
            raise InputError(f"sample {self.id!r} has no structure {structure!r}; it has {sorted(self.masks)}")
        return self.masks[structure]


@dataclass(frozen=True)
class Prompt:
    """The one prompt representation: any of points, box and dense mask logits, in original pixels.

    Attributes:
        points: (N, 2) float array of (x, y) pixels, or None.
        point_labels: (N,) int array, 1 = foreground, 0 = background, or None.
        box: (4,) float array (x0, y0, x1, y1) in pixels, or None.
        mask_logits: dense mask prompt in the backbone's low-resolution frame (as returned by a previous
            decoder call), or None.
    """

    points: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    box: np.ndarray | None = None
    mask_logits: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.points is not None:
            pts = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
            labels = (np.ones(len(pts), dtype=np.int64) if self.point_labels is None
                      else np.asarray(self.point_labels, dtype=np.int64).reshape(-1))
            if len(labels) != len(pts):
                raise InputError(f"{len(pts)} points but {len(labels)} point labels; give one label per point")
            if not np.isfinite(pts).all():
                raise InputError("points contain NaN or infinity")
            object.__setattr__(self, "points", pts)
            object.__setattr__(self, "point_labels", labels)
        elif self.point_labels is not None:
            raise InputError("point_labels given without points")
        if self.box is not None:
            box = np.asarray(self.box, dtype=np.float64).reshape(-1)
            if box.shape != (4,) or not np.isfinite(box).all():
                raise InputError(f"box must be 4 finite numbers (x0, y0, x1, y1), got {self.box!r}")
            if box[2] <= box[0] or box[3] <= box[1]:
                raise InputError(f"box {box.tolist()} is empty: need x1 > x0 and y1 > y0")
            object.__setattr__(self, "box", box)

    @property
    def is_empty(self) -> bool:
        return self.points is None and self.box is None and self.mask_logits is None


@dataclass(frozen=True)
class Prediction:
    """What every method returns for one image.

    Score and extras keys are one vocabulary across methods (a method fills those that apply to it):

    ``scores``
        * classifiers: ``{class label: probability}``, summing to 1;
        * ``iou_pred``: the SAM-family decoder's predicted IoU of the returned mask (``box_prompt``: the
          area-weighted mean over its boxes);
        * ``quality``: the method's one overall quality flag, higher = more likely a good mask (``med_persam_plus``:
          the calibrated probability that Dice >= 0.5; the predicted IoU for the other SAM-prompting methods; the
          mean foreground probability inside the mask for ``concept_text``); absent where a method has none
          (``registration``);
        * method-specific raw signals beside them: ``warp_agreement`` (Med-PerSAM: Dice of the mask with the
          warped reference mask); ``med_persam_plus``'s candidate signals ``head_prob``, ``cosine``, ``area``,
          ``agree_warp``, ``agree_registration``, ``warp_match`` and ``margin`` (:mod:`~roiprompt.methods.
          med_persam_plus.candidates`).

    ``extras``
        * ``boxes``: (N, 4) XYXY pixels of the box prompt(s) given to the decoder, or None when it got none;
        * ``points`` (N, 2) (x, y) pixels and ``point_labels`` (N,) of the point prompts, or None;
        * ``low_res_logits``: (m, m) decoder logits in the model frame (reusable as a dense prompt);
        * ``mask``: the ROI mask a classifier used (HxW bool); ``probability``: HxW foreground probability;
          ``warped_mask``: HxW bool warped reference mask; ``rounds``: decoder rounds run;
        * ``source``: which localiser's candidate won, ``candidates``: every candidate's (source, quality), best
          first (``med_persam_plus``).

    Attributes:
        mask: HxW bool at the original resolution (segmenters), else None.
        label: predicted class (classifiers), else None.
        scores: named numbers (see above).
        extras: method-specific outputs for inspection (see above).
    """

    mask: np.ndarray | None = None
    label: str | None = None
    scores: Mapping[str, float] = field(default_factory=dict)
    extras: Mapping[str, Any] = field(default_factory=dict)
