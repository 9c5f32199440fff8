"""CLIP-Adapter (Gao et al. 2021; methods.md §3.3): the baseline MedFocusCLIP is compared against. A small
bottleneck MLP adapts the frozen global image feature, mixed back with a residual ratio, and the classifier is the
cosine similarity to the class-prompt text embeddings.

With an aligned CLIP the classifier weights *are* the class-text embeddings (the paper's form; the text stays
frozen). MiniLM, the offline text encoder, shares no space with any image encoder, so there the text goes through a
learned projection ``W_t`` into the image feature's space (initialised at random; our choice) and the image
feature is standardised with the support set's statistics, as the other classifiers do.

Example:
    >>> clf = roiprompt.load_method("clip_adapter", class_prompts={"benign": "...", "malignant": "..."})
    >>> clf.fit(support).predict(image).scores
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..base import register_method
from ..config import check_int, check_probability
from .base import ClassifierMethod
from .text_prompts import TextPromptConfig, is_aligned, prompt_embeddings


@dataclass(frozen=True)
class AdapterConfig(TextPromptConfig):
    """:class:`TextPromptConfig` plus the adapter's shape (CLIP-Adapter's defaults).

    Attributes:
        ratio: residual ratio ``alpha`` in ``f' = alpha * A(f) + (1 - alpha) * f``.
        reduction: bottleneck width = feature width / ``reduction``.
    """

    epochs: int = 50
    batch_size: int = 32
    weight_decay: float = 1e-4
    ratio: float = 0.2
    reduction: int = 4

    def validate(self) -> None:
        super().validate()
        check_probability("ratio", self.ratio)
        check_int("reduction", self.reduction, 1)


class AdapterHead(nn.Module):
    """``logits = tau * cos(alpha * A(f) + (1 - alpha) * f, W_t t_k)`` over (B, D) global features ``f``.

    Args:
        in_dim: D.
        text: (C, Dt) class-prompt embeddings (frozen).
        ratio: alpha.
        reduction: bottleneck D / reduction.
        aligned: the text is in the image feature's space: no projection, no standardisation, CLIP's fixed scale.
    """

    def __init__(self, in_dim: int, text: torch.Tensor, ratio: float = 0.2, reduction: int = 4,
                 aligned: bool = False) -> None:
        super().__init__()
        hidden = max(1, in_dim // reduction)
        self.ratio = ratio
        self.adapter = nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.ReLU(inplace=True),
                                     nn.Linear(hidden, in_dim, bias=False), nn.ReLU(inplace=True))
        self.register_buffer("text", text)
        self.register_buffer("mu", torch.zeros(in_dim))
        self.register_buffer("sd", torch.ones(in_dim))
        self.text_proj = None if aligned else nn.Linear(text.shape[1], in_dim)
        # CLIP's own temperature (100) with aligned text; learned from 1/0.07 otherwise, as MedFocusCLIP
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)), requires_grad=not aligned)
        if aligned:
            self.logit_scale.data.fill_(math.log(100.0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, C) logits."""
        f = (features - self.mu) / self.sd
        f = self.ratio * self.adapter(f) + (1 - self.ratio) * f
        weights = self.text if self.text_proj is None else self.text_proj(self.text)
        return self.logit_scale.exp() * F.normalize(f, dim=1) @ F.normalize(weights, dim=1).T


@register_method(
    "clip_adapter", task="classification", family="medfocusclip", role="baseline", trains=True,
    paper="CLIP-Adapter (methods.md §3.3)",
)
class ClipAdapter(ClassifierMethod):
    """Baseline: a residual bottleneck adapter on the frozen global image feature, classified by cosine similarity
    to class-prompt text embeddings (no mask)."""

    config_class = AdapterConfig
    uses_mask = False

    def _inputs(self, image: np.ndarray, mask: np.ndarray | None, views: list[int], key: str) -> dict[str, torch.Tensor]:
        return {"features": self.encoder.global_features(image, views, key)}

    def _feature_dim(self, inputs: dict[str, torch.Tensor]) -> int:
        return int(inputs["features"].shape[1])

    def _build(self, num_classes: int, in_dim: int) -> nn.Module:
        c = self.config
        text = prompt_embeddings(self.backbone, c, self.classes)
        aligned = is_aligned(self.backbone) and c.text_encoder != "minilm"
        return AdapterHead(in_dim, text, c.ratio, c.reduction, aligned=aligned)

    def _prepare(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
        if model.text_proj is None:  # aligned CLIP: keep the image feature in the text's space
            return
        f = inputs["features"]
        with torch.no_grad():
            model.mu.copy_(f.mean(0))
            model.sd.copy_(f.std(0).clamp_min(1e-6) if len(f) > 1 else torch.ones_like(model.sd))
