"""CLIP (image and text towers) from the user's Hugging Face-format folder, behind the :class:`Backbone` interface.

``transformers.CLIPModel`` loads ``openai/clip-vit-base-patch16``-style folders offline; the text tower also
needs the tokenizer files (``tokenizer.json``, or ``vocab.json`` + ``merges.txt``) in the same folder.

Preprocessing (``resize=``):

* ``"pad"`` (default): longest side resized to ``image_size`` and zero-padded after normalising, through the same
  :class:`~roiprompt.prompts.transforms.Frame` as the SAM family, so the whole ROI stays in view and a mask maps
  onto the patch grid with ``Frame.mask_to_model(mask, size=grid)``.
* ``"center_crop"``: CLIP's own recipe (shortest side resized, bicubic, then a centre crop); parts of the image
  and of its mask fall outside the crop.

Pixels are normalised with CLIP's mean/std on [0, 1] (from the folder's ``preprocessor_config.json`` when present).

Attention-bias hook: ``encode_image(pixels, attention_bias={layer: bias})`` adds ``bias`` (B or 1, 1 or heads, T, T),
``T = 1 + grid**2``, to the attention logits of those blocks (negative indices count from the end).
:meth:`ClipBackbone.cls_attention_bias` builds the bias that touches only the CLS query's logits over the patch
keys, e.g. MedFocusCLIP's ``beta * log(eps + m)`` in the last 4 blocks::

    bias = ClipBackbone.cls_attention_bias(beta * torch.log(eps + m))   # m: (B, g, g) mask on the patch grid
    emb = clip.encode_image(pixels, attention_bias={i: bias for i in (-4, -3, -2, -1)})

The bias is differentiable, so ``beta`` (or the mask) can be learned through it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import CheckpointError, InputError
from ...prompts.transforms import Frame
from .base import Backbone, ImageEmbedding, register_backbone
from .base import image_to_tensor
from .sam import check_pixels, load_hf_folder

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP, on [0, 1] pixels
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
Resize = Literal["pad", "center_crop"]


class ClipBackbone(Backbone):
    """A transformers ``CLIPModel`` as a :class:`Backbone` with image and text towers.

    Args:
        model: a ``transformers.CLIPModel``.
        tokenizer: a CLIP tokenizer, or None (then :meth:`encode_text` raises; :meth:`encode_token_ids` works).
        resize: ``"pad"`` or ``"center_crop"`` (module docstring).
        mean, std: per-channel normalisation on [0, 1] pixels.
        weights_sha256: hash of the loaded checkpoint (embedding cache key).
        source: where the weights came from, for error messages.
    """

    name = "clip"

    def __init__(self, model, tokenizer=None, resize: Resize = "pad", mean: Sequence[float] = CLIP_MEAN,
                 std: Sequence[float] = CLIP_STD, weights_sha256: str | None = None, source: str = "clip") -> None:
        super().__init__()
        if resize not in ("pad", "center_crop"):
            raise InputError(f"resize={resize!r}; expected 'pad' or 'center_crop'")
        self.model = model
        self.tokenizer = tokenizer
        self.resize = resize
        self.source = source
        self.weights_sha256 = weights_sha256
        vcfg = model.config.vision_config
        self.input_size = int(vcfg.image_size)  # 224
        self.grid = self.input_size // int(vcfg.patch_size)  # 14 for ViT-B/16
        self.mask_size = 0  # no prompt decoder
        self.embed_dim = int(model.config.projection_dim)  # P: 512
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def embedding_shapes(self) -> dict[str, tuple[int, ...]]:
        """Patch grid (D, g, g), CLS (D,) and projected CLS (P,), as :meth:`encode_image` returns them."""
        d = int(self.model.config.vision_config.hidden_size)
        return {"features": (d, self.grid, self.grid), "cls": (d,), "image_embeds": (self.embed_dim,)}

    @property
    def vision(self):
        """The ``CLIPVisionModel`` tower (``embeddings``, ``pre_layrnorm``, ``encoder.layers``, ``post_layernorm``)."""
        return self.model.vision_model

    # -- image tower ----------------------------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """HxW or HxWx3 uint8 in [0, 255] -> (1, 3, S, S) float32, CLIP-normalised (see ``resize``)."""
        pixels = (image_to_tensor(image) / 255.0 - self.pixel_mean.cpu()) / self.pixel_std.cpu()  # (1, 3, H, W)
        if self.resize == "pad":
            return Frame(tuple(image.shape[:2]), self.input_size).resize_image(pixels)
        h, w = image.shape[:2]
        scale = self.input_size / min(h, w)
        rh, rw = max(self.input_size, round(h * scale)), max(self.input_size, round(w * scale))
        out = F.interpolate(pixels, size=(rh, rw), mode="bicubic", align_corners=False, antialias=True)
        top, left = (rh - self.input_size) // 2, (rw - self.input_size) // 2
        return out[..., top:top + self.input_size, left:left + self.input_size].contiguous()

    def encode_image(self, pixels: torch.Tensor,
                     attention_bias: Mapping[int, torch.Tensor] | None = None) -> ImageEmbedding:
        """(B, 3, S, S) -> ImageEmbedding.

        Args:
            pixels: from :meth:`preprocess`.
            attention_bias: {block index: additive bias (B or 1, 1 or heads, T, T)}, T = 1 + grid**2.

        Returns:
            features: (B, D, g, g) patch tokens after the final layer norm (the same ``post_layernorm`` as CLS,
            so patches and CLS share one space); extra["cls"]: (B, D) CLS after ``post_layernorm``;
            extra["image_embeds"]: (B, P) projected CLS (unnormalised; what ``get_image_features`` returns).
        """
        check_pixels(pixels, self.input_size, self.name)
        return self.finish(self.hidden_states(pixels, 0), 0, attention_bias)

    def hidden_states(self, pixels: torch.Tensor, stop: int) -> torch.Tensor:
        """(B, 3, S, S) -> (B, T, D) tokens entering block ``stop`` (negative counts from the end), unbiased.

        With :meth:`finish` this splits :meth:`encode_image`, so a method can cache the first blocks and re-run
        only the last ones (MedFocusCLIP learns the bias of the last 4).
        """
        check_pixels(pixels, self.input_size, self.name)
        layers = self.vision.encoder.layers
        stop = stop + len(layers) if stop < 0 else stop
        tokens = self.vision.pre_layrnorm(self.vision.embeddings(pixels.to(self.pixel_mean.device)))
        for layer in layers[:stop]:
            tokens = layer(tokens, None)
        return tokens

    def finish(self, hidden: torch.Tensor, start: int,
               attention_bias: Mapping[int, torch.Tensor] | None = None) -> ImageEmbedding:
        """Run blocks ``start..`` on ``hidden`` from :meth:`hidden_states` and read out as :meth:`encode_image`."""
        layers = self.vision.encoder.layers
        start = start + len(layers) if start < 0 else start
        bias = _resolve_layers(attention_bias, len(layers), 1 + self.grid**2)
        if early := [i for i in bias if i < start]:
            raise InputError(f"attention_bias on blocks {early}, but the hidden states already passed them")
        tokens = hidden
        for i in range(start, len(layers)):
            tokens = layers[i](tokens, None if i not in bias else bias[i].to(tokens))
        tokens = self.vision.post_layernorm(tokens)  # (B, T, D)
        cls, patches = tokens[:, 0], tokens[:, 1:]
        b, _, d = patches.shape
        features = patches.transpose(1, 2).reshape(b, d, self.grid, self.grid)  # (B, D, g, g)
        return ImageEmbedding(features, {"cls": cls, "image_embeds": self.model.visual_projection(cls)})

    @staticmethod
    def cls_attention_bias(patch_bias: torch.Tensor) -> torch.Tensor:
        """(B, g, g) or (B, g*g) bias on the patch keys -> (B, 1, T, T) bias on the CLS query's row only."""
        b = patch_bias.shape[0]
        flat = patch_bias.reshape(b, -1)  # (B, g*g)
        t = flat.shape[1] + 1
        row = F.pad(flat, (1, 0))  # (B, T): the CLS key itself gets no bias
        return F.pad(row[:, None, None, :], (0, 0, 0, t - 1))  # (B, 1, T, T), rows 1.. are zero

    # -- text tower -----------------------------------------------------------------------------------------------
    def encode_text(self, texts: Sequence[str], normalize: bool = False) -> torch.Tensor:
        """List of strings -> (B, P) projected text embeddings (L2-normalised if ``normalize``).

        Raises:
            CheckpointError: the checkpoint folder carried no tokenizer files.
        """
        if self.tokenizer is None:
            raise CheckpointError(f"{self.source}: the folder lacks a tokenizer (tokenizer.json, or vocab.json + "
                                  "merges.txt), so CLIP cannot encode text offline; copy the tokenizer files of the "
                                  "same CLIP model into it")
        if isinstance(texts, str) or not texts:
            raise InputError("texts must be a non-empty list of strings")
        max_len = min(int(self.model.config.text_config.max_position_embeddings),
                      int(getattr(self.tokenizer, "model_max_length", 77) or 77))
        tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        return self.encode_token_ids(tok["input_ids"], tok["attention_mask"], normalize=normalize)

    @property
    def text_dim(self) -> int:
        """Size of a text embedding (the projection, P)."""
        return self.embed_dim

    @property
    def text_token_dim(self) -> int:
        """Size of one input word embedding of the text tower (a slot vector of :meth:`text_with_slots`)."""
        return int(self.model.config.text_config.hidden_size)

    def text_with_slots(self, text: str | Sequence[str], slot_vectors: torch.Tensor,
                        placeholder: str = "[unused0]") -> torch.Tensor:
        """Projected (B, P) text embeddings with each ``placeholder`` replaced by a given input word embedding.

        The same contract as :meth:`MiniLMBackbone.text_with_slots` (one text for every row, or one per row; slot
        vectors (B, n, W) or (B, W), W = :attr:`text_token_dim`), so a method can take either text tower. The
        placeholder never reaches the BPE tokenizer: each slot position gets a stand-in id whose word embedding
        is swapped for the slot vector by a hook on the token embedding, so gradients flow to the slot vectors
        and CLIP's own end-of-text pooling is unchanged.
        """
        if self.tokenizer is None:
            raise CheckpointError(f"{self.source}: the folder lacks a tokenizer, so CLIP cannot encode text")
        texts = [text] if isinstance(text, str) else list(text)
        counts = {t.count(placeholder) for t in texts}
        if not texts or 0 in counts:
            raise InputError(f"text {texts[:3]!r} has no placeholder {placeholder!r}")
        if len(counts) > 1:
            raise InputError(f"every text needs the same number of placeholders {placeholder!r}; got {sorted(counts)}")
        n, width = counts.pop(), self.text_token_dim
        slots = torch.as_tensor(slot_vectors)
        slots = slots.reshape(-1, 1, slots.shape[-1]) if slots.ndim == 1 or (slots.ndim == 2 and n == 1) else slots
        if slots.ndim != 3 or slots.shape[1:] != (n, width):
            raise InputError(f"slot_vectors have shape {tuple(torch.as_tensor(slot_vectors).shape)}; expected "
                             f"(B, {n}, {width})")
        b = slots.shape[0]
        if len(texts) not in (1, b):
            raise InputError(f"{len(texts)} texts for {b} rows of slot vectors; give one text or one per row")
        tok = self.tokenizer
        stand_in = tok.bos_token_id  # any real id: its embedding is replaced before the first block
        limit = int(self.model.config.text_config.max_position_embeddings)
        rows, positions = [], []
        for t in texts:
            ids = [tok.bos_token_id]
            for k, part in enumerate(t.split(placeholder)):
                if k:
                    if len(ids) >= limit - 1:
                        raise InputError(f"a placeholder falls beyond this CLIP's {limit} tokens in {t!r}")
                    positions.append((len(rows), len(ids)))
                    ids.append(stand_in)
                ids += tok(part.strip(), add_special_tokens=False)["input_ids"] if part.strip() else []
            rows.append(ids[:limit - 1] + [tok.eos_token_id])  # truncated as CLIP's tokenizer truncates
        longest = max(len(r) for r in rows)
        ids = torch.tensor([r + [tok.eos_token_id] * (longest - len(r)) for r in rows], device=self.pixel_mean.device)
        mask = torch.tensor([[1] * len(r) + [0] * (longest - len(r)) for r in rows], device=ids.device)
        ids, mask = ids.expand(b, -1), mask.expand(b, -1)
        rows_idx = torch.tensor([r for r, _ in positions]), torch.tensor([p for _, p in positions])

        def swap(_module, _inputs, words: torch.Tensor) -> torch.Tensor:
            words = words.clone()
            for j in range(n):  # the j-th slot of every row (one text shared, or one per row)
                pos = rows_idx[1][j::n] if len(texts) > 1 else rows_idx[1][j].expand(b)
                words[torch.arange(b), pos] = slots[:, j].to(words)
            return words

        hook = self.model.text_model.embeddings.token_embedding.register_forward_hook(swap)
        try:
            return self.encode_token_ids(ids, mask)
        finally:
            hook.remove()

    def encode_token_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                         normalize: bool = False) -> torch.Tensor:
        """Pre-tokenised (B, L) ids (each with its end-of-text token) -> (B, P) projected text embeddings."""
        device = self.pixel_mean.device
        out = self.model.get_text_features(input_ids=input_ids.to(device),
                                           attention_mask=None if attention_mask is None else attention_mask.to(device))
        emb = out.pooler_output  # (B, P)
        return F.normalize(emb, dim=-1) if normalize else emb


def _resolve_layers(bias: Mapping[int, torch.Tensor] | None, n_layers: int, n_tokens: int) -> dict[int, torch.Tensor]:
    if not bias:
        return {}
    out = {}
    for index, value in bias.items():
        i = index + n_layers if index < 0 else index
        if not 0 <= i < n_layers:
            raise InputError(f"attention_bias block {index} is out of range for {n_layers} blocks")
        if value.ndim != 4 or tuple(value.shape[-2:]) != (n_tokens, n_tokens):
            raise InputError(f"attention_bias[{index}] has shape {tuple(value.shape)}; expected "
                             f"(B, 1 or heads, {n_tokens}, {n_tokens})")
        out[i] = value
    return out


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or ((folder / "vocab.json").is_file()
                                                     and (folder / "merges.txt").is_file())


def _normalisation(folder: Path) -> tuple[Sequence[float], Sequence[float]]:
    """Mean/std from the folder's ``preprocessor_config.json``, else OpenAI CLIP's."""
    config = folder / "preprocessor_config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
            if len(data.get("image_mean", [])) == 3 and len(data.get("image_std", [])) == 3:
                return tuple(data["image_mean"]), tuple(data["image_std"])
        except (OSError, ValueError):
            pass  # a broken processor file should not block the weights; fall back to CLIP's statistics
    return CLIP_MEAN, CLIP_STD


@register_backbone("clip")
def build_clip(weights: str | Path | None = None, allow_download: bool = False, resize: Resize = "pad") -> ClipBackbone:
    """CLIP from a local Hugging Face-format folder (``config.json`` + ``model.safetensors`` [+ tokenizer files]).

    Raises:
        CheckpointError: ``weights`` is None (no offline default; ``openai/clip-vit-base-patch16`` only with
            ``allow_download=True``), or the folder is missing, not CLIP, unsafe or does not fit.
    """
    from transformers import AutoTokenizer, CLIPModel

    model, sha = load_hf_folder(CLIPModel, weights, model_types=("clip",), hub_id="openai/clip-vit-base-patch16",
                                allow_download=allow_download, arch="clip")
    if weights is None:  # pragma: no cover - downloaded from the hub
        tokenizer = AutoTokenizer.from_pretrained("openai/clip-vit-base-patch16")
        return ClipBackbone(model, tokenizer, resize=resize, source="openai/clip-vit-base-patch16")
    folder = Path(weights)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True) if _has_tokenizer(folder) else None
    mean, std = _normalisation(folder)
    return ClipBackbone(model, tokenizer, resize=resize, mean=mean, std=std, weights_sha256=sha, source=str(folder))
