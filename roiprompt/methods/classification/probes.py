"""Linear probes on pooled frozen tokens (methods.md §2.4): ``linear_probe`` (mean of the embedding) and
``linear_probe_masked`` (mask-weighted mean: the ROI chooses which tokens count)."""

from __future__ import annotations

import torch
from torch import nn

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

    def _prepare(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> None:
        model.set_statistics(inputs["tokens"], inputs.get("mask"))


@register_method(
    "linear_probe_masked", task="classification", family="segprompt", role="baseline", trains=True,
    paper="mask-weighted linear probe (methods.md §2.4)",
)
class MaskedLinearProbe(LinearProbe):
    """Baseline: a linear layer on the standardised mask-weighted mean of the frozen tokens."""

    uses_mask = True
    pool = "mask"
