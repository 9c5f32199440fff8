"""Trainable heads on frozen encoder tokens: the SegPrompt token transformer (and its VPT-like ablation) and the
pooled linear probe.

Every head takes ``tokens`` (B, C, g, g), the frozen encoder's embedding pooled to a g x g grid, and ``mask``
(B, 1, S, S), the ROI mask in the encoder's S x S input frame ({0, 1}; ignored by heads that do not use it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """Pre-LN transformer block (self-attention + GELU MLP) on fused scaled-dot-product attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class SegPromptHead(nn.Module):
    """SegPrompt-Lite (methods.md §2.2): segmentation tokens interact with frozen image tokens.

    ``[CLS, P prompt tokens, g² image tokens, g² segmentation tokens]`` go through ``depth`` pre-LN transformer
    blocks with full self-attention (image tokens attend to segmentation tokens and back); a linear layer reads
    the class from CLS. Image token i and segmentation token i cover the same patch, so both streams share one
    learnable 2-D position embedding; a 2-way type embedding tells them apart.

    Args:
        in_dim: channels of the frozen tokens (LiteMedSAM: 256).
        grid: side of the token grid g.
        input_size: side S of the input frame the mask lives in; the mask is patch-embedded with an (S/g)-strided
            convolution so each segmentation token sees exactly its patch.
        num_classes: C.
        dim: width d of the head.
        depth: transformer blocks.
        heads: attention heads.
        mlp_ratio: MLP hidden width / d.
        prompts: learnable prompt tokens.
        seg_tokens: False drops the segmentation stream (the VPT-like baseline: prompt tuning only).
        readout: "cls" reads the class from CLS (methods.md §2.2); "cls_roi" from CLS concatenated with the
            mask-weighted mean of the output image tokens (§2.1's SegPrompt-ViT head).
        probe: add a mask-weighted linear probe's logits to the head's (a direct path from the frozen tokens;
            the method fits it first and zeroes the head, so training starts at the probe).
    """

    def __init__(self, in_dim: int, grid: int, input_size: int, num_classes: int, dim: int = 96, depth: int = 2,
                 heads: int = 4, mlp_ratio: float = 2.0, prompts: int = 8, seg_tokens: bool = True,
                 readout: str = "cls", probe: bool = False) -> None:
        super().__init__()
        if readout not in ("cls", "cls_roi"):
            raise ValueError(f"readout must be 'cls' or 'cls_roi', got {readout!r}")
        if readout == "cls_roi" and not seg_tokens:
            raise ValueError("readout 'cls_roi' needs the mask (seg_tokens=True)")
        self.readout = readout
        self.prompts = prompts
        if input_size % grid:
            raise ValueError(f"input size {input_size} is not a multiple of the token grid {grid}")
        self.grid = grid
        self.input_norm = nn.LayerNorm(in_dim)
        self.image_embed = nn.Linear(in_dim, dim)
        patch = input_size // grid
        self.seg_embed = nn.Conv2d(1, dim, kernel_size=patch, stride=patch) if seg_tokens else None
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, dim))
        self.type_embed = nn.Parameter(torch.zeros(2, dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.prompt_tokens = nn.Parameter(torch.zeros(1, prompts, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        width = 2 * dim if readout == "cls_roi" else dim
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)
        self.probe = PooledLinearHead(in_dim, grid, num_classes, pool="mask") if probe else None
        for p in (self.pos_embed, self.type_embed, self.cls_token, self.prompt_tokens):
            nn.init.trunc_normal_(p, std=0.02)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, g, g) tokens and (B, 1, S, S) mask -> (B, num_classes) logits."""
        b = tokens.shape[0]
        x = self.image_embed(self.input_norm(tokens.flatten(2).transpose(1, 2)))  # (B, g², d)
        parts = [self.cls_token.expand(b, -1, -1), self.prompt_tokens.expand(b, -1, -1),
                 x + self.pos_embed + self.type_embed[0]]
        if self.seg_embed is not None:
            if mask is None:
                raise ValueError("SegPromptHead with segmentation tokens needs a mask")
            # {0, 1} -> {-1, +1}: background patches carry signal too, not just zeros (methods.md §2.1)
            s = self.seg_embed(2 * mask - 1).flatten(2).transpose(1, 2)  # (B, g², d)
            parts.append(s + self.pos_embed + self.type_embed[1])
        h = torch.cat(parts, dim=1)
        for block in self.blocks:
            h = block(h)
        out = h[:, 0]
        if self.readout == "cls_roi":
            first = 1 + self.prompts
            image = h[:, first:first + self.grid * self.grid]  # (B, g², d)
            w = mask_weights(mask, self.grid)
            w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))  # empty mask -> plain mean
            out = torch.cat([out, (image * w[..., None]).sum(1) / w.sum(1, keepdim=True)], dim=1)
        logits = self.head(self.norm(out))
        return logits if self.probe is None else logits + self.probe(tokens, mask)


def mask_weights(mask: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, 1, S, S) mask -> (B, g²) fraction of each token's patch inside the mask."""
    return F.adaptive_avg_pool2d(mask, grid).flatten(1)


class PooledLinearHead(nn.Module):
    """Linear probe on pooled frozen tokens: the plain mean, or the mask-weighted mean (``pool="mask"``).

    Features are standardised with the training set's mean and standard deviation (buffers set by
    :meth:`set_statistics`), so one learning rate suits every backbone.
    """

    def __init__(self, in_dim: int, grid: int, num_classes: int, pool: str = "mean") -> None:
        super().__init__()
        if pool not in ("mean", "mask"):
            raise ValueError(f"pool must be 'mean' or 'mask', got {pool!r}")
        self.grid = grid
        self.pool = pool
        self.register_buffer("mu", torch.zeros(in_dim))
        self.register_buffer("sd", torch.ones(in_dim))
        self.head = nn.Linear(in_dim, num_classes)

    def pooled(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, g, g) -> (B, C) pooled features (before standardisation)."""
        flat = tokens.flatten(2)  # (B, C, g²)
        if self.pool == "mean":
            return flat.mean(2)
        if mask is None:
            raise ValueError("the mask-weighted linear probe needs a mask")
        w = mask_weights(mask, tokens.shape[-1])
        # an empty (allowed) mask falls back to the plain mean rather than dividing by zero
        w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))
        return (flat * w[:, None]).sum(2) / w.sum(1, keepdim=True)

    @torch.no_grad()
    def set_statistics(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        f = self.pooled(tokens, mask)
        self.mu.copy_(f.mean(0))
        self.sd.copy_(f.std(0).clamp_min(1e-6) if len(f) > 1 else torch.ones_like(self.sd))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head((self.pooled(tokens, mask) - self.mu) / self.sd)
