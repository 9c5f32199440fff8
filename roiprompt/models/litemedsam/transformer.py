"""SAM's two-way transformer: prompt tokens and image tokens attend to each other, in both directions.

Each block runs four steps on the sparse tokens (queries) and the flattened image embedding (keys):
(1) token self-attention, (2) tokens -> image cross-attention, (3) token MLP, (4) image -> tokens cross-attention;
a final tokens -> image attention closes the stack. Positional encodings are added to queries and keys at every
attention (except the very first self-attention, whose tokens are their own encoding). Cross-attentions project
to half the width (``downsample_rate`` 2) to save compute on the 4096 image tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v projections to ``dim / downsample_rate`` and back to ``dim``."""

    def __init__(self, dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        inner = dim // downsample_rate
        if inner % num_heads:
            raise InputError(f"attention width {inner} (= {dim} / {downsample_rate}) is not divisible by "
                             f"{num_heads} heads")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)  # (B, h, N, c/h)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(self._heads(self.q_proj(q)), self._heads(self.k_proj(k)),
                                             self._heads(self.v_proj(v)))  # (B, h, Nq, c/h)
        b, _, nq, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, -1))  # (B, Nq, dim)


class MLPBlock(nn.Module):
    """Two linear layers with a ReLU between (the token MLP of each block)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.relu(self.lin1(x)))


class TwoWayAttentionBlock(nn.Module):
    """One block of the two-way transformer (post-norm residuals, SAM's order and names)."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, downsample_rate: int, first: bool) -> None:
        super().__init__()
        self.first = first  # the first block's self-attention sees the raw tokens, without positional encoding
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, downsample_rate)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, downsample_rate)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
                key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # (1) token self-attention; the first block replaces the tokens instead of adding a residual
        if self.first:
            queries = self.self_attn(queries, queries, queries)  # (B, T, C)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        # (2) tokens attend to the image
        q, k = queries + query_pe, keys + key_pe  # (B, T, C), (B, HW, C)
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        # (3) token MLP
        queries = self.norm3(queries + self.mlp(queries))
        # (4) the image attends to the tokens
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))  # (B, HW, C)
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Stack of :class:`TwoWayAttentionBlock` plus a final tokens -> image attention.

    Args:
        depth: number of blocks (2 in SAM and LiteMedSAM).
        dim: token width (256).
        num_heads: attention heads (8).
        mlp_dim: hidden width of the token MLP (2048).
        downsample_rate: width reduction inside cross-attentions (2).
    """

    def __init__(self, depth: int, dim: int, num_heads: int, mlp_dim: int, downsample_rate: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TwoWayAttentionBlock(dim, num_heads, mlp_dim, downsample_rate, first=i == 0)
                                    for i in range(depth))
        self.final_attn_token_to_image = Attention(dim, num_heads, downsample_rate)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor,
                tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: image (B, C, h, w), image_pe (B, C, h, w), tokens (B, T, C).
        Returns: (tokens (B, T, C), image tokens (B, h*w, C))."""
        keys = image.flatten(2).transpose(1, 2)  # (B, HW, C)
        key_pe = image_pe.flatten(2).transpose(1, 2)  # (B, HW, C)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        q, k = queries + tokens, keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))  # (B, T, C)
        return queries, keys
