"""``persam`` and ``persam_f``: the PerSAM baselines (Zhang et al., ICLR 2024) on roiprompt backbones.

PerSAM localises the target with the reference *prototype* (mean embedding under the reference mask): the
arg-max of its cosine similarity on the target becomes a positive point, the arg-min a negative point; then two
cascaded refinements (the previous logits as a dense prompt, then also the box of the previous mask).
PerSAM-F keeps only the positive point, asks for SAM's three masks and mixes their logits with two weights fit
on the reference image itself (the third weight is one minus their sum), then refines the same way.

Simplifications forced by the ``Backbone.decode`` interface (shared by LiteMedSAM, SAM, MedSAM and SAM 2):
PerSAM's *target-guided attention* (the similarity map added to the decoder's token-to-image attention) and
*target-semantic prompting* (the prototype added to the decoder's prompt tokens) need hooks inside the mask
decoder, which the interface does not expose; both are left out. LiteMedSAM was trained with box prompts, so
its first, point-only step is weak (near-empty masks); the box step of the cascade is what recovers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...prompts.points import persam_points
from ...types import Prediction
from ..base import register_method
from ..config import MethodConfig, check_int, check_number
from ..oneshot import OneShotMethod, Target


@dataclass(frozen=True)
class PerSAMConfig(MethodConfig):
    """Settings of :class:`PerSAM`.

    Attributes:
        refine: run the two cascaded refinements (logits, then logits + box).
    """

    refine: bool = True


@dataclass(frozen=True)
class PerSAMFConfig(PerSAMConfig):
    """Settings of :class:`PerSAMF`: PerSAM's plus the fit of the two mask-scale weights (PerSAM-F's values).

    Attributes:
        iterations: AdamW steps (cosine schedule).
        lr: AdamW learning rate.
        eps: AdamW epsilon.
    """

    iterations: int = 1000
    lr: float = 1e-3
    eps: float = 1e-4

    def validate(self) -> None:
        super().validate()
        check_int("iterations", self.iterations, 0)  # 0: the mix stays at 1/3 each
        check_number("lr", self.lr, 0.0, low_open=True)
        check_number("eps", self.eps, 0.0, low_open=True)


def _cascade(method: OneShotMethod, target: Target, points: np.ndarray, labels: np.ndarray,
             first: tuple[np.ndarray, float, np.ndarray]) -> tuple[np.ndarray, float, np.ndarray, np.ndarray | None]:
    """PerSAM's cascaded post-refinement from a first (mask, iou, low-res logits): returns (mask, iou, logits, box)."""
    mask, iou, logits = first
    mask, iou, logits = method.decode(target, points, labels, mask_logits=logits, multimask=True).best()
    valid = target.frame.valid_region(method.work_size)
    box = None
    if (logits > 0)[: valid[0], : valid[1]].any():
        box = method.work_box((logits > 0).astype(np.float32), 0.0, valid)
        mask, iou, logits = method.decode(target, points, labels, box, logits, multimask=True).best()
    return mask, iou, logits, box


def _prediction(method: OneShotMethod, target: Target, mask: np.ndarray, iou: float, logits: np.ndarray,
                points: np.ndarray, labels: np.ndarray, box: np.ndarray | None) -> Prediction:
    scale = method.backbone.input_size / method.work_size
    to_orig = target.frame.points_to_original
    return Prediction(mask=mask, scores={"iou_pred": iou, "quality": iou},
                      extras={"points": to_orig(points * scale), "point_labels": labels,
                              "boxes": None if box is None else to_orig(box.reshape(2, 2) * scale).reshape(1, 4),
                              "low_res_logits": logits})


@register_method(
    "persam", task="oneshot", family="med_persam", role="baseline", trains=False,
    paper="PerSAM (Zhang et al., ICLR 2024)",
)
class PerSAM(OneShotMethod):
    """Training-free PerSAM: prototype arg-max/arg-min points, then cascaded refinement.

    Example:
        >>> method = roiprompt.load_method("persam").set_reference(ref_image, ref_mask)
        >>> pred = method.predict(image)
    """

    config_class = PerSAMConfig

    def _segment(self, target: Target, structure: str) -> Prediction:
        valid = target.frame.valid_region(self.work_size)
        points, labels = persam_points(self.similarity(target, structure), valid)
        mask, iou, logits = self.decode(target, points, labels, multimask=False).best()
        box = None
        if self.config.refine:
            mask, iou, logits, box = _cascade(self, target, points, labels, (mask, iou, logits))
        return _prediction(self, target, mask, iou, logits, points, labels, box)


@register_method(
    "persam_f", task="oneshot", family="med_persam", role="baseline", trains=True,
    paper="PerSAM-F (Zhang et al., ICLR 2024)",
)
class PerSAMF(OneShotMethod):
    """PerSAM-F: the positive point only, SAM's 3 masks mixed by 2 weights fit on the reference, then refinement.

    The weights are fit per structure at :meth:`set_reference` on the decoder's low-res logits of the reference
    itself (Dice + focal loss, as PerSAM-F), which costs one decoder call and ~1 s of AdamW steps.
    """

    config_class = PerSAMFConfig

    def _on_reference(self) -> None:
        # fit on each reference, then average: with k references the mix reflects all of them
        weights: dict[str, list[torch.Tensor]] = {s: [] for s in self.structures}
        for ref in self.references:
            embedding = ref.embedding
            target = Target(f"reference {ref.uid}", ref.image, ref.frame, ref.source, lambda e=embedding: e, embedding)
            valid = ref.frame.valid_region(self.work_size)
            for s in self.structures:
                points, labels = persam_points(self.similarity(target, s), valid)
                out = self.decode(target, points[:1], labels[:1], multimask=True)
                logits = torch.as_tensor(out.low_res_logits)  # (3, S, S)
                weights[s].append(_fit_mix_weights(logits, torch.as_tensor(ref.work_masks[s] > 0.5).float(),
                                                   self.config))
        self.mix_weights = {s: torch.stack(w).mean(0) for s, w in weights.items()}

    def _fitted_state(self) -> tuple[dict, dict]:
        meta, tensors = super()._fitted_state()
        tensors.update({f"mix.{k}": self.mix_weights[s] for k, s in enumerate(self.structures)})
        return meta, tensors

    def _restore_fitted_state(self, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
        super()._restore_fitted_state(meta, tensors)
        self.mix_weights = {s: tensors[f"mix.{k}"] for k, s in enumerate(self.structures)}

    def _segment(self, target: Target, structure: str) -> Prediction:
        valid = target.frame.valid_region(self.work_size)
        points, labels = persam_points(self.similarity(target, structure), valid)
        points, labels = points[:1], labels[:1]  # PerSAM-F drops the negative point
        out = self.decode(target, points, labels, multimask=True)
        w = self.mix_weights[structure].view(-1, 1, 1).numpy()
        low = (out.low_res_logits * w).sum(axis=0)  # (S, S)
        full = (out.logits * w).sum(axis=0)  # (H, W)
        mask, iou, logits, box = full > 0, float((out.iou * w[:, 0, 0]).sum()), low, None
        if self.config.refine:
            mask, iou, logits, box = _cascade(self, target, points, labels, (mask, iou, low))
        return _prediction(self, target, mask, iou, logits, points, labels, box)


def _fit_mix_weights(logits: torch.Tensor, target: torch.Tensor, config: PerSAMFConfig) -> torch.Tensor:
    """Two learnable weights w1, w2 (w3 = 1 - w1 - w2, init 1/3 each) minimising Dice + focal loss of
    ``sigmoid(sum_k w_k logits_k)`` against the reference mask. Returns the (3,) weights."""
    with torch.inference_mode(False), torch.enable_grad():
        logits, target = logits.clone().float(), target.clone()
        w = torch.full((2,), 1.0 / 3.0, requires_grad=True)
        optimizer = torch.optim.AdamW([w], lr=config.lr, eps=config.eps)
        steps = max(config.iterations, 1)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
        for _ in range(config.iterations):
            weights = torch.cat([w, 1 - w.sum(dim=0, keepdim=True)])
            mixed = (logits * weights.view(-1, 1, 1)).sum(dim=0)
            prob = torch.sigmoid(mixed)
            dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
            ce = F.binary_cross_entropy_with_logits(mixed, target, reduction="none")
            p_t = prob * target + (1 - prob) * (1 - target)
            focal = ((0.25 * target + 0.75 * (1 - target)) * (1 - p_t) ** 2 * ce).mean()
            loss = dice + focal
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        return torch.cat([w, 1 - w.sum(dim=0, keepdim=True)]).detach()
