"""The trainable parts of conceptual text prompting (methods.md §4.2-4.4, CoTexNet on LiteMedSAM).

* :class:`PseudoText` (``g_roi``): the ROI image's global feature -> one 384-d pseudo word embedding, written into
  the attribute sentence at a placeholder word-piece and encoded by the frozen text encoder (gradients reach
  ``g_roi`` through it).
* :class:`EmbeddingPredictor` (``g_pred``): the input image's global feature -> ``ŷ = sigmoid(MLP(v))``, the
  student's guess of the text embedding (once sigmoid, not the official code's twice).
* :class:`Conditioning`: self-adding noise. Training ``c = a((1 - alpha) sigmoid(t) + alpha ŷ) + b``, inference
  ``c = a ŷ + b``; ``alpha, a, b`` learnable, init 0.2, 1.0, -0.002 (paper).
* :class:`ConditionedDecoder`: a trainable copy of LiteMedSAM's mask decoder with no geometric prompt; ``c`` ->
  Linear(384 -> 256) gives one extra sparse token and a FiLM (gamma init 1, beta init 0) of the image embedding.
* :func:`distillation_loss`: ``KL(softmax(sigmoid(t) / T).detach() || softmax(ŷ / T))`` over the embedding
  dimension. The spec's temperature is 1; sigmoid outputs lie in (0, 1), so at T = 1 both softmaxes are nearly
  uniform and the KL is ~1e-4 whatever the student does: T = 0.1 (our choice, methods.md §4.4 allows it).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class PseudoText(nn.Module):
    """``g_roi``: Linear(Dv -> h), GELU, Linear(h -> Dtok), LayerNorm (official 768 -> 512 -> 512)."""

    def __init__(self, in_dim: int, token_dim: int, hidden: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, token_dim),
                                 nn.LayerNorm(token_dim))

    def forward(self, roi_global: torch.Tensor) -> torch.Tensor:
        return self.net(roi_global)


class EmbeddingPredictor(nn.Module):
    """``g_pred``: MLP Dv -> Dv -> Dv -> Dt with ReLU, then a sigmoid: the student's text embedding ``ŷ``."""

    def __init__(self, in_dim: int, text_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, in_dim), nn.ReLU(),
                                 nn.Linear(in_dim, text_dim))

    def forward(self, image_global: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(image_global))


class Conditioning(nn.Module):
    """Self-adding-noise conditioning vector ``c`` from the text embedding ``t`` and the student's ``ŷ``."""

    def __init__(self, alpha: float = 0.2, a: float = 1.0, b: float = -0.002) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(alpha))
        self.a = nn.Parameter(torch.tensor(a))
        self.b = nn.Parameter(torch.tensor(b))

    def forward(self, y_hat: torch.Tensor | None, text: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher form with both (training, or oracle text at test time); student form with ``ŷ`` only; text
        only (the fixed-prompt baseline, no student): ``a sigmoid(t) + b``."""
        if text is None:
            return self.a * y_hat + self.b
        if y_hat is None:
            return self.a * torch.sigmoid(text) + self.b
        return self.a * ((1 - self.alpha) * torch.sigmoid(text) + self.alpha * y_hat) + self.b


class ConditionedDecoder(nn.Module):
    """LiteMedSAM's prompt-free mask decoder conditioned on ``c`` by one sparse token and a FiLM.

    Args:
        sam_model: the backbone's ``LiteMedSAMModel`` (its prompt encoder's no-prompt embeddings and dense
            positional encoding are read frozen; its mask decoder is copied so the shared backbone never changes).
        cond_dim: size of ``c`` (384 for MiniLM).
        train_decoder: train the decoder copy (methods.md §4.4 default); False freezes it (the ablation).
    """

    def __init__(self, sam_model: nn.Module, cond_dim: int, train_decoder: bool = True) -> None:
        super().__init__()
        self.__dict__["prompt_encoder"] = sam_model.prompt_encoder  # frozen, shared, not saved with the head
        self.decoder = copy.deepcopy(sam_model.mask_decoder)
        for p in self.decoder.parameters():
            p.requires_grad_(train_decoder)
        dim = self.prompt_encoder.dim
        self.token = nn.Linear(cond_dim, dim)
        self.film = nn.Linear(cond_dim, 2 * dim)
        nn.init.zeros_(self.film.weight)  # gamma = 1, beta = 0: starts as the pretrained decoder + one token
        nn.init.zeros_(self.film.bias)

    def forward(self, embedding: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """(B, 256, 64, 64) image embedding, (B, Dc) condition -> (B, 1, 256, 256) mask logits (model frame)."""
        b = embedding.shape[0]
        gamma, beta = self.film(cond).chunk(2, dim=1)  # (B, 256) each
        image = embedding * (1 + gamma)[..., None, None] + beta[..., None, None]
        with torch.no_grad():
            sparse, dense = self.prompt_encoder(None, None, None, None, batch=b)  # the "no prompt" token
            pe = self.prompt_encoder.dense_pe()
        tokens = torch.cat([sparse, self.token(cond)[:, None]], dim=1)
        logits, _ = self.decoder(image, pe, tokens, dense, False)
        return logits


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Soft Dice + binary cross-entropy (MONAI's DiceCE with sigmoid), over the non-padded pixels."""
    valid = torch.ones_like(target) if valid is None else valid
    prob = torch.sigmoid(logits)
    inter = (prob * target * valid).flatten(1).sum(1)
    denom = ((prob + target) * valid).flatten(1).sum(1)
    dice = 1 - (2 * inter + 1e-5) / (denom + 1e-5)
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=valid, reduction="sum") / valid.sum()
    return dice.mean() + bce


def distillation_loss(text: torch.Tensor, y_hat: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """``KL(softmax(sigmoid(t) / T) || softmax(ŷ / T))`` over the embedding dimension, teacher detached."""
    target = F.softmax(torch.sigmoid(text).detach() / temperature, dim=1)
    return F.kl_div(F.log_softmax(y_hat / temperature, dim=1), target, reduction="batchmean")
