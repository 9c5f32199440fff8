"""Segmentation-guided attention (methods.md §3.1.2): a ROI mask becomes an additive attention bias
``beta * log(eps + m_j)`` on the logits of one query over the image tokens, where ``m_j`` is the fraction of token
``j``'s patch inside the mask. ``eps`` keeps the background damped, not erased; ``beta`` is learned (init 1).

Two forms behind one interface, ``forward(inputs, mask) -> (v_full, v_roi)`` and ``attention(...)`` for the
explanation overlay:

* :class:`GuidedTokenPool` (LiteMedSAM / SAM family). TinyViT has no CLS token, and its attention is windowed
  (stages 2-4 attend inside local windows), so a bias on keys inside the encoder would only re-weight tokens within
  each window and never move the encoder's focus across the image. The guidance therefore acts where attention is
  global: a learnable pooling query over the frozen neck tokens (pooled to 16x16). ``v_full`` is the plain mean
  of the tokens. With the query initialised to 0 the guided pooling starts as the mask-weighted mean
  (``softmax(beta * log(eps + m)) ∝ (eps + m)``) and learns from there.
* :class:`GuidedClsAttention` (CLIP ViT): the bias goes on the CLS query's logits over the patch keys in the last
  ``blocks`` blocks of the frozen encoder (the spec's 4 of 12). Those blocks re-run in every training step from
  cached hidden states (so ``beta`` gets its gradient through them); ``v_full`` is the unguided CLS embedding.

``m ≡ 1`` (``guided=False``) gives the unguided baseline through the same modules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .heads import mask_weights


def guidance_bias(mask: torch.Tensor | None, batch: int, grid: int, beta: torch.Tensor, eps: float,
                  guided: bool = True) -> torch.Tensor:
    """(B, 1, S, S) ROI mask -> (B, grid²) additive bias ``beta * log(eps + m_j)``; ``m ≡ 1`` when not guided
    (or when there is no mask: the unguided baseline never reads one)."""
    if guided and mask is None:
        raise ValueError("guided attention needs the ROI mask")
    m = mask_weights(mask, grid) if guided else torch.ones(batch, grid * grid, device=beta.device)
    return beta * torch.log(eps + m)


class GuidedTokenPool(nn.Module):
    """Attention pooling of frozen tokens by one learnable query, biased toward the ROI.

    Args:
        dim: token channels.
        grid: side of the token grid.
        eps: background floor of the bias.
        guided: False for the unguided baseline (``m ≡ 1``).
    """

    def __init__(self, dim: int, grid: int, eps: float = 0.05, guided: bool = True) -> None:
        super().__init__()
        self.grid, self.eps, self.guided = grid, eps, guided
        self.query = nn.Parameter(torch.zeros(dim))  # 0: the pooling starts as the mask-weighted mean
        self.key_norm = nn.LayerNorm(dim)
        self.beta = nn.Parameter(torch.ones(()))

    def attention(self, tokens: torch.Tensor, mask: torch.Tensor | None, guided: bool | None = None) -> torch.Tensor:
        """(B, C, g, g) tokens, (B, 1, S, S) mask -> (B, g²) attention of the pooling query."""
        guided = self.guided if guided is None else guided
        keys = self.key_norm(tokens.flatten(2).transpose(1, 2))  # (B, g², C)
        logits = keys @ self.query / math.sqrt(keys.shape[-1])
        return F.softmax(logits + guidance_bias(mask, len(tokens), self.grid, self.beta, self.eps, guided), dim=1)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        flat = tokens.flatten(2)  # (B, C, g²)
        v_roi = (flat * self.attention(tokens, mask)[:, None]).sum(2)
        return flat.mean(2), v_roi


class GuidedClsAttention(nn.Module):
    """CLIP's CLS attention biased toward the ROI in the last ``blocks`` blocks of the frozen vision tower.

    Args:
        backbone: a :class:`~roiprompt.models.backbones.clip.ClipBackbone` (kept frozen and outside this
            module's parameters and state, so saving the head never saves CLIP).
        blocks: how many final blocks carry the bias (inputs are the hidden states entering the first of them).
        eps: background floor of the bias.
        guided: False for the unguided baseline (``m ≡ 1``).
    """

    def __init__(self, backbone, blocks: int = 4, eps: float = 0.05, guided: bool = True) -> None:
        super().__init__()
        self.__dict__["backbone"] = backbone  # not a submodule: frozen, shared, never in state_dict
        self.grid, self.eps, self.guided = backbone.grid, eps, guided
        self.start = len(backbone.vision.encoder.layers) - blocks
        self.beta = nn.Parameter(torch.ones(()))

    def _bias(self, mask: torch.Tensor | None, batch: int, guided: bool) -> dict[int, torch.Tensor]:
        bias = self.backbone.cls_attention_bias(guidance_bias(mask, batch, self.grid, self.beta, self.eps, guided))
        return {i: bias for i in range(self.start, len(self.backbone.vision.encoder.layers))}

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            v_full = self.backbone.finish(hidden, self.start).extra["image_embeds"]
        v_roi = self.backbone.finish(hidden, self.start, self._bias(mask, len(hidden), self.guided)).extra["image_embeds"]
        return v_full, v_roi

    @torch.no_grad()
    def attention(self, hidden: torch.Tensor, mask: torch.Tensor | None, guided: bool | None = None) -> torch.Tensor:
        """(B, g²) attention of the CLS query over the patches in the last block (mean over heads, bias included,
        renormalised over the patches)."""
        guided = self.guided if guided is None else guided
        layers = self.backbone.vision.encoder.layers
        bias = self._bias(mask, len(hidden), guided)
        tokens = hidden
        for i in range(self.start, len(layers) - 1):
            tokens = layers[i](tokens, bias[i])
        last = layers[-1]
        x = last.layer_norm1(tokens)
        attn = last.self_attn
        b, t, d = x.shape
        heads = attn.num_heads
        q = attn.q_proj(x[:, :1]).view(b, 1, heads, -1).transpose(1, 2)  # (B, h, 1, dh)
        k = attn.k_proj(x).view(b, t, heads, -1).transpose(1, 2)  # (B, h, T, dh)
        logits = (q @ k.transpose(-1, -2)) * attn.scale + bias[len(layers) - 1][:, :, :1]  # (B, h, 1, T)
        probs = F.softmax(logits, dim=-1).mean(1)[:, 0, 1:]  # (B, g²): CLS row over the patch keys
        return probs / probs.sum(1, keepdim=True)
