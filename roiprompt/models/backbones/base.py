"""The one backbone interface and its registry.

A :class:`Backbone` hides LiteMedSAM, SAM, MedSAM, SAM 2, CLIP and MiniLM behind three verbs, each optional:

* ``encode_image(pixels) -> ImageEmbedding`` for image towers (after ``preprocess(image)``),
* ``decode(embedding, ...) -> (low-res mask logits, predicted IoU)`` for SAM-family prompt decoders,
* ``encode_text(texts) -> (B, D)`` for text towers.

A backbone that lacks a verb raises :class:`NotImplementedError` naming itself. Backbones are frozen and in
eval mode once built (``lock()``); methods train their own heads on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from ...runtime import EncoderRunner, InferenceOptions
from ...errors import InputError
from ...prompts.transforms import Frame


@dataclass
class ImageEmbedding:
    """Output of ``encode_image``.

    Attributes:
        features: (B, C, h, w) main embedding (SAM family: (B, 256, 64, 64)); for token models (CLIP) the
            patch grid reshaped to (B, D, g, g).
        extra: backbone-specific extra tensors, e.g. SAM 2's high-resolution feature maps or CLIP's CLS token.
    """

    features: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getitem__(self, index: int | slice) -> "ImageEmbedding":
        sl = slice(index, index + 1) if isinstance(index, int) else index
        return ImageEmbedding(self.features[sl], {k: v[sl] for k, v in self.extra.items()})

    @staticmethod
    def cat(items: Sequence["ImageEmbedding"]) -> "ImageEmbedding":
        return ImageEmbedding(torch.cat([e.features for e in items]),
                              {k: torch.cat([e.extra[k] for e in items]) for k in items[0].extra})


def _image_array(image: np.ndarray) -> np.ndarray:
    """HxW or HxWx{1,3} image -> HxW or HxWx3 array (no copy), or InputError (non-finite float values too)."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise InputError(f"image has shape {arr.shape}; expected HxW, HxWx1 or HxWx3 (RGB)")
    if arr.dtype.kind not in "biu" and not np.isfinite(arr).all():  # integers are always finite
        raise InputError("image contains NaN or infinite values")
    return arr


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxW or HxWx{1,3} image (uint8 in [0, 255], or float in the same range) -> (1, 3, H, W) float32.

    Grayscale is repeated to 3 channels (MedSAM's ``MedSAM_Inference.py`` does the same). The tensor is a
    channels-last view of one HxWx3 float32 array (12 bytes per pixel, the only full-size copy made); to resize an
    image for an encoder without it, see :func:`resize_to_frame`.
    """
    arr = _image_array(image)
    out = np.empty((*arr.shape[:2], 3), dtype=np.float32)
    out[...] = arr[..., None] if arr.ndim == 2 else arr  # converted as it is copied: no uint8 or bool temporaries
    return torch.from_numpy(out).permute(2, 0, 1)[None]


def resize_to_frame(image: np.ndarray, input_size: int) -> tuple[torch.Tensor, Frame]:
    """HxW or HxWx{1,3} image -> ((1, 3, S, S) float32, its :class:`Frame`): the longest side resized to S
    (antialiased bilinear), zero-padded bottom/right, grey repeated to 3 channels.

    Bit for bit ``frame.resize_image(image_to_tensor(image))``, but the full-resolution image is never held in
    float32: each channel is resized on its own, a row block at a time (:meth:`Frame.resize_plane`), and grey
    once, then repeated. Memory beyond the image: a few MiB whatever its size.
    """
    arr = _image_array(image)
    frame = Frame(tuple(arr.shape[:2]), input_size)
    planes = [frame.resize_plane(arr)] * 3 if arr.ndim == 2 else [frame.resize_plane(arr[..., c]) for c in range(3)]
    rh, rw = frame.resized_hw
    out = torch.zeros((1, 3, input_size, input_size), dtype=torch.float32)
    for c, plane in enumerate(planes):
        out[0, c, :rh, :rw] = plane
    return out, frame


class Backbone(nn.Module):
    """Base class of every backbone; subclasses implement the verbs they support.

    Attributes:
        name: registry name ("litemedsam", "sam", "clip", ...).
        input_size: side of the square model frame (SAM family: longest side resized then zero-padded).
        mask_size: side of the decoder's low-resolution logits (SAM family: 256).
        weights_sha256: hash of the loaded checkpoint (part of every embedding cache key), or None.
        point_prompts: whether the decoder was trained with point prompts (False for LiteMedSAM, trained with
            boxes only: methods use its points for selection, not as prompts).
    """

    name: ClassVar[str] = "backbone"
    input_size: int = 0
    mask_size: int = 0
    point_prompts: bool = True
    weights_sha256: str | None = None
    #: how the image encoder runs on the CPU (SAM-family backbones; None: the module runs as it is, e.g. CLIP,
    #: whose last blocks MedFocusCLIP backpropagates through)
    runner: EncoderRunner | None = None

    #: dtype of every tensor ``encode_image`` returns (the runner's outputs are float32)
    embedding_dtype: ClassVar[torch.dtype] = torch.float32

    @property
    def embedding_shapes(self) -> dict[str, tuple[int, ...]] | None:
        """Per-image shape (no batch dimension) of each tensor ``encode_image`` returns: ``"features"`` and every
        ``extra`` name; None when the backbone does not declare them. The embedding cache checks its entries
        against it, so a stale or foreign entry is recomputed rather than failing later in ``decode``."""
        return None

    @property
    def inference(self) -> InferenceOptions | None:
        """The image encoder's resolved inference options (``runtime`` is never "auto"), or None without a runner."""
        return self.runner.options if self.runner is not None else None

    # -- capabilities -------------------------------------------------------------------------------------
    @property
    def has_image_encoder(self) -> bool:
        return type(self).encode_image is not Backbone.encode_image

    @property
    def has_decoder(self) -> bool:
        return type(self).decode is not Backbone.decode

    @property
    def has_text_encoder(self) -> bool:
        return type(self).encode_text is not Backbone.encode_text

    @property
    def image_encoder_module(self) -> nn.Module:
        """The image tower alone (LiteMedSAM's TinyViT, SAM's ViT, CLIP's vision model): what fine-tuning trains
        and what trainable-parameter ratios are measured against."""
        model = getattr(self, "model", None)
        for attr in ("image_encoder", "vision_encoder", "vision_model"):
            if model is not None and isinstance(getattr(model, attr, None), nn.Module):
                return getattr(model, attr)
        raise NotImplementedError(f"backbone {self.name!r} has no image encoder module")

    # -- verbs ---------------------------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """HxW or HxWx3 uint8 -> (1, 3, input_size, input_size) float tensor in this model's input convention."""
        raise NotImplementedError(f"backbone {self.name!r} has no image encoder")

    def encode_image(self, pixels: torch.Tensor) -> ImageEmbedding:
        """(B, 3, S, S) preprocessed pixels -> embedding."""
        raise NotImplementedError(f"backbone {self.name!r} has no image encoder")

    def encode_images(self, images: Sequence[np.ndarray], batch_size: int = 2) -> list[ImageEmbedding]:
        """Preprocess and encode many images, ``batch_size`` at a time; one embedding (batch 1) per image.

        On a 2-core CPU batches above 2 do not help LiteMedSAM (the stage-0 activations overflow the L3 cache);
        larger batches pay off on machines with more cores.
        """
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        out: list[ImageEmbedding] = []
        for i in range(0, len(images), batch_size):
            pixels = torch.cat([self.preprocess(image) for image in images[i:i + batch_size]])
            embedding = self.encode_image(pixels)
            out.extend(embedding[j] for j in range(len(pixels)))
        return out

    def decode(
        self,
        embedding: ImageEmbedding,
        points: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_logits: torch.Tensor | None = None,
        multimask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt the mask decoder. All coordinates are in the model frame (``input_size`` pixels).

        Args:
            embedding: from ``encode_image``, batch B.
            points: (B, N, 2) float (x, y), or None.
            point_labels: (B, N) int, 1 foreground / 0 background, or None.
            boxes: (B, 4) float XYXY, or None.
            mask_logits: (B, 1, mask_size, mask_size) dense prompt logits, or None.
            multimask: return the 3 multimask outputs instead of the single-mask output.

        Returns:
            (low-res logits (B, K, mask_size, mask_size), predicted IoU (B, K)), K = 3 or 1.
        """
        raise NotImplementedError(f"backbone {self.name!r} has no prompt decoder")

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """List of strings -> (B, D) text embeddings."""
        raise NotImplementedError(f"backbone {self.name!r} has no text encoder")

    def lock(self) -> "Backbone":
        """Freeze every parameter and switch to eval mode (open_clip's ``lock_image_tower``)."""
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()


_BACKBONES: dict[str, Callable[..., Backbone]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Register a builder ``fn(weights=None, allow_download=False, **kwargs) -> Backbone`` under ``name``."""

    def add(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _BACKBONES:  # two builders under one name is always a bug
            raise ValueError(f"backbone {name!r} is already registered by {_BACKBONES[name].__module__}")
        _BACKBONES[name] = fn
        return fn

    return add


def list_backbones() -> list[str]:
    """Names of every registered backbone (built-in ones included)."""
    from . import _builtin  # noqa: F401  (imports register the built-in backbones)

    return sorted(_BACKBONES)


def load_backbone(name: str, weights: str | None = None, allow_download: bool = False, **kwargs) -> Backbone:
    """Build a frozen backbone by name.

    Args:
        name: one of :func:`list_backbones` ("litemedsam" is the offline default).
        weights: a local checkpoint file or Hugging Face-format folder; None uses the offline default.
        allow_download: let the resolver fetch from a hub when nothing local is found.

    Raises:
        InputError: unknown name (the message lists the choices).
        CheckpointError: weights missing, corrupt, or not matching the architecture.
    """
    from . import _builtin  # noqa: F401  (imports register the built-in backbones)

    if name not in _BACKBONES:
        raise InputError(f"unknown backbone {name!r}; available: {list_backbones()}")
    return _BACKBONES[name](weights=weights, allow_download=allow_download, **kwargs).lock()
