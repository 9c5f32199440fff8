"""SegPrompt-ViT (methods.md §2.1), the faithful form: segmentation tokens and prompt tokens *inside* the blocks of
a frozen plain ViT (a CLIP vision tower from a local checkpoint).

Each frozen block ``l`` processes ``[CLS, P_l, X_l, S_l]`` with full self-attention, so image tokens attend to
segmentation tokens and back:

* ``X_0``: the frozen patch + position embedding (the cached hidden states entering block 0);
* ``S_0 = Conv(p x p, stride p)(2m - 1) + the same patch position embedding`` (learnable conv; {0, 1} -> {-1, +1});
* ``P_l``: 8 learnable prompt tokens per block, replaced at every block (VPT-deep);
* after each block ``S_{l+1} <- S_{l+1} + gamma_l * S_0`` (``gamma_l`` learnable, init 0) re-grounds the mask;
* head: LayerNorm + Linear over ``[CLS ; mask-weighted mean of X_L]``.

Without segmentation tokens the same module is VPT-deep on the ViT (the ``vpt`` baseline). Trainable on ViT-B/16:
0.2 M (conv) + 74 k (prompts) + the head, ≈ 0.3 % of the 86 M encoder. Every training step runs the whole frozen
encoder forward and backward (≈ 2x a ViT-B forward for 401 tokens), so on a CPU use it with a GPU or a tiny K.
"""

from __future__ import annotations

import torch
from torch import nn

from .heads import mask_weights


class SegPromptViTHead(nn.Module):
    """Segmentation and prompt tokens through the frozen blocks of a CLIP vision tower.

    Args:
        backbone: a :class:`~roiprompt.models.backbones.clip.ClipBackbone` (frozen, shared, never saved here).
        num_classes: C.
        prompts: prompt tokens per block.
        seg_tokens: False drops the segmentation stream (VPT-deep).
    """

    def __init__(self, backbone, num_classes: int, prompts: int = 8, seg_tokens: bool = True) -> None:
        super().__init__()
        self.__dict__["backbone"] = backbone  # not a submodule: frozen, shared, never in state_dict
        vision = backbone.vision
        dim = vision.config.hidden_size
        patch = vision.config.patch_size
        blocks = len(vision.encoder.layers)
        self.grid, self.prompts = backbone.grid, prompts
        self.seg_embed = nn.Conv2d(1, dim, kernel_size=patch, stride=patch) if seg_tokens else None
        self.gamma = nn.Parameter(torch.zeros(blocks - 1)) if seg_tokens else None  # none after the last
        self.prompt_tokens = nn.Parameter(torch.zeros(blocks, prompts, dim))
        nn.init.trunc_normal_(self.prompt_tokens, std=0.02)
        width = 2 * dim if seg_tokens else dim
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def segmentation_tokens(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) {0, 1} mask -> (B, g², D) ``S_0``: patch-embedded, plus the frozen patch positions, through
        the frozen pre-norm the image tokens went through."""
        vision = self.backbone.vision
        s = self.seg_embed(2 * mask - 1).flatten(2).transpose(1, 2)  # (B, g², D)
        positions = vision.embeddings.position_embedding.weight[1:]  # (g², D): the patches', not CLS's
        return vision.pre_layrnorm(s + positions)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1 + g², D) hidden states entering block 0 and (B, 1, S, S) mask -> (B, num_classes) logits."""
        b = hidden.shape[0]
        layers = self.backbone.vision.encoder.layers
        n_patch = self.grid * self.grid
        cls, x = hidden[:, :1], hidden[:, 1:]
        s0 = s = None
        if self.seg_embed is not None:
            if mask is None:
                raise ValueError("SegPrompt-ViT with segmentation tokens needs a mask")
            s0 = s = self.segmentation_tokens(mask)
        for i, layer in enumerate(layers):
            parts = [cls, self.prompt_tokens[i].expand(b, -1, -1), x] + ([s] if s is not None else [])
            h = layer(torch.cat(parts, dim=1), None)
            cls, x = h[:, :1], h[:, 1 + self.prompts:1 + self.prompts + n_patch]
            if s is not None and i < len(layers) - 1:
                s = h[:, 1 + self.prompts + n_patch:] + self.gamma[i] * s0
        out = self.backbone.vision.post_layernorm(cls[:, 0])
        if self.seg_embed is not None:
            w = mask_weights(mask, self.grid)
            w = torch.where(w.sum(1, keepdim=True) > 0, w, torch.ones_like(w))  # empty mask -> plain mean
            roi = (x * w[..., None]).sum(1) / w.sum(1, keepdim=True)
            out = torch.cat([out, self.backbone.vision.post_layernorm(roi)], dim=1)
        return self.head(self.norm(out))
