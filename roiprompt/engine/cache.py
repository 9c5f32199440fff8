"""On-disk cache of image embeddings, so a benchmark or a fit encodes each image once.

Key = (SHA-256 of the image array's bytes, shape and dtype; backbone name; backbone weights SHA-256; view id).
Files are plain tensor dicts written with ``torch.save`` and read back with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from ..models.backbones.base import Backbone, ImageEmbedding

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
        weights = (backbone.weights_sha256 or "random")[:16]
        key = hashlib.sha256(f"{image_key(image)}|{backbone.name}|{weights}|{view}|v{CACHE_VERSION}"
                             .encode()).hexdigest()
        return self.root / backbone.name / key[:2] / f"{key}.pt"

    def load(self, image: np.ndarray, backbone: Backbone, view: str = "orig") -> ImageEmbedding | None:
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
        path = self.path_for(image, backbone, view)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"features": embedding.features.detach().cpu().contiguous()}
        data.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in embedding.extra.items()})
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(data, tmp)
        tmp.replace(path)  # atomic: concurrent readers never see a partial file
