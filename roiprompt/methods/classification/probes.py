"""Linear probes on pooled frozen tokens (methods.md §2.4): ``linear_probe`` (mean of the embedding),
``linear_probe_masked`` (mask-weighted mean: the ROI chooses which tokens count) and ``linear_probe_crop`` (mean of
the tokens of the crop around the ROI: the ROI chooses what the encoder sees)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...models.cache import image_key
from ...prompts.transforms import box_from_mask

from ..base import register_method
from .base import ClassifierMethod
from .heads import PooledLinearHead


@register_method(
    "linear_probe", task="classification", family="segprompt", role="baseline", trains=True,
    paper="linear probe (methods.md §2.4)",
)
class LinearProbe(ClassifierMethod):
    """Baseline: a linear layer on the standardised mean of the frozen tokens (no mask)."""

    uses_mask = False
    pool = "mean"

    def _build(self, num_classes: int, in_dim: int) -> nn.Module:
        return PooledLinearHead(in_dim, self.encoder.token_grid, num_classes, pool=self.pool)

    def _prepare(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
        model.set_statistics(inputs["tokens"], inputs.get("mask"))


@register_method(
    "linear_probe_masked", task="classification", family="segprompt", role="baseline", trains=True,
    paper="mask-weighted linear probe (methods.md §2.4)",
)
class MaskedLinearProbe(LinearProbe):
    """Baseline: a linear layer on the standardised mask-weighted mean of the frozen tokens."""

    uses_mask = True
    pool = "mask"


@register_method(
    "linear_probe_crop", task="classification", family="segprompt", role="baseline", trains=True,
    paper="ROI-crop linear probe (issue 23)",
)
class CropLinearProbe(LinearProbe):
    """Baseline: a linear layer on the standardised mean of the frozen tokens of the **crop around the ROI** (its
    box padded by :attr:`pad` of its size per side): the ROI chooses what the encoder sees, not which tokens count.
    """

    uses_mask = True
    pool = "mean"
    #: Context kept around the ROI's box, as a fraction of its width / height per side.
    pad = 0.25

    def _inputs(self, image: np.ndarray, mask: np.ndarray | None, views: list[int], key: str) -> dict[str, torch.Tensor]:
        if mask is None or not mask.any():  # an allowed empty ROI: the whole image
            crop = image
        else:
            x0, y0, x1, y1 = np.round(box_from_mask(mask, self.pad)).astype(int)
            crop = np.ascontiguousarray(image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)])
        return {"tokens": self.encoder.tokens(crop, views, image_key(crop))}

    def _prepare(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
        model.set_statistics(inputs["tokens"])
