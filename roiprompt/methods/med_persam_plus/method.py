"""``med_persam_plus``: one-shot segmentation that finds lesions as well as anatomy.

Med-PerSAM localises by registration, which only works where anatomy corresponds (lungs, heart); a polyp or a
breast lesion can sit anywhere. This method adds a second localiser and lets the evidence choose per target:

1. at :meth:`~roiprompt.methods.oneshot.OneShotMethod.set_reference`, a logistic head (:mod:`.head`) is fit on the
   frozen encoder's tokens of every reference's augmented views (:mod:`.views`), and Med-PerSAM's warping model
   is fit on each reference;
2. per target, candidates (:mod:`.candidates`): the head's probability-map components, each decoded from its
   box; the warped mask decoded (Med-PerSAM's step 0); the raw warped mask (``registration``); and the fusion of
   probability and warp prior;
3. each candidate is scored by a fixed logistic model of dataset-agnostic signals (decoder IoU, prototype
   cosine, head probability, area plausibility, head/warp agreement, registration match); the best wins, other
   head components that score as well join it (several lesions), and the winner's score is the calibrated
   ``quality`` (probability that Dice >= 0.5);
4. speckle is removed (pieces under 5 % of the largest) and holes are filled where the references' masks have
   none.

Predictions depend only on the references and the settings: no unlabeled pool is used unless given explicitly
(``pool=`` at ``set_reference``, recorded in ``setting()``). The ablations switch parts off by config:
``localisers="head"`` / ``"warp"``, ``fusion=False``, ``selection="iou"``, ``merge=False``, ``clean=False``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ...types import Prediction
from ..base import register_method
from ..config import check_int, check_number, check_probability
from ..med_persam.warp_prior import WarpingConfig, _Warping
from ..oneshot import Target
from ..references import Reference
from .candidates import Candidate, clean_mask, components, dice, pooled_cosine, quality, rank
from .head import TokenHead, fit_token_head, token_labels
from .views import iter_reference_views


@dataclass(frozen=True)
class MedPerSAMPlusConfig(WarpingConfig):
    """Settings of :class:`MedPerSAMPlus` (the warping fields are Med-PerSAM's).

    Attributes:
        views: augmented views per reference the head learns from (the original and its mirror included).
        head_l2: L2 weight of the logistic head.
        threshold: probability above which tokens form the head's components.
        max_candidates: head components decoded per target and structure.
        box_pad: padding per side of the head components' boxes, as a fraction of their width/height (0: on
            train targets 0.658 vs 0.642 Dice at 0.05 on Kvasir-SEG, 0.467 vs 0.465 on BUS-BRA; 0.15: 0.546).
        warp_box_pad: the same for the warped mask's box (Med-PerSAM's 0.05).
        localisers: "both", or one of them for the ablation ("head": no warping model is fit; "warp").
        fusion: also propose the top component of probability x blurred warp prior.
        selection: "rule" (:func:`.candidates.rank`) or "iou" (the decoder's predicted IoU alone; ablation).
        merge: add other head components that score at least ``merge_ratio`` of the best (several lesions).
        merge_ratio: see ``merge``.
        clean: remove speckle and fill holes (where the references' masks have none).
    """

    views: int = 8
    head_l2: float = 1e-3
    threshold: float = 0.5
    max_candidates: int = 3
    box_pad: float = 0.0
    warp_box_pad: float = 0.05
    localisers: Literal["both", "head", "warp"] = "both"
    fusion: bool = False
    selection: Literal["rule", "iou"] = "rule"
    merge: bool = False
    merge_ratio: float = 0.9
    clean: bool = True

    def validate(self) -> None:
        super().validate()
        check_int("views", self.views, 1)
        check_number("head_l2", self.head_l2, 0.0)
        check_probability("threshold", self.threshold)
        check_int("max_candidates", self.max_candidates, 1)
        check_number("box_pad", self.box_pad, 0.0)
        check_number("warp_box_pad", self.warp_box_pad, 0.0)
        check_probability("merge_ratio", self.merge_ratio)


@register_method(
    "med_persam_plus", task="oneshot", family="med_persam", role="ours", trains=True,
    paper="roiprompt: Med-PerSAM + a learned token localiser, scored candidates, k references",
)
class MedPerSAMPlus(_Warping):
    """Med-PerSAM plus a learned localiser: finds lesions (anywhere) and anatomy (by registration).

    Example:
        >>> method = roiprompt.load_method("med_persam_plus")
        >>> method.set_reference(ref_image, ref_mask)         # or [(image1, mask1), (image2, mask2)]
        >>> pred = method.predict(image)
        >>> pred.mask, pred.scores["quality"]                 # quality: P(Dice >= 0.5), calibrated
        >>> method.add_reference(fixed_image, fixed_mask)     # a corrected failure becomes a reference
    """

    config_class = MedPerSAMPlusConfig

    @property
    def uses_warp(self) -> bool:
        return self.config.localisers in ("both", "warp")

    @property
    def uses_head(self) -> bool:
        return self.config.localisers in ("both", "head")

    # -- references -----------------------------------------------------------------------------------------
    def _on_reference(self) -> None:
        start = time.perf_counter()
        if self.uses_warp:
            super()._on_reference()
        self.heads: dict[str, TokenHead] = {}
        if self.uses_head:
            self.heads = self._fit_heads()
        refs = self.references
        self.reference_area = {s: float(np.mean([r.masks[s].mean() for r in refs])) for s in self.structures}
        # fill holes only where no reference mask has one (a ring-shaped structure keeps its hole)
        self.fill_holes = {s: all(not (ndimage.binary_fill_holes(r.masks[s]) & ~r.masks[s]).any() for r in refs)
                           for s in self.structures}
        self.fit_seconds = time.perf_counter() - start

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        meta, tensors = super()._fitted_state()
        names = self.structures
        for k, s in enumerate(names):
            if s in self.heads:
                tensors.update({f"head.{k}.weight": self.heads[s].weight, f"head.{k}.bias": self.heads[s].bias})
        meta.update(heads=[s in self.heads for s in names], reference_area=[self.reference_area[s] for s in names],
                    fill_holes=[self.fill_holes[s] for s in names], fit_seconds=self.fit_seconds)
        return meta, tensors

    def _restore_fitted_state(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        # the view tokens are not saved: add_reference re-encodes the saved references' views (deterministic)
        super()._restore_fitted_state(meta, tensors)
        names = self.structures
        self.heads = {s: TokenHead(tensors[f"head.{k}.weight"], tensors[f"head.{k}.bias"])
                      for k, (s, has) in enumerate(zip(names, meta["heads"], strict=True)) if has}
        self.reference_area = {s: float(a) for s, a in zip(names, meta["reference_area"], strict=True)}
        self.fill_holes = {s: bool(f) for s, f in zip(names, meta["fill_holes"], strict=True)}
        self.fit_seconds = meta["fit_seconds"]

    def _fit_heads(self) -> dict[str, TokenHead]:
        cfg = self.config
        known = getattr(self, "_view_tokens", {})
        # each reference's view tokens are gathered once: add_reference encodes only the new reference's views
        self._view_tokens = {r.uid: known.get(r.uid) or self._reference_tokens(r) for r in self.references}
        return {s: fit_token_head([t for r in self.references for t in self._view_tokens[r.uid][s][0]],
                                  [y for r in self.references for y in self._view_tokens[r.uid][s][1]],
                                  l2=cfg.head_l2)
                for s in self.structures}

    def _reference_tokens(self, ref: Reference) -> dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]]:
        """structure -> (per view, the usable (n, C) tokens and their (n,) labels) of one reference."""
        out: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {s: ([], []) for s in self.structures}
        # one view at a time: each is as large as the reference image
        for image, masks in iter_reference_views(ref.image, ref.masks, self.config.views, seed=self.config.seed):
            self.predictor.set_image(image, source=f"{ref.source} (augmented view)")
            frame, features = self.predictor.frame, self.predictor.embedding.features[0].float()
            flat = features.flatten(1).T  # (h*w, C)
            valid = frame.valid_region(features.shape[-1])
            for s in self.structures:
                grid = frame.mask_to_model(masks[s].astype(np.float32), size=features.shape[-1])[0, 0]
                index, y = token_labels(grid, valid)
                out[s][0].append(flat[index])
                out[s][1].append(y)
        return out

    # -- targets --------------------------------------------------------------------------------------------
    def _prepare_target(self, target: Target) -> None:
        if self.uses_warp:
            super()._prepare_target(target)

    def probability(self, target: Target, structure: str) -> np.ndarray:
        """(S, S) head probability of ``structure`` on ``target`` in the work frame (0 on the padding)."""
        features = target.embedding.features[0]
        prob = self.heads[structure].probability(features)[None, None]
        prob = F.interpolate(prob, size=(self.work_size, self.work_size), mode="bilinear", align_corners=False)[0, 0]
        h, w = target.frame.valid_region(self.work_size)
        out = np.zeros((self.work_size, self.work_size), np.float32)
        out[:h, :w] = prob[:h, :w].numpy()
        return out

    def candidates(self, target: Target, structure: str) -> list[Candidate]:
        """Every candidate of ``structure`` on ``target``, decoded and scored (best first)."""
        cfg = self.config
        valid = target.frame.valid_region(self.work_size)
        found: list[Candidate] = []
        prob = self.probability(target, structure) if self.uses_head else None
        if prob is not None:
            for comp in components(prob > cfg.threshold, prob, cfg.max_candidates):
                box = self.work_box(comp.astype(np.float32), cfg.box_pad, valid)
                found.append(Candidate("head", *self.decode_low_res(target, box=box), box=box))
        warped = None
        if self.uses_warp:
            warped = self.warped_work(target, structure)
            if (warped > 0.5).any():
                box = self.work_box(warped, cfg.warp_box_pad, valid)
                dense = np.clip(20.0 * (warped - 0.5), -10.0, 10.0)
                found.append(Candidate("warp", *self.decode_low_res(target, box=box, mask_logits=dense), box=box))
                found.append(Candidate("registration", np.clip(20.0 * (warped - 0.5), -10.0, 10.0), float("nan")))
            if prob is not None and cfg.fusion:
                prior = ndimage.gaussian_filter(warped, 8.0)
                fused = prob * prior / max(float(prior.max()), 1e-6)
                if comps := components(fused > cfg.threshold / 2, fused, 1):
                    box = self.work_box(comps[0].astype(np.float32), cfg.box_pad, valid)
                    found.append(Candidate("fusion", *self.decode_low_res(target, box=box), box=box))
        self._score(target, structure, found, prob)
        if self.config.selection == "iou":
            return sorted(found, key=lambda c: -c.signals["iou_pred"])
        return rank(found, float(target.state.get("warp_match", 0.0)))

    def _score(self, target: Target, structure: str, found: list[Candidate], prob: np.ndarray | None) -> None:
        features = target.embedding.features[0]
        prototype = self.prototype(structure)
        by_source = {c.source: c for c in found if c.source in ("warp", "registration")}
        area0 = self.reference_area[structure]
        h, w = target.frame.valid_region(self.work_size)
        match = float(target.state.get("warp_match", 0.0))
        warp_iou = by_source["warp"].iou_pred if "warp" in by_source else 0.0
        for c in found:
            mask = c.mask
            area = mask[:h, :w].mean() if h and w else 0.0
            c.signals = {
                "iou_pred": warp_iou if np.isnan(c.iou_pred) else c.iou_pred,  # the raw warp: its decoded twin's
                "cosine": pooled_cosine(features, mask, prototype),
                "head_prob": float(prob[mask].mean()) if prob is not None and mask.any() else 0.0,
                "area": abs(float(np.log(max(area, 1e-5) / max(area0, 1e-5)))),
                "agree_warp": dice(mask, by_source["warp"].mask) if "warp" in by_source else 0.0,
                "agree_registration": dice(mask, by_source["registration"].mask) if "registration" in by_source
                else 0.0,
                "warp_match": match,
            }
            c.score = quality(c.signals)

    def _segment(self, target: Target, structure: str) -> Prediction:
        cfg = self.config
        ranked = self.candidates(target, structure)
        if not ranked:  # nothing anywhere: an empty mask with zero quality, never an exception mid-batch
            empty = np.zeros(target.frame.orig_hw, bool)
            return Prediction(mask=empty, scores={"quality": 0.0, "iou_pred": 0.0}, extras={"boxes": None,
                                                                                            "source": "none"})
        best = ranked[0]
        chosen = [best]
        if cfg.merge and best.source == "head":  # other lesions: head components that score as well
            chosen += [c for c in ranked[1:] if c.source == "head" and c.score >= cfg.merge_ratio * best.score
                       and dice(c.mask, best.mask) < 0.1]
        logits = np.max(np.stack([c.logits for c in chosen]), axis=0)
        mask = self.to_original(target, logits)
        if cfg.clean:  # the mask is the chosen candidates' union: drop specks by size, fill holes
            mask = clean_mask(mask, None, self.fill_holes[structure])
        runner_up = ranked[1].score if len(ranked) > 1 else 0.0
        scale = self.backbone.input_size / self.work_size
        boxes = [target.frame.points_to_original(c.box.reshape(2, 2) * scale).reshape(4) for c in chosen
                 if c.box is not None]
        scores = {"quality": best.score, "iou_pred": best.signals["iou_pred"], "margin": best.score - runner_up,
                  **best.signals}
        return Prediction(mask=mask, scores=scores,
                          extras={"boxes": np.stack(boxes) if boxes else None, "source": best.source,
                                  "candidates": [(c.source, round(c.score, 4)) for c in ranked],
                                  "low_res_logits": logits})

    def setting(self) -> dict[str, Any]:
        return {**super().setting(), "selection_rule": "v1"}
