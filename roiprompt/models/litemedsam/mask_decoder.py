"""SAM's mask decoder: prompt tokens + image embedding -> mask logits at 4x the grid, and a predicted IoU per mask.

Learned output tokens (one IoU token, ``1 + num_multimask_outputs`` mask tokens) are prepended to the prompt
tokens and run through the two-way transformer. The image tokens are upscaled 4x by two transposed convolutions;
each mask token, through its own small MLP ("hypernetwork"), becomes a per-channel weight vector whose dot
product with the upscaled image gives that mask's logits. SAM's convention: mask 0 is the single-mask answer,
masks 1..3 the multimask answers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .tiny_vit import LayerNorm2d
from .transformer import TwoWayTransformer


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (children ``layers.0 .. layers.{n-1}``)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        widths = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder(nn.Module):
    """Predict masks from an image embedding and prompt embeddings.

    Args:
        dim: transformer width (256).
        transformer: the :class:`TwoWayTransformer`.
        num_multimask_outputs: masks returned in multimask mode (3).
        iou_head_depth: layers of the IoU head MLP (3).
        iou_head_hidden_dim: hidden width of the IoU head (256).
    """

    def __init__(self, dim: int, transformer: TwoWayTransformer, num_multimask_outputs: int = 3,
                 iou_head_depth: int = 3, iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        self.transformer = transformer
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(  # (B, dim, h, w) -> (B, dim/8, 4h, 4w)
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3)
                                                       for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor,
                multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            image: (B, dim, h, w) image embedding (one per prompt).
            image_pe: (1, dim, h, w) positional encoding of the grid.
            sparse: (B, T, dim) prompt tokens; dense: (B, dim, h, w) dense prompt embedding.
            multimask: return masks 1..K (K = num_multimask_outputs) instead of mask 0.

        Returns:
            (logits (B, K or 1, 4h, 4w), predicted IoU (B, K or 1)).
        """
        b, c, h, w = image.shape
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight])  # (1 + M, dim)
        tokens = torch.cat([out_tokens[None].expand(b, -1, -1), sparse], dim=1)  # (B, 1 + M + T, dim)
        src = image + dense  # (B, dim, h, w)
        pos = image_pe.expand(b, -1, -1, -1)  # (B, dim, h, w)
        hs, src = self.transformer(src, pos, tokens)  # (B, 1 + M + T, dim), (B, hw, dim)
        iou_out = hs[:, 0]  # (B, dim)
        mask_out = hs[:, 1:1 + self.num_mask_tokens]  # (B, M, dim)

        up = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))  # (B, dim/8, 4h, 4w)
        weights = torch.stack([mlp(mask_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
                              dim=1)  # (B, M, dim/8)
        _, cu, hu, wu = up.shape
        masks = (weights @ up.reshape(b, cu, hu * wu)).view(b, -1, hu, wu)  # (B, M, 4h, 4w)
        iou = self.iou_prediction_head(iou_out)  # (B, M)

        sel = slice(1, None) if multimask else slice(0, 1)
        return masks[:, sel], iou[:, sel]
