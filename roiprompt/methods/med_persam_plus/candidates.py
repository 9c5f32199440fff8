"""Candidate masks for one target and structure, the signals that score them, and the clean-up of the winner.

Every candidate is a decoded mask in the work frame (the decoder's (S, S) low-res grid): the components of the
learned localiser's probability map (each prompts the decoder with its padded box), the warped reference mask
(box plus dense prior, as Med-PerSAM's step 0), the warped mask itself (no decoder, as ``registration``), and the
fusion (the top component of probability x blurred warp prior). Each is described by dataset-agnostic signals:

==============  ==================================================================================================
``iou_pred``    the decoder's predicted IoU (1 for the raw warp, which has none; see ``is_*`` terms)
``cosine``      cosine of the mask-pooled target tokens to the references' prototype (Matcher-style)
``head_prob``   the localiser's mean probability inside the mask
``area``        ``|log(area / reference area)|``: area plausibility
``agreement``   Dice with the other localiser's candidate (head vs warp), the cross-check of the two
``warp_match``  local NCC of the warped reference image to the target: does registration mean anything here?
==============  ==================================================================================================

:func:`rank` chooses among them with a short rule, and :func:`quality` turns the winner's signals into the
probability that its Dice is >= 0.5. Both were chosen on train-split targets (3 references x 20 targets per
dataset, never test images) of JSRT, Kvasir-SEG and BUS-BRA. A logistic scorer over all the signals was tried
first: left out of its fit, Kvasir-SEG selected 0.45 Dice (the head alone: 0.63) and its failure flag had AUROC
0.41, so the rule uses the two signals that hold on every dataset (the localiser's probability inside the mask,
AUROC 0.72-0.88 for failures, and the decoder's IoU) and the registration match as the switch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

__all__ = ["Candidate", "rank", "quality", "components", "clean_mask", "pooled_cosine", "dice"]

#: Sources of candidates: the localiser's components, the warp decoded, the raw warp, and their fusion.
SOURCES = ("head", "warp", "registration", "fusion")


@dataclass
class Candidate:
    """One decoded candidate.

    Attributes:
        source: one of :data:`SOURCES`.
        logits: (S, S) low-res logits in the work frame (foreground > 0).
        iou_pred: the decoder's predicted IoU (NaN for the raw warp).
        box: (4,) XYXY work-frame box that prompted it, or None.
        signals: the scoring signals (filled by the method).
        score: :func:`quality` of the signals.
    """

    source: str
    logits: np.ndarray
    iou_pred: float
    box: np.ndarray | None = None
    signals: dict[str, float] = field(default_factory=dict)
    score: float = float("nan")

    @property
    def mask(self) -> np.ndarray:
        return self.logits > 0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean arrays (1 when both are empty)."""
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


def components(binary: np.ndarray, weight: np.ndarray, limit: int, min_pixels: int = 16) -> list[np.ndarray]:
    """The ``limit`` 8-connected components of ``binary`` with the largest ``weight`` mass, largest first; pieces
    under ``min_pixels`` are dropped."""
    labels, n = ndimage.label(binary, structure=np.ones((3, 3)))
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    mass = ndimage.sum(weight, labels, index)
    size = ndimage.sum(np.ones_like(weight), labels, index)
    order = [j for j in np.argsort(-mass) if size[j] >= min_pixels]
    return [labels == index[j] for j in order[:limit]]


def pooled_cosine(features: torch.Tensor, mask_work: np.ndarray, prototype: torch.Tensor) -> float:
    """Cosine of the (C, h, w) tokens averaged under a (S, S) work-frame mask to the (C,) prototype."""
    grid = F.adaptive_avg_pool2d(torch.as_tensor(mask_work, dtype=torch.float32)[None, None], features.shape[-2:])[0, 0]
    if grid.sum() < 1e-3:
        return 0.0
    pooled = (features.float() * grid).sum(dim=(1, 2)) / grid.sum()
    return float(F.cosine_similarity(pooled, prototype.float(), dim=0))


#: Local NCC of the warped reference to the target above which registration is trusted. Measured on train
#: targets: chest radiographs 0.59-0.73 (10th-90th percentile), endoscopy 0.28-0.36, breast ultrasound 0.23-0.29.
REGISTRATION_MATCH = 0.45
#: Dice above which two candidates are said to agree.
AGREEMENT = 0.8
#: Calibration of ``quality``: P(Dice >= 0.5) = sigmoid(slope * (head_prob + 0.5 iou_pred) + intercept), fit on
#: the chosen candidates of train targets (3 references x 20 targets of each of JSRT, Kvasir-SEG and BUS-BRA).
QUALITY_SLOPE, QUALITY_INTERCEPT = 5.33, -4.71


def rank(found: list[Candidate], warp_match: float) -> list[Candidate]:
    """Order the candidates best first; the first is the prediction.

    The rule, chosen on train targets (README, "One-shot: which localiser wins where"):

    1. the best head candidate is the one with the highest predicted IoU;
    2. where registration means nothing (``warp_match < REGISTRATION_MATCH``: the reference's anatomy does not
       line up with the target's, as in endoscopy or ultrasound), the head wins;
    3. else, if the head and the decoded warp agree (Dice > ``AGREEMENT``), the one with the higher predicted IoU;
    4. else the warp: decoded if the decoder kept the warped shape (Dice(warp, registration) > ``AGREEMENT``),
       otherwise the raw warped mask (thin structures such as clavicles, where the box-trained decoder leaks).

    Candidates not chosen follow in order of :func:`quality`.
    """
    heads = sorted((c for c in found if c.source == "head"), key=lambda c: -c.signals["iou_pred"])
    warp = next((c for c in found if c.source == "warp"), None)
    raw = next((c for c in found if c.source == "registration"), None)
    warp_side = warp if warp is not None and raw is not None and dice(warp.mask, raw.mask) > AGREEMENT else raw
    if heads and (warp_side is None or warp_match < REGISTRATION_MATCH):
        best = heads[0]
    elif heads and warp is not None and dice(heads[0].mask, warp.mask) > AGREEMENT:
        best = heads[0] if heads[0].signals["iou_pred"] >= warp.signals["iou_pred"] else warp
    else:
        best = warp_side if warp_side is not None else (heads[0] if heads else None)
    rest = sorted((c for c in found if c is not best), key=lambda c: -c.score)
    return ([best] if best is not None else []) + rest


def quality(signals: dict[str, float]) -> float:
    """Calibrated P(Dice >= 0.5) of a candidate from its head probability and predicted IoU."""
    z = QUALITY_SLOPE * (signals["head_prob"] + 0.5 * signals["iou_pred"]) + QUALITY_INTERCEPT
    return float(1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))))


def clean_mask(mask: np.ndarray, keep: np.ndarray | None, fill_holes: bool, min_fraction: float = 0.05) -> np.ndarray:
    """Remove speckle: keep the connected components that touch ``keep`` (the selected candidates' masks) or hold
    at least ``min_fraction`` of the largest component's area; fill holes when ``fill_holes``.

    Args:
        mask: HxW bool.
        keep: HxW bool of where the selected candidates are (None: keep by size only).
        fill_holes: fill enclosed background (the reference's masks have no holes).
        min_fraction: size floor relative to the largest component.
    """
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n > 1:
        index = np.arange(1, n + 1)
        size = _label_sizes(labels, n)[1:]  # exact pixel counts (ndimage.sum of ones, without an HxW of ones)
        kept = size >= min_fraction * size.max()
        if keep is not None:
            kept &= ndimage.maximum(keep, labels, index).astype(bool) | (size == size.max())
        lookup = np.zeros(n + 1, bool)  # label -> kept (the background, label 0, never)
        lookup[index[kept]] = True
        mask = np.empty(mask.shape, bool)
        for r0, r1 in _row_blocks(labels):
            np.take(lookup, labels[r0:r1], out=mask[r0:r1])
    return ndimage.binary_fill_holes(mask) if fill_holes else mask


def _row_blocks(array: np.ndarray, block_pixels: int = 1 << 22) -> list[tuple[int, int]]:
    """Row ranges covering ``array`` about ``block_pixels`` at a time (bounds the temporaries of per-pixel work)."""
    h = array.shape[0]
    step = max(1, block_pixels // max(1, array[0].size if h else 1))
    return [(r0, min(h, r0 + step)) for r0 in range(0, h, step)]


def _label_sizes(labels: np.ndarray, n: int) -> np.ndarray:
    """(n + 1,) pixel count of each label 0..n of a label image, counted a row block at a time."""
    counts = np.zeros(n + 1, np.int64)
    for r0, r1 in _row_blocks(labels):
        counts += np.bincount(labels[r0:r1].ravel(), minlength=n + 1)
    return counts
