"""On-disk cache of image embeddings, so a benchmark or a fit encodes each image once.

Key = (SHA-256 of the image array's bytes, shape and dtype; backbone name; backbone weights SHA-256; view id).
Files are plain tensor dicts written with ``torch.save`` and read back with ``weights_only=True``.

The one load-or-encode path is :func:`encode_cached` (one image, the backbone's own preprocessing), built on
:func:`load_or_compute` (any named views of one image, the missing ones computed in one batch), which every
method and the predictor use, so hits, misses and stores follow one rule everywhere.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..files import atomic_path
from .backbones.base import Backbone, ImageEmbedding

#: Bump when preprocessing changes so stale embeddings are never reused.
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$ROIPROMPT_CACHE`` or ``~/.cache/roiprompt/embeddings``."""
    return Path(os.environ.get("ROIPROMPT_CACHE", Path.home() / ".cache" / "roiprompt" / "embeddings"))


def image_key(image: np.ndarray) -> str:
    """SHA-256 of an image array (bytes + shape + dtype), so equal pixels give equal keys whatever the file."""
    digest = hashlib.sha256()
    digest.update(f"{image.shape}|{image.dtype}|".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


class EmbeddingCache:
    """Directory of cached :class:`ImageEmbedding` files for one backbone.

    Args:
        root: cache directory (created on first write); defaults to :func:`default_cache_dir`.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def path_for(self, image: np.ndarray, backbone: Backbone, view: str = "orig") -> Path:
        """File of the entry of (``image``'s pixels, ``backbone``'s name and weights, ``view``)."""
        weights = (backbone.weights_sha256 or "random")[:16]
        key = hashlib.sha256(f"{image_key(image)}|{backbone.name}|{weights}|{view}|v{CACHE_VERSION}"
                             .encode()).hexdigest()
        return self.root / backbone.name / key[:2] / f"{key}.pt"

    def load(self, image: np.ndarray, backbone: Backbone, view: str = "orig") -> ImageEmbedding | None:
        """The cached embedding, or None on a miss (absent, half-written or corrupt entry)."""
        path = self.path_for(image, backbone, view)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a half-written or corrupt entry is a miss, never a crash
            self.misses += 1
            return None
        self.hits += 1
        return ImageEmbedding(data["features"], {k[6:]: v for k, v in data.items() if k.startswith("extra.")})

    def store(self, image: np.ndarray, backbone: Backbone, embedding: ImageEmbedding, view: str = "orig") -> None:
        """Write ``embedding`` (moved to the CPU) atomically under its key."""
        path = self.path_for(image, backbone, view)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"features": embedding.features.detach().cpu().contiguous()}
        data.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in embedding.extra.items()})
        with atomic_path(path) as tmp:  # concurrent readers never see a partial file
            torch.save(data, tmp)


def load_or_compute(cache: EmbeddingCache | None, image: np.ndarray, backbone: Backbone, views: Sequence[str],
                    compute: Callable[[list[str]], Sequence[ImageEmbedding]]) -> list[ImageEmbedding]:
    """The embeddings of ``views`` of one image: read from ``cache`` where present, the others computed by one
    ``compute(missing_views)`` call (so a caller can batch them) and stored.

    Args:
        cache: the disk cache, or None (everything is computed, nothing stored).
        image: the image the views are keyed by (its pixels, not a file name).
        backbone: the backbone whose name and weights key the entries.
        views: view ids, e.g. ["orig"] or per-augmentation tags.
        compute: returns one :class:`ImageEmbedding` per missing view, in order.

    Returns:
        One embedding per entry of ``views``, in order.
    """
    found: dict[str, ImageEmbedding] = {}
    if cache is not None:
        for view in views:
            if (hit := cache.load(image, backbone, view)) is not None:
                found[view] = hit
    missing = list(dict.fromkeys(v for v in views if v not in found))
    if missing:
        computed = list(compute(missing))
        if len(computed) != len(missing):
            raise ValueError(f"compute returned {len(computed)} embeddings for {len(missing)} views")
        for view, embedding in zip(missing, computed):
            found[view] = embedding
            if cache is not None:
                cache.store(image, backbone, embedding, view)
    return [found[v] for v in views]


def encode_cached(backbone: Backbone, image: np.ndarray, cache: EmbeddingCache | None = None,
                  view: str = "orig") -> tuple[ImageEmbedding, bool]:
    """Embedding of one image: ``cache``'s entry when present, else ``backbone.encode_image(preprocess(image))``
    (without autograd), stored in ``cache``.

    The image is not validated here: callers check it first (``check_image``) so errors name their source.

    Args:
        backbone: the image encoder.
        image: HxW or HxWx3 uint8 image, already checked.
        cache: the disk cache, or None.
        view: the entry's view id ("orig", the default, is the entry every method and the predictor share).

    Returns:
        (embedding of batch 1, whether the encoder ran).
    """
    encoded: list[bool] = []

    def encode(_: list[str]) -> list[ImageEmbedding]:
        with torch.no_grad():
            embedding = backbone.encode_image(backbone.preprocess(image))
        encoded.append(True)
        return [embedding]

    return load_or_compute(cache, image, backbone, [view], encode)[0], bool(encoded)
