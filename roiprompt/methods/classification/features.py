"""Inputs of the classifiers: (augmented) views of an image and its ROI mask in the model frame, and the frozen
encoder's tokens of each view, cached on disk so a fit never re-encodes.

A *view* is the image (and its mask) after one random geometric/photometric transform in the backbone's input
frame (methods.md §2.3: hflip, rotation ±10°, scale 0.9–1.1, brightness/contrast ±10 %). View 0 is the image
itself. The transform of view v of an image is drawn from a generator seeded by (image hash, v, augment
settings), so the same view always has the same pixels and the same cache entry, whichever method asks.

Tokens are the encoder's embedding average-pooled to a ``grid`` x ``grid`` token grid (LiteMedSAM: 256x64x64 ->
256x16x16, methods.md §2.2): 16x smaller than the embedding, so every view of a few hundred images stays in RAM.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...data.validate import check_image, check_mask
from ...models.cache import EmbeddingCache, image_key, load_or_compute
from ...errors import InputError
from ...models.backbones.base import Backbone, ImageEmbedding
from ...prompts.transforms import Frame


#: Background intensity kept in the segmented-image cue ``x * (m + f * (1 - m))`` (methods.md §3.1.2).
SEGMENTED_FLOOR = 0.2


@dataclass(frozen=True)
class ViewAugment:
    """Random view transform (methods.md §2.3), applied to image and mask alike in the model frame.

    Attributes:
        hflip: flip left-right with probability 0.5.
        rotation: maximum absolute rotation in degrees.
        scale: (min, max) zoom factor.
        brightness: maximum absolute brightness shift, as a fraction of the [0, 1] intensity range.
        contrast: maximum relative contrast change.
    """

    hflip: bool = True
    rotation: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.1
    contrast: float = 0.1

    @property
    def tag(self) -> str:
        """Short hash of the settings, part of every cache key of an augmented view."""
        return hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:8]


def view_params(key: str, view: int, augment: ViewAugment) -> dict[str, float]:
    """The transform of ``view`` of the image with hash ``key``; view 0 is the identity."""
    if view == 0:
        return {"flip": 0.0, "angle": 0.0, "scale": 1.0, "brightness": 0.0, "contrast": 1.0}
    seed = int.from_bytes(hashlib.sha256(f"{key}|{view}|{augment.tag}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    return {"flip": float(augment.hflip and rng.random() < 0.5),
            "angle": float(rng.uniform(-augment.rotation, augment.rotation)),
            "scale": float(rng.uniform(*augment.scale)),
            "brightness": float(rng.uniform(-augment.brightness, augment.brightness)),
            "contrast": float(1.0 + rng.uniform(-augment.contrast, augment.contrast))}


def _warp(x: torch.Tensor, params: dict[str, float], valid_hw: tuple[int, int], mode: str) -> torch.Tensor:
    """Flip, rotate and zoom (B, C, S, S) about the centre of the image content (top-left ``valid_hw``)."""
    if params["flip"] == 0 and params["angle"] == 0 and params["scale"] == 1:
        return x
    s = x.shape[-1]
    h, w = valid_hw
    # content centre in normalised [-1, 1] coordinates (align_corners=False)
    cx, cy = w / s - 1.0, h / s - 1.0
    a = math.radians(params["angle"])
    cos, sin = math.cos(a) / params["scale"], math.sin(a) / params["scale"]
    fx = -1.0 if params["flip"] else 1.0
    # output pixel p samples input at c + R(p - c) (then flipped about the centre)
    theta = torch.tensor([[fx * cos, -sin, cx - fx * cos * cx + sin * cy],
                          [fx * sin, cos, cy - fx * sin * cx - cos * cy]], dtype=x.dtype)
    grid = F.affine_grid(theta[None].expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def apply_view(pixels: torch.Tensor, mask: torch.Tensor | None, params: dict[str, float],
               valid_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply one view transform to model-frame ``pixels`` (1, 3, S, S) in [0, 1] and ``mask`` (1, 1, S, S)."""
    out = pixels
    if params["brightness"] != 0 or params["contrast"] != 1:
        h, w = valid_hw
        content = out[..., :h, :w]
        mean = content.mean()
        out = out.clone()
        out[..., :h, :w] = ((content - mean) * params["contrast"] + mean + params["brightness"]).clamp(0, 1)
    out = _warp(out, params, valid_hw, "bilinear")
    if mask is not None:
        mask = (_warp(mask, params, valid_hw, "bilinear") > 0.5).float()
    return out, mask


def mask_to_input(backbone: Backbone, mask: np.ndarray) -> torch.Tensor:
    """HxW bool mask at the original resolution -> (1, 1, S, S) {0, 1} float in ``backbone``'s input frame.

    SAM-family frames resize the longest side and pad; CLIP's default frame resizes the shortest side and
    centre-crops (``resize="crop"``), and the mask follows the same crop.
    """
    s = backbone.input_size
    h, w = mask.shape
    if getattr(backbone, "resize", "pad") == "pad":
        return (Frame((h, w), s).mask_to_model(mask, s) > 0.5).float()
    scale = s / min(h, w)
    rh, rw = max(s, round(h * scale)), max(s, round(w * scale))
    m = F.interpolate(torch.from_numpy(mask.astype(np.float32))[None, None], size=(rh, rw), mode="bilinear",
                      align_corners=False)
    top, left = (rh - s) // 2, (rw - s) // 2
    return (m[..., top:top + s, left:left + s] > 0.5).float().contiguous()


def grid_to_image(backbone: Backbone, grid_map: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """A (g, g) map on the input frame's token grid -> (H, W) at the original resolution (the inverse of
    :func:`mask_to_input`: padding cropped away, or the centre crop placed back with zeros outside it)."""
    s = backbone.input_size
    h, w = image_hw
    up = F.interpolate(torch.as_tensor(grid_map, dtype=torch.float32)[None, None], size=(s, s), mode="bilinear",
                       align_corners=False)
    if getattr(backbone, "resize", "pad") == "pad":
        rh, rw = content_hw(backbone, image_hw)
        frame = up[..., :rh, :rw]
    else:
        scale = s / min(h, w)
        rh, rw = max(s, round(h * scale)), max(s, round(w * scale))
        top, left = (rh - s) // 2, (rw - s) // 2
        frame = torch.zeros(1, 1, rh, rw)
        frame[..., top:top + s, left:left + s] = up
    return F.interpolate(frame, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def content_hw(backbone: Backbone, image_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the image content inside the input frame (the rest is zero padding)."""
    if getattr(backbone, "resize", "pad") == "pad":
        return Frame(image_hw, backbone.input_size).resized_hw
    return backbone.input_size, backbone.input_size


def roi_mask(masks: dict[str, np.ndarray] | None, structures: tuple[str, ...] | None, source: str) -> np.ndarray:
    """Union of the named structures' masks (all of them when ``structures`` is None); InputError if missing."""
    if not masks:
        raise InputError(f"{source}: no ROI mask; give the mask of the region of interest")
    names = list(masks) if structures is None else list(structures)
    if missing := [s for s in names if s not in masks]:
        raise InputError(f"{source}: no mask for {missing}; it has {sorted(masks)}")
    return np.logical_or.reduce([np.asarray(masks[s], bool) for s in names])


class _Memo:
    """Process-wide LRU of token tensors, so methods sharing a benchmark share one read of each view."""

    def __init__(self, max_bytes: int = 3 << 30) -> None:
        self.items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.max_bytes = max_bytes

    def get(self, key: str) -> torch.Tensor | None:
        item = self.items.get(key)
        if item is not None:
            self.items.move_to_end(key)
        return item

    def put(self, key: str, value: torch.Tensor) -> None:
        if key in self.items:
            return
        self.items[key] = value
        self.bytes += value.numel() * value.element_size()
        while self.bytes > self.max_bytes and self.items:
            _, old = self.items.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()


_MEMO = _Memo()


class ViewEncoder:
    """Pixels, masks and pooled frozen-encoder tokens of the views of an image, each computed once.

    Args:
        backbone: a backbone with an image encoder.
        grid: side of the token grid the embedding is average-pooled to (at most the embedding's own grid).
        augment: view transform settings.
        cache: on-disk cache of pooled tokens (and read-through of full embeddings cached by other methods).
    """

    def __init__(self, backbone: Backbone, grid: int = 16, augment: ViewAugment = ViewAugment(),
                 cache: EmbeddingCache | None = None) -> None:
        if not backbone.has_image_encoder:
            raise InputError(f"backbone {backbone.name!r} has no image encoder to classify with")
        self.backbone = backbone
        self.grid = grid
        self.augment = augment
        self.cache = cache
        self.encoder_calls = 0

    @property
    def token_grid(self) -> int:
        """Side of the token grid actually produced: ``grid``, or the encoder's own grid when that is coarser."""
        native = getattr(self.backbone, "embed_size", None) or getattr(self.backbone, "grid", None)
        return min(self.grid, int(native)) if native else self.grid

    def _tag(self, view: int) -> str:
        return f"tokens{self.grid}" + ("" if view == 0 else f"-aug{view}-{self.augment.tag}")

    def pixels(self, image: np.ndarray, mask: np.ndarray | None, view: int = 0,
               key: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """View ``view`` of ``image`` (and ``mask``) in the input frame: (1, 3, S, S) and (1, 1, S, S) or None."""
        key = key or image_key(image)
        pixels = self.backbone.preprocess(image)
        m = None if mask is None else mask_to_input(self.backbone, mask)
        params = view_params(key, view, self.augment)
        return apply_view(pixels, m, params, content_hw(self.backbone, image.shape[:2]))

    def mask(self, image: np.ndarray, mask: np.ndarray, view: int = 0, key: str | None = None) -> torch.Tensor:
        """The (1, 1, S, S) mask of view ``view`` (no pixels computed)."""
        key = key or image_key(image)
        m = mask_to_input(self.backbone, mask)
        params = dict(view_params(key, view, self.augment), brightness=0.0, contrast=1.0)
        return apply_view(torch.zeros(1, 3, 1, 1), m, params, content_hw(self.backbone, image.shape[:2]))[1]

    def _pool(self, features: torch.Tensor) -> torch.Tensor:
        g = min(self.grid, features.shape[-1])
        return F.adaptive_avg_pool2d(features, g)

    def tokens(self, image: np.ndarray, views: int | list[int] = 1, key: str | None = None,
               segmented: np.ndarray | None = None) -> torch.Tensor:
        """Pooled tokens (V, C, g, g) of the given views (an int n means views 0..n-1); encodes only misses.
        With ``segmented`` (the HxW ROI mask): the tokens of the segmented image instead (:meth:`_segmented`)."""
        def encode(pixels: torch.Tensor) -> torch.Tensor:
            return self._pool(self.backbone.encode_image(pixels).features)

        def from_full(image: np.ndarray) -> torch.Tensor | None:  # a full embedding cached by a segmentation method
            full = self.cache.load(image, self.backbone, "orig")
            return None if full is None else self._pool(full.features)[0]

        key = key or image_key(image)
        prefix, view_pixels = self._segmented(image, segmented, key)
        if view_pixels is not None:
            return self.cached_views(image, views, key, lambda v: prefix + self._tag(v), encode,
                                     view_pixels=view_pixels)
        return self.cached_views(image, views, key, self._tag, encode, from_full)

    def _segmented(self, image: np.ndarray, mask: np.ndarray | None, key: str
                   ) -> tuple[str, Callable[[int], torch.Tensor] | None]:
        """Cache-tag prefix and pixels of the *segmented image* ``x * (m + f * (1 - m))`` of each view
        (methods.md §3.1.2: the background suppressed, not erased; ``f`` = :data:`SEGMENTED_FLOOR`), ``m`` the
        view's own mask so image and mask share the view's transform; ("", None) for the plain image."""
        if mask is None:
            return "", None
        digest = hashlib.sha256(np.packbits(np.asarray(mask, bool)).tobytes() + repr(mask.shape).encode())

        def pixels(view: int) -> torch.Tensor:
            x, m = self.pixels(image, mask, view, key)
            keep = m + SEGMENTED_FLOOR * (1 - m)
            mean, std = getattr(self.backbone, "pixel_mean", None), getattr(self.backbone, "pixel_std", None)
            if mean is None:  # pixels in [0, 1] (SAM family): 0 is black
                return x * keep
            mean, std = mean.cpu().view(1, -1, 1, 1), std.cpu().view(1, -1, 1, 1)
            return ((x * std + mean) * keep - mean) / std  # normalised pixels (CLIP): darken in [0, 1], not in z

        return f"seg{SEGMENTED_FLOOR:g}-{digest.hexdigest()[:12]}-", pixels

    def global_features(self, image: np.ndarray, views: int | list[int], key: str | None = None) -> torch.Tensor:
        """(V, D) one global feature per view: CLIP's projected CLS (``image_embeds``, the space its text tower
        shares), else the mean of the pooled tokens."""
        if not hasattr(self.backbone, "hidden_states"):
            return self.tokens(image, views, key).mean((2, 3))
        return self.cached_views(image, views, key, lambda v: "image_embeds" + self._tag(v)[len(f"tokens{self.grid}"):],
                                 lambda pixels: self.backbone.encode_image(pixels).extra["image_embeds"])

    def hidden(self, image: np.ndarray, views: int | list[int], stop: int, key: str | None = None,
               segmented: np.ndarray | None = None) -> torch.Tensor:
        """(V, T, D) hidden tokens of a ViT backbone entering block ``stop`` (CLIP: ``hidden_states``), cached,
        so a method that re-runs only the last blocks (MedFocusCLIP's guided CLS) never re-runs the first ones.
        ``segmented``: as :meth:`tokens`."""
        if not hasattr(self.backbone, "hidden_states"):
            raise InputError(f"backbone {self.backbone.name!r} has no ViT hidden states to resume from")
        key = key or image_key(image)
        prefix, view_pixels = self._segmented(image, segmented, key)
        return self.cached_views(image, views, key,
                                 lambda v: prefix + f"hidden{stop}" + self._tag(v)[len(f"tokens{self.grid}"):],
                                 lambda pixels: self.backbone.hidden_states(pixels, stop), view_pixels=view_pixels)

    def cached_views(self, image: np.ndarray, views: int | list[int], key: str | None,
                     tag: Callable[[int], str], compute: Callable[[torch.Tensor], torch.Tensor],
                     view0_fallback: Callable[[np.ndarray], torch.Tensor | None] | None = None,
                     view_pixels: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
        """Per-view frozen features stacked on dim 0, each looked up in the process memo, then the disk cache
        under ``tag(view)`` (:func:`~roiprompt.models.cache.load_or_compute`, the one cache path every method
        uses; view 0 may also come from ``view0_fallback``), and computed in one batch by ``compute(pixels)``
        only when missing everywhere. ``view_pixels(view)`` replaces the plain pixels of a view (e.g. the
        segmented image)."""
        key = key or image_key(image)
        wanted = list(range(views)) if isinstance(views, int) else list(views)
        memo_keys = {v: f"{key}|{self.backbone.name}|{self.backbone.weights_sha256}|{tag(v)}" for v in wanted}
        found = {v: hit for v in wanted if (hit := _MEMO.get(memo_keys[v])) is not None}
        missing = [v for v in wanted if v not in found]
        if missing:
            by_tag = {tag(v): v for v in missing}

            def compute_missing(tags: list[str]) -> list[ImageEmbedding]:
                out: dict[str, torch.Tensor] = {}
                if self.cache is not None and view0_fallback is not None and 0 in missing and tag(0) in tags:
                    if (hit := view0_fallback(image)) is not None:  # derived from another method's entry
                        out[tag(0)] = hit
                todo = [t for t in tags if t not in out]
                if todo:
                    pixels = torch.cat([view_pixels(by_tag[t]) if view_pixels else
                                        self.pixels(image, None, by_tag[t], key)[0] for t in todo])
                    with torch.no_grad():
                        computed = compute(pixels)
                    self.encoder_calls += len(todo)
                    out.update({t: computed[i].contiguous() for i, t in enumerate(todo)})
                return [ImageEmbedding(out[t][None]) for t in tags]

            embeddings = load_or_compute(self.cache, image, self.backbone, list(by_tag), compute_missing)
            for t, emb in zip(by_tag, embeddings):
                v = by_tag[t]
                found[v] = emb.features[0]
                _MEMO.put(memo_keys[v], found[v])
        return torch.stack([found[v] for v in wanted])


def checked_pair(image: np.ndarray, mask: np.ndarray | None, source: str,
                 allow_empty: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate an image and its ROI mask (size, values, emptiness) with errors naming ``source``."""
    image = check_image(image, source)
    if mask is not None:
        mask = check_mask(mask, image.shape[:2], f"{source} (mask)", allow_empty=allow_empty)
    return image, mask
