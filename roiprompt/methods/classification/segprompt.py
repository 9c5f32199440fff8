"""SegPrompt (methods.md §2): segmentation maps as prompt tokens for few-parameter tuning of a frozen encoder, and
its prompt-tuning-only ablation ``vpt``. On a plain ViT (a CLIP checkpoint) the tokens go inside the frozen blocks
(SegPrompt-ViT, :mod:`.segprompt_vit`); on any other encoder they go beside its cached tokens (SegPrompt-Lite).

The frozen encoder (LiteMedSAM's TinyViT by default) runs once per augmented view and its embedding is cached as
a 16x16 token grid; only the segmentation embedding, the prompt/CLS tokens, the 2-block token transformer and the
linear head train (≈ 0.22 M parameters, 3.9 % of the 5.73 M encoder).

Example:
    >>> clf = roiprompt.load_method("segprompt", num_classes=2, cache_dir="~/.cache/roiprompt")
    >>> clf.fit(support)                                     # Samples with labels and ROI masks
    >>> clf.predict(image, mask=lesion_mask).label           # "malignant"
    >>> clf.parameter_report()["ratio_to_finetune"]          # ~0.04
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from ...models.backbones.clip import ClipBackbone

from ..base import register_method
from ..config import ConfigError, check_int, check_number
from .base import ClassifierConfig, ClassifierMethod, train_classifier
from .heads import SegPromptHead
from .segprompt_vit import SegPromptViTHead


@dataclass(frozen=True)
class SegPromptConfig(ClassifierConfig):
    """:class:`ClassifierConfig` plus the head's shape (methods.md §2.2).

    Attributes:
        dim: width of the token transformer.
        depth: transformer blocks.
        heads: attention heads.
        mlp_ratio: MLP hidden width / dim.
        prompts: learnable prompt tokens.
        readout: "cls" (methods.md §2.2) or "cls_roi" (CLS + mask-weighted mean of the output image tokens).
        probe_init: start from the mask-weighted linear probe: fit it first, add its logits to the head's and
            zero the head's last layer, then train both (issue 23's attempt to beat the probe).
    """

    dim: int = 96
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 2.0
    prompts: int = 8
    # "cls_roi", not §2.2's "cls" (our choice). BUS-BRA validation split (valid_1 = 0, 299 images), K = 16,
    # seeds 0-2, a development run (not a committed benchmark): balanced accuracy 0.667 -> 0.696, AUROC
    # 0.710 -> 0.764. On a toy task where only the mask's position decides the class, CLS alone never left chance in 150 steps; "cls_roi" reached 100 %.
    readout: Literal["cls", "cls_roi"] = "cls_roi"
    probe_init: bool = False

    def validate(self) -> None:
        super().validate()
        check_int("dim", self.dim, 1)
        check_int("depth", self.depth, 1)
        check_int("heads", self.heads, 1)
        if self.dim % self.heads:
            raise ConfigError("heads", self.heads, f"a divisor of dim={self.dim}")
        check_number("mlp_ratio", self.mlp_ratio, 0.0, low_open=True)
        check_int("prompts", self.prompts, 0)


@register_method(
    "segprompt", task="classification", family="segprompt", role="paper", trains=True,
    paper="SegPrompt (SegPrompt-Lite, methods.md §2.2)",
)
class SegPrompt(ClassifierMethod):
    """Few-shot classification with the ROI mask as segmentation tokens next to frozen image tokens: inside the
    blocks of a plain ViT (CLIP; SegPrompt-ViT, methods.md §2.1), else beside the cached tokens of any encoder
    (SegPrompt-Lite, §2.2; LiteMedSAM's windowed TinyViT has no global blocks to put them in)."""

    config_class = SegPromptConfig
    uses_mask = True

    @property
    def vit_form(self) -> bool:
        """True when the tokens go inside the frozen ViT's blocks (a CLIP backbone)."""
        return isinstance(self.backbone, ClipBackbone)

    def _check_setup(self) -> None:
        if self.vit_form and self.config.probe_init:
            raise ConfigError("probe_init", True, "False with a ViT backbone (SegPrompt-ViT has no probe path)",
                              owner=self.name)

    def _inputs(self, image: np.ndarray, mask: np.ndarray | None, views: list[int], key: str) -> dict[str, torch.Tensor]:
        if not self.vit_form:
            return super()._inputs(image, mask, views, key)
        out = {"hidden": self.encoder.hidden(image, views, 0, key)}  # patch + position embedding, cached
        if self.uses_mask:
            out["mask"] = torch.cat([self.encoder.mask(image, mask, v, key) for v in views])
        return out

    def _feature_dim(self, inputs: dict[str, torch.Tensor]) -> int:
        return int(inputs["hidden"].shape[-1]) if self.vit_form else super()._feature_dim(inputs)

    def _build(self, num_classes: int, in_dim: int) -> nn.Module:
        c = self.config
        if self.vit_form:
            return SegPromptViTHead(self.backbone, num_classes, prompts=c.prompts, seg_tokens=self.uses_mask)
        return SegPromptHead(in_dim, self.encoder.token_grid, self.backbone.input_size, num_classes, dim=c.dim,
                             depth=c.depth, heads=c.heads, mlp_ratio=c.mlp_ratio, prompts=c.prompts,
                             seg_tokens=self.uses_mask, readout=self.config.readout if self.uses_mask else "cls",
                             probe=c.probe_init and self.uses_mask)

    def _prepare(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
        if getattr(model, "probe", None) is None:
            return
        model.probe.set_statistics(inputs["tokens"], inputs["mask"])
        probe_inputs = {"tokens": inputs["tokens"], "mask": inputs["mask"]}
        # the probe's own schedule (the linear_probe_masked defaults), then the head starts from exactly it
        train_classifier(model.probe, probe_inputs, labels, ClassifierConfig(seed=self.config.seed),
                         n_images=len(labels) // max(1, self.config.views))
        nn.init.zeros_(model.head.weight)
        nn.init.zeros_(model.head.bias)
        model.train()


@register_method(
    "vpt", task="classification", family="segprompt", role="baseline", trains=True,
    paper="VPT-like prompts without segmentation tokens (methods.md §2.4)",
)
class PromptTuning(SegPrompt):
    """Baseline: the SegPrompt head without segmentation tokens (VPT-like prompt tuning; the mask is unused)."""

    uses_mask = False
