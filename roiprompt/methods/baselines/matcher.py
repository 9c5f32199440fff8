"""``matcher_lite``: Matcher's three steps (Liu et al., ICLR 2024) on roiprompt backbones (methods.md §5; our
adaptation, labelled "-lite": no DINOv2 offline, the SAM-family encoder's own 64x64 tokens are the features).

1. **Match.** The reference-mask patches (at most ``max_patches``, evenly strided) are matched one-to-one to target
   patches by the Hungarian algorithm on cosine similarity (forward); the matched target patches are matched back
   to every reference patch (reverse); a match is kept when its reverse match falls inside the reference mask.
2. **Prompt.** The kept target points are clustered (k-means++); ``samples`` point sets of 1 to ``max_points``
   cluster centres are drawn (seeded). A backbone trained with points gets the points; a box-only one (LiteMedSAM)
   gets their padded box instead (our adaptation: points alone give it near-empty masks, and points added to the
   box shrink them; JSRT heart, reference train[0], targets train[1..6], 16 samples: Dice 0.757 with the box
   alone, 0.200 with the points added).
3. **Score and merge.** Each mask is kept if its predicted IoU >= ``iou_filter`` and its stability (IoU of the
   mask at logit +1 and -1) >= ``stability``; scored by the mean of purity (kept points inside / mask patches) and
   coverage (kept points inside / kept points); box-NMS at ``nms``; the union of the top ``merge`` masks whose score
   is within 10 % of the best is the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from ...prompts.transforms import box_from_mask
from ...types import Prediction
from ..base import register_method
from ..config import MethodConfig, check_int, check_number
from ..oneshot import OneShotMethod, Target


@dataclass(frozen=True)
class MatcherConfig(MethodConfig):
    """Settings of :class:`MatcherLite` (Matcher's official defaults where it has them).

    Attributes:
        max_patches: reference-mask patches matched at most (Hungarian cost grows with their number).
        clusters: k-means clusters of the kept target points.
        samples: point sets drawn from the cluster centres.
        max_points: most points in one set.
        box_pad: padding of a point set's box (box-only backbones), fraction of its size per side.
        iou_filter, stability: Matcher's mask filters (0.85, 0.90).
        nms: box-NMS IoU threshold (0.65).
        merge: most masks merged (9).
        seed: seeds the clustering and the sampling.
    """

    max_patches: int = 256
    clusters: int = 8
    samples: int = 64
    max_points: int = 6
    box_pad: float = 0.5
    iou_filter: float = 0.85
    stability: float = 0.90
    nms: float = 0.65
    merge: int = 9
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        for name in ("max_patches", "clusters", "samples", "max_points", "merge"):
            check_int(name, getattr(self, name), 1)
        check_int("seed", self.seed, 0)
        check_number("box_pad", self.box_pad, 0.0)
        for name in ("iou_filter", "stability", "nms"):
            check_number(name, getattr(self, name), 0.0, 1.0)


def matched_points(ref_tokens: torch.Tensor, ref_mask: np.ndarray, target_tokens: torch.Tensor,
                   max_patches: int) -> np.ndarray:
    """Bidirectionally consistent matches: (C, g, g) reference tokens, (g, g) bool reference mask at the token grid,
    (C, g, g) target tokens -> (K, 2) row, col of the kept target patches."""
    g = ref_tokens.shape[-1]
    ref = F.normalize(ref_tokens.flatten(1).T.float(), dim=1)  # (g², C)
    tgt = F.normalize(target_tokens.flatten(1).T.float(), dim=1)
    inside = np.flatnonzero(ref_mask.reshape(-1))
    if len(inside) > max_patches:  # evenly strided, so every part of the mask is represented
        inside = inside[np.linspace(0, len(inside) - 1, max_patches).round().astype(int)]
    forward = (ref[inside] @ tgt.T).numpy()  # (n, g²)
    rows, cols = linear_sum_assignment(-forward)
    reverse = (tgt[cols[np.argsort(rows)]] @ ref.T).numpy()  # matched target patches -> every reference patch
    _, back = linear_sum_assignment(-reverse)
    keep = ref_mask.reshape(-1)[back]
    kept = cols[np.argsort(rows)][keep]
    return np.stack([kept // g, kept % g], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two XYXY boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@register_method(
    "matcher_lite", task="oneshot", family="med_persam", role="baseline", trains=False,
    paper="Matcher (Liu et al., ICLR 2024), -lite adaptation (methods.md §5)",
)
class MatcherLite(OneShotMethod):
    """Training-free one-shot segmentation by bidirectional patch matching, sampled prompts and scored masks."""

    config_class = MatcherConfig

    def matches(self, image: np.ndarray, structure: str | None = None, *, source: str = "image") -> np.ndarray:
        """(K, 2) x, y original pixels of the target patches kept by the bidirectional matching (step 1)."""
        target = self._prepare(image, source)
        scale = self.backbone.input_size / self.work_size
        return target.frame.points_to_original(self._matches(target, self._resolve_structure(structure)) * scale)

    def _matches(self, target: Target, structure: str) -> np.ndarray:
        """(K, 2) work-frame x, y of the kept target patches of every reference, inside the image's content."""
        valid = target.frame.valid_region(self.work_size)
        features = target.embedding.features[0]
        g = features.shape[-1]
        points = []
        for ref in self.references:
            mask = F.adaptive_avg_pool2d(torch.as_tensor(ref.work_masks[structure])[None, None].float(), g)[0, 0]
            if (mask > 0.5).any():
                points.append(matched_points(ref.embedding.features[0], (mask > 0.5).numpy(), features,
                                             self.config.max_patches))
        kept = np.concatenate(points) if points else np.zeros((0, 2), int)
        xy = (kept[:, ::-1] + 0.5) * (self.work_size / g)
        return xy[(xy[:, 0] < valid[1]) & (xy[:, 1] < valid[0])]

    def _segment(self, target: Target, structure: str) -> Prediction:
        from sklearn.cluster import KMeans

        c = self.config
        valid = target.frame.valid_region(self.work_size)
        cell = self.work_size / target.embedding.features.shape[-1]
        xy = self._matches(target, structure)
        if not len(xy):  # nothing matched consistently: the prototype's best point alone
            sim = self.similarity(target, structure)
            y, x = np.unravel_index(np.argmax(sim[: valid[0], : valid[1]]), (valid[0], valid[1]))
            xy = np.array([[x + 0.5, y + 0.5]])
        k = min(c.clusters, len(xy))
        centres = KMeans(k, init="k-means++", n_init=1, random_state=c.seed).fit(xy).cluster_centers_ if k > 1 \
            else xy[:1]
        rng = np.random.default_rng(c.seed)
        sets = [np.arange(len(centres))] + [rng.choice(len(centres), rng.integers(1, min(c.max_points, len(centres))
                                                                                    + 1), replace=False)
                                            for _ in range(c.samples - 1)]
        candidates = []
        inside_pts = np.clip(xy.astype(int), 0, self.work_size - 1)
        for chosen in sets:
            pts = centres[chosen]
            box = None
            if not self.backbone.point_prompts:
                lo, hi = pts.min(0), pts.max(0)
                pad = np.maximum(c.box_pad * (hi - lo), 2 * cell)
                box = np.array([*(lo - pad), *(hi + pad)]).clip(0, [valid[1], valid[0], valid[1], valid[0]])
            if box is None:
                logits, iou = self.decode_low_res(target, points=pts, labels=np.ones(len(pts), int))
            else:  # a box-only backbone: the points' box alone (added points shrink LiteMedSAM's masks)
                logits, iou = self.decode_low_res(target, box=box)
            mask = logits > 0
            if not mask.any():
                continue
            stability = (logits > 1).sum() / max(1, (logits > -1).sum())
            hits = mask[inside_pts[:, 1], inside_pts[:, 0]].sum()
            purity = hits / max(1.0, mask.sum() / cell ** 2)
            coverage = hits / len(inside_pts)
            candidates.append((0.5 * (min(purity, 1.0) + coverage), iou, stability, logits, pts, box))
        good = [x for x in candidates if x[1] >= c.iou_filter and x[2] >= c.stability] or candidates
        if not good:
            logits = np.full((self.work_size, self.work_size), -10.0, np.float32)
            return Prediction(mask=self.to_original(target, logits), scores={"iou_pred": 0.0, "quality": 0.0},
                              extras={"points": None, "low_res_logits": logits})
        good.sort(key=lambda x: -x[0])
        chosen, boxes = [], []
        for cand in good:  # box-NMS, best score first
            b = box_from_mask(cand[3] > 0)
            if all(box_iou(b, o) < c.nms for o in boxes):
                chosen.append(cand)
                boxes.append(b)
        best = chosen[0][0]
        merged = [x for x in chosen[: c.merge] if x[0] >= 0.9 * best]
        logits = np.max(np.stack([x[3] for x in merged]), axis=0)
        scale = self.backbone.input_size / self.work_size
        to_orig = target.frame.points_to_original
        boxes = [x[5] for x in merged if x[5] is not None]
        return Prediction(mask=self.to_original(target, logits),
                          scores={"iou_pred": float(np.mean([x[1] for x in merged])), "quality": float(best)},
                          extras={"points": None if boxes else to_orig(np.concatenate([x[4] for x in merged]) * scale),
                                  "boxes": np.stack([to_orig(b.reshape(2, 2) * scale).reshape(4) for b in boxes])
                                  if boxes else None, "low_res_logits": logits})
