"""SAM's prompt encoder: points and boxes -> sparse tokens, a low-res mask -> a dense embedding.

Coordinates are pixels (x, y) of the square model frame (``input_size``, 256 for LiteMedSAM); they are shifted
to pixel centres (+0.5), normalised to [0, 1] and encoded with random Fourier features (a fixed Gaussian matrix
stored in the checkpoint). A learned embedding is added per role: background point, foreground point, box
top-left, box bottom-right; a "not a point" embedding replaces the encoding of padding tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .tiny_vit import LayerNorm2d

NOT_A_POINT = -1  # label of padding tokens


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier positional encoding: (x, y) in [0, 1] -> [sin(2 pi f), cos(2 pi f)], f = (2p - 1) @ G."""

    def __init__(self, num_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))  # (2, D/2)

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 2) (x, y) in [0, 1] -> (..., D)."""
        proj = 2 * math.pi * ((2 * coords - 1) @ self.positional_encoding_gaussian_matrix)  # (..., D/2)
        return torch.cat([proj.sin(), proj.cos()], dim=-1)

    def grid(self, h: int, w: int) -> torch.Tensor:
        """Encoding of the centres of an h x w grid -> (D, h, w)."""
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # (h, w) each
        return self.encode(torch.stack([xx, yy], dim=-1)).permute(2, 0, 1)  # (D, h, w)

    def pixels(self, coords: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, N, 2) (x, y) pixels of a (H, W) frame -> (B, N, D)."""
        h, w = size
        scale = torch.tensor([1.0 / w, 1.0 / h], dtype=torch.float32, device=coords.device)
        return self.encode(coords.float() * scale)


class PromptEncoder(nn.Module):
    """Encode SAM prompts.

    Args:
        dim: token width (256).
        embedding_hw: (h, w) of the image embedding grid (64, 64).
        input_hw: (H, W) of the model frame the coordinates live in (256, 256).
        mask_in_chans: hidden channels of the mask downscaler (16); the mask input is 4x the embedding grid.
    """

    def __init__(self, dim: int, embedding_hw: tuple[int, int], input_hw: tuple[int, int],
                 mask_in_chans: int = 16) -> None:
        super().__init__()
        self.dim = dim
        self.embedding_hw = tuple(embedding_hw)
        self.input_hw = tuple(input_hw)
        self.mask_input_hw = (4 * embedding_hw[0], 4 * embedding_hw[1])
        self.pe_layer = PositionEmbeddingRandom(dim // 2)
        # 0: background point, 1: foreground point, 2: box top-left, 3: box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, dim)
        self.mask_downscaling = nn.Sequential(  # (B, 1, 4h, 4w) -> (B, dim, h, w)
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, dim)

    def dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid -> (1, dim, h, w)."""
        return self.pe_layer.grid(*self.embedding_hw)[None]

    def embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """(B, N, 2) pixels + (B, N) labels {1, 0, -1} -> (B, N (+1), dim); ``pad`` appends a not-a-point token."""
        points = points.float() + 0.5  # pixel centres
        labels = labels.long()
        if pad:
            b = points.shape[0]
            points = torch.cat([points, points.new_zeros(b, 1, 2)], dim=1)  # (B, N+1, 2)
            labels = torch.cat([labels, labels.new_full((b, 1), NOT_A_POINT)], dim=1)  # (B, N+1)
        pe = self.pe_layer.pixels(points, self.input_hw)  # (B, N, dim)
        lab = labels[..., None]  # (B, N, 1)
        out = torch.where(lab == NOT_A_POINT, self.not_a_point_embed.weight, pe)
        out = out + torch.where(lab == 0, self.point_embeddings[0].weight, 0.0)
        return out + torch.where(lab == 1, self.point_embeddings[1].weight, 0.0)  # (B, N, dim)

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """(B, 4) XYXY pixels -> (B, 2, dim) corner tokens."""
        corners = boxes.float().reshape(-1, 2, 2) + 0.5  # (B, 2, 2)
        pe = self.pe_layer.pixels(corners, self.input_hw)  # (B, 2, dim)
        roles = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])  # (2, dim)
        return pe + roles

    def forward(self, points: torch.Tensor | None, labels: torch.Tensor | None, boxes: torch.Tensor | None,
                masks: torch.Tensor | None, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse tokens and dense embedding for a batch of prompts.

        Args:
            points: (B, N, 2) pixels or None; labels: (B, N) or None (then all foreground).
            boxes: (B, 4) XYXY pixels or None.
            masks: (B, 1, 4h, 4w) logits or None.
            batch: B (used when every prompt is None).

        Returns:
            sparse (B, T, dim): point tokens, then box corners; without a box one not-a-point token closes the
            points. With no point and no box at all, that not-a-point token is the only one (as in SAM's ONNX
            export), so the decoder always sees a prompt token.
            dense (B, dim, h, w): the encoded mask, or the learned no-mask embedding.
        """
        device = self.no_mask_embed.weight.device
        if points is None:
            points = torch.zeros(batch, 0, 2, device=device)
            labels = torch.zeros(batch, 0, dtype=torch.long, device=device)
        elif labels is None:
            labels = torch.ones(points.shape[:2], dtype=torch.long, device=points.device)
        parts = [self.embed_points(points, labels, pad=boxes is None)]  # (B, N (+1), dim)
        if boxes is not None:
            parts.append(self.embed_boxes(boxes))  # (B, 2, dim)
        sparse = torch.cat(parts, dim=1)  # (B, T, dim)
        if masks is not None:
            dense = self.mask_downscaling(masks.float())  # (B, dim, h, w)
        else:
            dense = self.no_mask_embed.weight.view(1, -1, 1, 1).expand(batch, -1, *self.embedding_hw)
        return sparse, dense
