"""Annotated references of the one-shot methods: the prepared :class:`Reference`, the two call forms of
``set_reference`` and the choice of references (nearest, medoids)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..models.backbones.base import ImageEmbedding
from ..prompts.transforms import Frame

MaskInput = np.ndarray | Mapping[str, np.ndarray]
_REFERENCE_IDS = itertools.count()


@dataclass
class Reference:
    """One annotated reference image, prepared once by :meth:`OneShotMethod.set_reference` / ``add_reference``.

    Attributes:
        image: the checked HxW or HxWx3 uint8 image.
        masks: structure -> HxW bool mask at the original resolution.
        frame: the image's model frame.
        work_masks: structure -> (S, S) float mask in the work frame.
        prototypes: structure -> (C,) unit prototype (methods.md §1.3 step 1).
        source: the image's name in messages (e.g. its file name).
        descriptor: (C,) unit mean of the image's encoder tokens, for "nearest reference" choices.
        embedding: the image's embedding (kept: methods that learn from the reference reuse it).
    """

    image: np.ndarray
    masks: dict[str, np.ndarray]
    frame: Frame
    work_masks: dict[str, np.ndarray]
    prototypes: dict[str, torch.Tensor]
    source: str = "reference"
    descriptor: torch.Tensor | None = None
    embedding: ImageEmbedding | None = None
    uid: int = field(default_factory=lambda: next(_REFERENCE_IDS))  # keys per-reference fits (never reused)


def reference_pairs(image: Any, mask: MaskInput | None, source: str | Sequence[str]
                     ) -> tuple[list[tuple[np.ndarray, MaskInput]], list[str]]:
    """Normalise set_reference's two call forms to (pairs, sources)."""
    if isinstance(image, np.ndarray):
        if mask is None:
            raise InputError(f"{source}: set_reference(image, mask) needs a mask")
        return [(image, mask)], [str(source)]
    pairs = list(image)
    if mask is not None:
        raise InputError("set_reference([(image, mask), ...]) takes the masks inside the pairs, not as mask=")
    if not pairs:
        raise InputError("set_reference: no reference given")
    if isinstance(source, str):
        sources = [source] if len(pairs) == 1 else [f"{source} {i}" for i in range(len(pairs))]
    else:
        sources = [str(s) for s in source]
    if len(sources) != len(pairs):
        raise InputError(f"set_reference: {len(pairs)} references but {len(sources)} source names")
    for pair, src in zip(pairs, sources):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise InputError(f"{src}: each reference must be an (image, mask) pair")
    return [(p[0], p[1]) for p in pairs], sources


def image_descriptor(features: torch.Tensor, frame: Frame) -> torch.Tensor:
    """(C,) unit mean of a (C, h, w) embedding's tokens over the image's valid (unpadded) region."""
    h, w = frame.valid_region(features.shape[-1])
    return F.normalize(features[:, :h, :w].mean(dim=(1, 2)), dim=0)


def k_medoids(distance: torch.Tensor, k: int, sweeps: int = 10) -> list[int]:
    """k medoids of an (n, n) distance matrix: greedy build (each step adds the point that lowers the total
    distance to the nearest medoid most), then swaps until none helps. Returns the indices, most central first."""
    n = distance.shape[0]
    chosen = [int(distance.sum(1).argmin())]
    while len(chosen) < k:
        nearest = distance[:, chosen].min(1).values
        gains = (nearest[None, :] - distance).clamp_min(0).sum(1)
        gains[chosen] = -1
        chosen.append(int(gains.argmax()))
    cost = distance[:, chosen].min(1).values.sum()
    for _ in range(sweeps):
        improved = False
        for i in range(k):
            for j in range(n):
                if j in chosen:
                    continue
                trial = chosen[:i] + [j] + chosen[i + 1:]
                c = distance[:, trial].min(1).values.sum()
                if c < cost - 1e-9:
                    chosen, cost, improved = trial, c, True
        if not improved:
            break
    return sorted(chosen, key=lambda i: float(distance[i].sum()))


def references_state(references: Sequence[Reference], pool: Sequence[np.ndarray]
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The saved form of a one-shot method's references (``Method.save``): JSON (structures, sources) and tensors
    (each image, its masks, prototypes and descriptor; the pool images)."""
    structures = list(references[0].masks)
    tensors: dict[str, Any] = {f"pool.{j}": p for j, p in enumerate(pool)}
    for i, ref in enumerate(references):
        tensors[f"reference.{i}.image"] = ref.image
        tensors[f"reference.{i}.descriptor"] = ref.descriptor
        for k, s in enumerate(structures):
            tensors[f"reference.{i}.mask.{k}"] = ref.masks[s]
            tensors[f"reference.{i}.prototype.{k}"] = ref.prototypes[s]
    meta = {"structures": structures, "sources": [r.source for r in references], "pool": len(pool)}
    return meta, tensors


def saved_references(meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> list[dict[str, Any]]:
    """Inverse of :func:`references_state`: per reference ``{image, masks, source, prototypes, descriptor}``."""
    structures = list(meta["structures"])
    return [{"image": tensors[f"reference.{i}.image"].numpy(), "source": str(source),
             "masks": {s: tensors[f"reference.{i}.mask.{k}"].numpy() for k, s in enumerate(structures)},
             "prototypes": {s: tensors[f"reference.{i}.prototype.{k}"] for k, s in enumerate(structures)},
             "descriptor": tensors[f"reference.{i}.descriptor"]}
            for i, source in enumerate(meta["sources"])]
