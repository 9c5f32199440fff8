"""``self_prompt``: the self-prompting one-shot baseline (issue 23; after "Self-prompting large vision models for
few-shot medical image segmentation", Wu et al., 2023).

Per structure, a logistic 1x1 head learns, from the reference's own encoder tokens, which tokens lie inside its
mask (soft labels: the fraction of each token's patch inside the mask; class-balanced; L-BFGS on the
standardised tokens of every reference). On a target the head's probability map, thresholded at 0.5, gives its
largest connected component, whose padded box goes to the frozen decoder. Nothing else: no warping, no points,
no refinement; it is the simplest learned prompt generator, the floor a learned localiser must beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...prompts.transforms import component_boxes
from ...types import Prediction
from ..base import register_method
from ..config import MethodConfig, check_int, check_number
from ..oneshot import OneShotMethod, Target


@dataclass(frozen=True)
class SelfPromptConfig(MethodConfig):
    """Settings of :class:`SelfPrompt`.

    Attributes:
        weight_decay: L2 penalty of the logistic head.
        iterations: L-BFGS iterations of the head's fit.
        threshold: probability above which a token is inside.
        box_pad: padding of the component's box, as a fraction of its size per side.
    """

    weight_decay: float = 1e-3
    iterations: int = 100
    threshold: float = 0.5
    box_pad: float = 0.05

    def validate(self) -> None:
        super().validate()
        check_number("weight_decay", self.weight_decay, 0.0)
        check_int("iterations", self.iterations, 1)
        check_number("threshold", self.threshold, 0.0, 1.0, low_open=True, high_open=True)
        check_number("box_pad", self.box_pad, 0.0)


def fit_token_head(tokens: torch.Tensor, inside: torch.Tensor, weight_decay: float, iterations: int
                   ) -> dict[str, torch.Tensor]:
    """Logistic head on tokens: (N, C) tokens and (N,) soft labels in [0, 1] -> {"weight" (C,), "bias" (1,),
    "mean" (C,), "std" (C,)} (the head reads standardised tokens); positives and negatives weigh the same."""
    mean, std = tokens.mean(0), tokens.std(0).clamp_min(1e-6)
    x = (tokens - mean) / std
    positive = inside.sum().clamp_min(1e-6)
    weights = torch.where(inside > 0, 0.5 / positive, 0.5 / (len(inside) - positive).clamp_min(1e-6))
    weight = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (F.binary_cross_entropy_with_logits(x @ weight + bias, inside, reduction="none") * weights).sum()
        loss = loss + weight_decay * weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return {"weight": weight.detach(), "bias": bias.detach(), "mean": mean, "std": std}


@register_method(
    "self_prompt", task="oneshot", family="med_persam", role="baseline", trains=True,
    paper="self-prompting head (Wu et al., 2023; issue 23)",
)
class SelfPrompt(OneShotMethod):
    """A logistic head on the reference's encoder tokens draws the box prompt on the target.

    Example:
        >>> method = roiprompt.load_method("self_prompt").set_reference(ref_image, ref_mask)
        >>> method.predict(image).extras["boxes"]          # the box the head drew, original pixels
    """

    config_class = SelfPromptConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heads: dict[str, dict[str, torch.Tensor]] = {}

    def _on_reference(self) -> None:
        c = self.config
        self.heads = {}
        for structure in self.structures:
            tokens, inside = [], []
            for ref in self.references:
                features = ref.embedding.features[0].float()  # (C, g, g)
                grid = features.shape[-1]
                mask = torch.as_tensor(ref.work_masks[structure], dtype=torch.float32)[None, None]
                inside.append(F.adaptive_avg_pool2d(mask, grid).flatten())  # fraction of each token's patch
                tokens.append(features.flatten(1).T)
            with torch.random.fork_rng():
                torch.manual_seed(0)
                self.heads[structure] = fit_token_head(torch.cat(tokens), torch.cat(inside), c.weight_decay,
                                                       c.iterations)

    def probability(self, target: Target, structure: str) -> np.ndarray:
        """(S, S) probability that each work-frame pixel is inside ``structure`` (the head's map, upsampled)."""
        head = self.heads[structure]
        features = target.embedding.features[0].float()
        x = (features.flatten(1).T - head["mean"]) / head["std"]
        logits = (x @ head["weight"] + head["bias"]).reshape(1, 1, *features.shape[-2:])
        up = F.interpolate(logits, size=(self.work_size, self.work_size), mode="bilinear", align_corners=False)
        return torch.sigmoid(up)[0, 0].numpy()

    def _segment(self, target: Target, structure: str) -> Prediction:
        c = self.config
        valid = target.frame.valid_region(self.work_size)
        prob = np.zeros((self.work_size, self.work_size), np.float32)
        prob[: valid[0], : valid[1]] = self.probability(target, structure)[: valid[0], : valid[1]]
        inside = prob > c.threshold
        if not inside.any():  # nothing confident: the component around the most likely pixel, at half its value
            inside = prob > prob.max() / 2
        box = component_boxes(inside, c.box_pad)[0]  # the largest component's padded box
        box = np.minimum(box, [valid[1], valid[0], valid[1], valid[0]])  # within the image's content
        logits, iou = self.decode_low_res(target, box=box)
        scale = self.backbone.input_size / self.work_size
        boxes = target.frame.points_to_original(box.reshape(2, 2) * scale).reshape(1, 4)
        # the head's map stays out of extras: at a radiograph's 2048² it would be 16 MB per prediction, and
        # probability() gives it on demand
        return Prediction(mask=self.to_original(target, logits), scores={"iou_pred": iou, "quality": iou},
                          extras={"boxes": boxes, "low_res_logits": logits})

    # -- saving: the heads are saved, not refit ------------------------------------------------------------------
    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        meta, tensors = super()._fitted_state()
        tensors.update({f"head.{s}.{k}": v for s, head in self.heads.items() for k, v in head.items()})
        return meta, tensors

    def _restore_fitted_state(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        super()._restore_fitted_state(meta, tensors)
        self.heads = {s: {k: tensors[f"head.{s}.{k}"] for k in ("weight", "bias", "mean", "std")}
                      for s in self.structures}
