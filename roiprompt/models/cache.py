"""On-disk cache of image embeddings, so a benchmark or a fit encodes each image once.

Key = (SHA-256 of the image array's bytes, shape and dtype; backbone name; backbone weights SHA-256; view id).
Files are plain tensor dicts written with ``torch.save`` and read back with ``weights_only=True``. An entry that
cannot be read, or that is not what the backbone produces (no ``features``, non-tensor values, the wrong shapes or
dtype), is logged once, deleted and recomputed: a bad entry never fails a run, and never outlives one.

The one load-or-encode path is :func:`encode_cached` (one image, the backbone's own preprocessing), built on
:func:`load_or_compute` (any named views of one image, the missing ones computed in one batch), which every
method and the predictor use, so hits, misses and stores follow one rule everywhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import CheckpointError
from ..files import atomic_path
from .backbones.base import Backbone, ImageEmbedding
from .weights import torch_load_safely

logger = logging.getLogger(__name__)

#: Bump when preprocessing changes so stale embeddings are never reused.
CACHE_VERSION = 1
#: The view whose entry is ``encode_image``'s own output, so it is checked against the backbone's embedding shapes
#: (other views hold whatever their method derived: pooled tokens, hidden states...).
ENCODER_VIEW = "orig"


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

    def path_for(self, image: np.ndarray, backbone: Backbone, view: str = ENCODER_VIEW) -> Path:
        """File of the entry of (``image``'s pixels, ``backbone``'s name and weights, ``view``)."""
        weights = (backbone.weights_sha256 or "random")[:16]
        key = hashlib.sha256(f"{image_key(image)}|{backbone.name}|{weights}|{view}|v{CACHE_VERSION}"
                             .encode()).hexdigest()
        return self.root / backbone.name / key[:2] / f"{key}.pt"

    def load(self, image: np.ndarray, backbone: Backbone, view: str = ENCODER_VIEW) -> ImageEmbedding | None:
        """The cached embedding, or None on a miss.

        An absent entry is a plain miss. An unreadable or inconsistent one (see :func:`entry_problem`) is a miss
        too, logged as a warning and deleted, so the caller's recomputed embedding replaces it.
        """
        path = self.path_for(image, backbone, view)
        try:
            before = path.stat()
        except FileNotFoundError:
            self.misses += 1
            return None
        try:
            data = torch_load_safely(path, what="the entry")
            problem = entry_problem(data, backbone, view)
        except CheckpointError as err:  # the message names the file
            problem = str(err).removeprefix(f"{path}: ")
        if problem is not None:
            self._discard(path, before, problem)
            self.misses += 1
            return None
        self.hits += 1
        return ImageEmbedding(data["features"], {k[6:]: v for k, v in data.items() if k.startswith("extra.")})

    @staticmethod
    def _discard(path: Path, before: os.stat_result, problem: str) -> None:
        """Log and delete a bad entry (unless another process has already replaced it: never delete a good one)."""
        try:
            now = path.stat()
            if (now.st_ino, now.st_mtime_ns) == (before.st_ino, before.st_mtime_ns):
                path.unlink()
        except FileNotFoundError:
            pass  # another process deleted it first
        except OSError as err:  # e.g. a read-only cache: the entry stays, and is recomputed on every lookup
            logger.warning("embedding cache entry %s: %s; it could not be deleted (%s), so it is recomputed", path,
                           problem, err)
            return
        logger.warning("embedding cache entry %s: %s; deleted, it is recomputed and stored again", path, problem)

    def store(self, image: np.ndarray, backbone: Backbone, embedding: ImageEmbedding, view: str = ENCODER_VIEW) -> None:
        """Write ``embedding`` (moved to the CPU) atomically under its key."""
        path = self.path_for(image, backbone, view)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"features": embedding.features.detach().cpu().contiguous()}
        data.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in embedding.extra.items()})
        with atomic_path(path) as tmp:  # concurrent readers never see a partial file
            torch.save(data, tmp)


def entry_problem(data: object, backbone: Backbone, view: str) -> str | None:
    """Why a loaded cache entry is not an embedding ``backbone`` produces for ``view``, or None when it is one.

    Every entry must be a dict of tensors with floating-point ``features``. The :data:`ENCODER_VIEW` entry must
    also have exactly the shapes (batch 1) and dtype of the backbone's ``encode_image`` output, when the backbone
    declares them (:attr:`Backbone.embedding_shapes`).
    """
    if not isinstance(data, dict):
        return f"a {type(data).__name__}, not a dict of tensors"
    if not isinstance(data.get("features"), torch.Tensor):
        return "no 'features' tensor"
    if bad := sorted(str(k) for k, v in data.items() if not isinstance(v, torch.Tensor)):
        return f"non-tensor values under {bad}"
    if not data["features"].is_floating_point():
        return f"features of dtype {data['features'].dtype}"
    shapes = getattr(backbone, "embedding_shapes", None) if view == ENCODER_VIEW else None
    if shapes is None:
        return None
    expected = {("features" if k == "features" else f"extra.{k}"): (1, *shape) for k, shape in shapes.items()}
    found = {k: tuple(v.shape) for k, v in data.items()}
    if found != expected:
        return f"shapes {found}, but {backbone.name} produces {expected}"
    dtype = getattr(backbone, "embedding_dtype", torch.float32)
    if bad := sorted(k for k, v in data.items() if v.dtype != dtype):
        return f"{', '.join(f'{k} in {data[k].dtype}' for k in bad)}, but {backbone.name} produces {dtype}"
    return None


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
                  view: str = ENCODER_VIEW) -> tuple[ImageEmbedding, bool]:
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
