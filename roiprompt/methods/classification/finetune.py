"""Encoder-in-the-loop baselines (methods.md §2.4): ``finetune`` (the whole image encoder + a linear head, the slow
ceiling) and ``mask_channel`` (the same, with the ROI mask as an extra input channel).

Both train a copy of the backbone's image encoder, so the shared frozen backbone is never touched. BatchNorm
layers keep their pretrained statistics (batches of a few-shot fit are too small to re-estimate them). The mask
channel is a zero-initialised 1x1 convolution of the mask added to the output of the encoder's first
convolution: the same as concatenating the mask as a 4th input channel of that (linear) layer with zero weights,
so training starts exactly from ``finetune``.

CPU cost: a TinyViT training step at 256x256 takes ~3 s per image on 2 cores (0.8 s at 128x128), so the
spec's recipe (≥ 300 steps of 16) is hours per fit. ``input_size`` and ``max_steps`` bound the cost; benchmarks
record both.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..base import register_method
from ..config import check_int, check_number
from .base import ClassifierConfig, ClassifierMethod


@dataclass(frozen=True)
class FinetuneConfig(ClassifierConfig):
    """:class:`ClassifierConfig` plus fine-tuning settings.

    Attributes:
        encoder_lr: learning rate of the encoder's weights (the head uses ``lr``); lower than the head's so a
            few images do not wash out the pretrained features (our choice).
        input_size: train and predict at this input side (None: the backbone's), for a CPU budget.
    """

    encoder_lr: float = 1e-4
    input_size: int | None = None

    def validate(self) -> None:
        super().validate()
        check_number("encoder_lr", self.encoder_lr, 0.0)
        check_int("input_size", self.input_size, 1, optional=True)


def _pooled(out: Any) -> torch.Tensor:
    """Encoder output -> (B, C): mean over the spatial grid or the token sequence."""
    out = out if isinstance(out, torch.Tensor) else out.last_hidden_state
    return out.mean(dim=(2, 3)) if out.ndim == 4 else out.mean(dim=1)


class EncoderClassifier(nn.Module):
    """A trainable image encoder, mean-pooled, layer-normed, then linear; optionally with a mask channel."""

    def __init__(self, encoder: nn.Module, in_dim: int, num_classes: int, encoder_lr: float,
                 mask_channel: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.encoder_lr = encoder_lr
        self.norm = nn.LayerNorm(in_dim)
        self.head = nn.Linear(in_dim, num_classes)
        self.mask_embed = None
        self._mask: torch.Tensor | None = None
        if mask_channel:
            first = next(m for m in encoder.modules() if isinstance(m, nn.Conv2d))
            self.mask_embed = nn.Conv2d(1, first.out_channels, 1, bias=False)
            nn.init.zeros_(self.mask_embed.weight)
            first.register_forward_hook(self._add_mask)

    def _add_mask(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        mask = F.interpolate(self._mask, size=output.shape[-2:], mode="area")
        return output + self.mask_embed(mask)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        head = [p for n, p in self.named_parameters() if not n.startswith("encoder.")]
        return [{"params": list(self.encoder.parameters()), "lr": self.encoder_lr}, {"params": head, "lr": lr}]

    def train(self, mode: bool = True) -> "EncoderClassifier":
        super().train(mode)
        for m in self.encoder.modules():  # keep the pretrained BatchNorm statistics
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, pixels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.mask_embed is not None:
            if mask is None:
                raise ValueError("mask_channel needs a mask")
            self._mask = mask
        try:
            return self.head(self.norm(_pooled(self.encoder(pixels))))
        finally:
            self._mask = None


@register_method(
    "finetune", task="classification", family="segprompt", role="baseline", trains=True,
    paper="full fine-tuning (methods.md §2.4)",
)
class Finetune(ClassifierMethod):
    """Baseline: fine-tune the whole image encoder and a linear head (no mask)."""

    config_class = FinetuneConfig
    uses_mask = False
    mask_channel = False

    @property
    def _size(self) -> int:
        return self.config.input_size or self.backbone.input_size

    def _inputs(self, image: np.ndarray, mask: np.ndarray | None, views: list[int], key: str) -> dict[str, torch.Tensor]:
        pixels, masks = [], []
        for v in views:
            p, m = self.encoder.pixels(image, mask, v, key)
            if self._size != p.shape[-1]:
                p = F.interpolate(p, size=self._size, mode="bilinear", align_corners=False, antialias=True)
                m = None if m is None else (F.interpolate(m, size=self._size, mode="bilinear") > 0.5).float()
            pixels.append(p)
            masks.append(m)
        out = {"pixels": torch.cat(pixels)}
        if self.uses_mask:
            out["mask"] = torch.cat(masks)
        return out

    def _trainable_encoder(self) -> nn.Module:
        encoder = copy.deepcopy(self.backbone.image_encoder_module).to(memory_format=torch.contiguous_format)
        for p in encoder.parameters():
            p.requires_grad_(True)
        return encoder

    def _feature_dim(self, inputs: dict[str, torch.Tensor]) -> int:
        with torch.no_grad():
            return int(_pooled(self.backbone.image_encoder_module(inputs["pixels"][:1])).shape[1])

    def _build(self, num_classes: int, in_dim: int) -> nn.Module:
        return EncoderClassifier(self._trainable_encoder(), in_dim, num_classes, self.config.encoder_lr,
                                 mask_channel=self.mask_channel)


@register_method(
    "mask_channel", task="classification", family="segprompt", role="baseline", trains=True,
    paper="fine-tuning with the mask as an input channel (methods.md §2.4)",
)
class MaskChannel(Finetune):
    """Baseline: fine-tune the encoder with the ROI mask as an extra input channel."""

    uses_mask = True
    mask_channel = True
