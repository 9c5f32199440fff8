"""``med_persam`` and ``registration``: one-shot segmentation through a warping model (methods.md §1).

At :meth:`~roiprompt.methods.oneshot.OneShotMethod.set_reference` a small flow U-Net is fit on the reference
(synthetic affine/elastic pairs, plus real pairs from an unlabeled pool when one is given). For each target:

1. the network's flow, refined on this pair by instance optimisation (:func:`.warping.refine_flow`, our
   addition), maps the reference masks onto the target (one flow serves every structure);
2. step 0 prompts the frozen SAM-family decoder with the warped mask (as dense logits), its padded box and the
   prototype points of :func:`~roiprompt.prompts.points.select_points` (positive/negative per quadrant);
3. ``refine_rounds`` more rounds feed back the last logits and rebuild the points from the last mask; they stop
   early once two successive masks agree (Dice > 0.98);
4. :meth:`MedPerSAM.predict_many` (a pool of targets) can retrain the flow on the confident refined masks and
   segment the pool again (``retrain_rounds``).

Where LiteMedSAM (the offline default) forces a departure, the defaults follow measurements on JSRT (each
config field documents its figure): no point prompts and single-mask output (it was trained with boxes; points
hurt), the box is not rebuilt during refinement (it drifts), T = 0 and R = 0: feeding LiteMedSAM its own
logits back lowered Dice (16 JSRT targets, reference of seed 1: left lung 0.81 at T = 0, 0.70 at T = 1; seed 0:
0.936 at T = 0, 0.934 at T = 3; R = 1 on top: 0.929, at twice the time per target). SAM / MedSAM /
SAM 2 checkpoints get the paper's points and multimask output through the same code ("auto").

``registration`` is the ladder's first rung: the warped reference mask alone, no SAM.
The ablation ladder (mask prompt / box / points / refinement / retraining) is switched by config fields.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch

from ... import metrics
from ...errors import InputError
from ...prompts.points import persam_points, select_points
from ...types import Prediction
from ..base import register_method
from ..config import ConfigError, check_int, check_number, check_probability
from ..oneshot import Target, sigmoid
from .warp_prior import WarpingConfig, _Warping, grey_square, square_masks
from .warping import fit_warping


@dataclass(frozen=True)
class MedPerSAMConfig(WarpingConfig):
    """Settings of :class:`MedPerSAM` (defaults = methods.md §1.3; the ablation ladder switches them off).

    Attributes:
        mask_prompt: step 0 passes the warped mask as dense logits ``clip(20 (M_w - 0.5), -10, 10)``.
        box: pass the padded box of the mask estimate.
        points: "subregion" (Med-PerSAM's spread-out points), "persam" (one arg-max/arg-min pair), "none", or
            "auto": "subregion" when the backbone was trained with point prompts, else "none" (LiteMedSAM).
        box_pad: box padding per side, as a fraction of its width/height.
        refine_rounds: extra decoder rounds after step 0 (T; 0 by default: the spec's 3 lowered Dice with
            LiteMedSAM, see the module docstring); each feeds back the last logits and rebuilds the points from
            the last mask.
        refine_box: also rebuild the box from the last mask each round. Off by default: with LiteMedSAM the box
            dominates, and a box grown from a leaking mask lets the next mask leak further (on 8 JSRT targets
            T = 3 with box updates dropped left-lung Dice from 0.91 to 0.51; with the step-0 box kept, 0.92).
        refine_prior: weight of the warped mask in the estimate fed back at each refinement round (0: SAM's own
            logits, as in the paper).
        refine_stop_dice: stop refining when two successive masks agree more than this.
        multimask: ask for SAM's 3 masks and keep the best predicted IoU (False: the single-mask output).
            "auto": True when the backbone takes point prompts (SAM's own choice for ambiguous points), else
            False (LiteMedSAM's multimask outputs are poor: left-lung Dice 0.77 vs 0.91 single on 8 targets).
        retrain_rounds: R, outer rounds of warp retraining in :meth:`MedPerSAM.predict_many` (0 by default:
            the spec's R = 1 doubled the time per target for no gain on JSRT once the flow is instance-refined).
        retrain_iterations: Adam steps per retraining round.
        retrain_min_iou: a refined target joins the retraining if every structure's predicted IoU reaches this...
        retrain_area_range: ...and its area (as a fraction of the image) is within this factor range of the
            reference's.
    """

    mask_prompt: bool = True
    box: bool = True
    points: Literal["auto", "subregion", "persam", "none"] = "auto"
    box_pad: float = 0.05
    refine_rounds: int = 0
    refine_box: bool = False
    refine_prior: float = 0.0
    refine_stop_dice: float = 0.98
    multimask: bool | Literal["auto"] = "auto"
    retrain_rounds: int = 0
    retrain_iterations: int = 100
    retrain_min_iou: float = 0.85
    retrain_area_range: tuple[float, float] = (0.25, 4.0)

    def validate(self) -> None:
        super().validate()
        if not self.mask_prompt and not self.box and self.points == "none":
            raise ConfigError("mask_prompt, box, points", (self.mask_prompt, self.box, self.points),
                              "at least one prompt: mask_prompt=True, box=True or points other than 'none'")
        check_number("box_pad", self.box_pad, 0.0)
        check_int("refine_rounds", self.refine_rounds, 0)
        check_probability("refine_prior", self.refine_prior)
        check_probability("refine_stop_dice", self.refine_stop_dice)
        check_int("retrain_rounds", self.retrain_rounds, 0)
        check_int("retrain_iterations", self.retrain_iterations, 0)
        check_number("retrain_min_iou", self.retrain_min_iou)
        area = self.retrain_area_range
        if not (len(area) == 2 and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in area)
                and 0 < area[0] <= area[1]):
            raise ConfigError("retrain_area_range", area, "(low, high) with 0 < low <= high")


@register_method(
    "registration", task="oneshot", family="med_persam", role="baseline", trains=True,
    paper="Med-PerSAM ablation (a): registration only",
)
class Registration(_Warping):
    """The warped reference mask alone, thresholded at 0.5 (no SAM): rung (a) of the ablation ladder."""

    config_class = WarpingConfig

    def _segment(self, target: Target, structure: str) -> Prediction:
        _, mask = self.warped_mask(target, structure)
        return Prediction(mask=mask, scores={}, extras={"warped_mask": mask})


@register_method(
    "med_persam", task="oneshot", family="med_persam", role="paper", trains=True,
    paper="Med-PerSAM",
)
class MedPerSAM(_Warping):
    """Med-PerSAM: warped-mask, box and prototype-point prompts to a frozen SAM-family model, refined.

    Example:
        >>> method = roiprompt.load_method("med_persam")
        >>> method.set_reference(ref_image, ref_mask)          # fits the warping model (~30 s on 2 cores)
        >>> pred = method.predict(image)
        >>> pred.mask, pred.scores["iou_pred"], pred.scores["warp_agreement"]
    """

    config_class = MedPerSAMConfig

    def _segment(self, target: Target, structure: str) -> Prediction:
        cfg = self.config
        warped_work, warped_orig = self.warped_mask(target, structure)
        valid = target.frame.valid_region(self.work_size)
        points_mode, multimask = self.prompt_modes()
        sim = self.similarity(target, structure) if points_mode != "none" else None
        estimate, logits = warped_work, None
        mask = prev = None
        iou, rounds, points, labels, box = float("nan"), 0, None, None, None
        for step in range(1 + cfg.refine_rounds):
            inside = (estimate > 0.5)[: valid[0], : valid[1]].any()
            if not inside and step > 0:
                break  # SAM erased the structure: keep the last non-empty answer
            points, labels = self._points(points_mode, sim, estimate, valid, inside)
            if step == 0 or cfg.refine_box:
                box = self.work_box(estimate, cfg.box_pad, valid) if cfg.box and inside else None
            if step == 0:
                dense = np.clip(20.0 * (warped_work - 0.5), -10.0, 10.0) if cfg.mask_prompt else None
            elif cfg.refine_prior > 0:  # the fed-back estimate stays anchored to the warped prior
                dense = np.clip(20.0 * (estimate - 0.5), -10.0, 10.0)
            else:
                dense = logits
            if points is None and box is None and dense is None:  # box-only config, empty warped mask
                raise InputError(f"{self.name}: nothing to prompt {target.source} with: the warped reference mask "
                                 f"of {structure!r} is empty and only its box is enabled (mask_prompt=False)")
            mask, iou, logits = self.decode(target, points, labels, box, dense, multimask).best()
            rounds = step + 1
            if prev is not None and metrics.dice(mask, prev) > cfg.refine_stop_dice:
                break
            prev, estimate = mask, (1 - cfg.refine_prior) * sigmoid(logits) + cfg.refine_prior * warped_work
        scale = self.backbone.input_size / self.work_size
        to_orig = target.frame.points_to_original
        return Prediction(
            mask=mask,
            scores={"iou_pred": iou, "quality": iou, "warp_agreement": metrics.dice(mask, warped_orig)},
            extras={"points": None if points is None else to_orig(points * scale), "point_labels": labels,
                    "boxes": None if box is None else to_orig(box.reshape(2, 2) * scale).reshape(1, 4),
                    "warped_mask": warped_orig, "rounds": rounds, "low_res_logits": logits})

    def _check_setup(self) -> None:
        # "auto" points resolve to "none" on a backbone not trained with points (LiteMedSAM): refuse now what
        # would otherwise fail at the first target
        if not self.config.mask_prompt and not self.config.box and self.prompt_modes()[0] == "none":
            raise ConfigError("mask_prompt, box, points", (False, False, self.config.points),
                              f"at least one prompt; points='auto' means 'none' on {self.backbone.name!r} (no point "
                              "prompts), so set mask_prompt=True, box=True or points='subregion'/'persam'",
                              owner=self.name)

    def prompt_modes(self) -> tuple[str, bool]:
        """The point scheme and multimask flag actually used, with "auto" resolved for this backbone."""
        takes_points = self.backbone.point_prompts
        points = self.config.points if self.config.points != "auto" else ("subregion" if takes_points else "none")
        multimask = self.config.multimask if self.config.multimask != "auto" else takes_points
        return points, bool(multimask)

    @staticmethod
    def _points(mode: str, sim: np.ndarray | None, estimate: np.ndarray, valid: tuple[int, int],
                inside: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        if sim is None:
            return None, None
        if mode == "persam" or not inside:  # an empty estimate has no candidate regions
            return persam_points(sim, valid)
        return select_points(sim, estimate, valid)

    def predict_many(self, images: Sequence[np.ndarray], sources: Sequence[str] | None = None,
                     progress: Callable[[int, int], None] | None = None) -> list[dict[str, Prediction]]:
        """Segment a pool of targets, then retrain the warping model on the confident refined masks and segment
        the pool again (``retrain_rounds`` times; methods.md §1.3 step 8).

        The retrained model stays set (the method has adapted to this pool). Progress counts both passes.
        Embeddings are cached on disk (a temporary folder without ``cache_dir``) so the second pass never
        re-encodes.
        """
        cfg = self.config
        rounds = cfg.retrain_rounds
        total = len(images) * (1 + rounds)
        step = [0]

        def tick(done: int, n: int) -> None:
            if progress:
                progress(step[0] + done, total)

        saved = self.predictor.cache
        scratch = self._scratch_cache()
        try:
            preds = super().predict_many(images, sources, tick)
            for r in range(rounds):
                step[0] += len(images)
                pairs = [pair for image, p in zip(images, preds) if (pair := self._retrain_pair(image, p))]
                self.retrain_pairs = len(pairs)
                if not pairs:
                    break  # nothing trustworthy to learn from: keep the first pass
                for state in self.warp_states:  # every reference's model learns from the confident masks
                    start = time.perf_counter()
                    state.model = fit_warping(state.grey, state.masks_small, targets=self._pool,
                                              iterations=cfg.retrain_iterations, batch=max(cfg.warp_batch, 2),
                                              lr=cfg.warp_lr, seed=cfg.seed + 1 + r, extra_pairs=pairs,
                                              smoothness_weight=cfg.smoothness_weight, init=state.model)
                    self.fit_seconds += time.perf_counter() - start
                self._target = None  # flows changed
                preds = super().predict_many(images, sources, tick)
        finally:
            self.predictor.cache = saved
            if scratch is not None:
                scratch.cleanup()
        return preds

    def _retrain_pair(self, image: np.ndarray, pred: dict[str, Prediction]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(grey target, (K, w, w) masks) for the retraining, or None when no structure is confident.

        A structure is confident when its predicted IoU reaches ``retrain_min_iou`` and its area (fraction of the
        image) is within ``retrain_area_range`` of the reference's. The others keep their current warped mask, so
        they add no new evidence but still tie the flow to what it already does for them.
        """
        cfg, size = self.config, self.config.warp_size
        lo, hi = cfg.retrain_area_range
        masks, confident = [], False
        fraction = np.mean([w.fraction for w in self.warp_states], axis=0)
        for k, s in enumerate(self.structures):
            p = pred[s]
            ratio = p.mask.mean() / max(fraction[k], 1e-9)
            if p.scores.get("iou_pred", 0.0) >= cfg.retrain_min_iou and lo <= ratio <= hi:
                masks.append(p.mask)
                confident = True
            else:
                masks.append(p.extras["warped_mask"])
        return (grey_square(image, size), square_masks(masks, size)) if confident else None

    def setting(self) -> dict[str, Any]:
        points, multimask = self.prompt_modes()
        return {**super().setting(), "retrain_area_range": list(self.config.retrain_area_range),
                "points_used": points, "multimask_used": multimask}
