"""One-shot segmentation: what Med-PerSAM and its baselines share.

A one-shot method learns from **one** annotated reference image (one mask per structure) and then segments the
same structures in other images with a frozen SAM-family model::

    method = roiprompt.load_method("med_persam")
    method.set_reference(image, {"left_lung": m1, "heart": m2})   # or set_reference(image, mask)
    pred = method.predict(target, structure="heart")              # -> Prediction
    preds = method.predict_all(target)                            # {structure: Prediction}, one encode

This module owns the reference (its embedding, per-structure prototypes and masks in the decoder's frame), the
per-target cache (an image is encoded once however many structures, refinement rounds or passes use it) and
the conversions between the *work frame* and the original pixels. The work frame is the decoder's square,
zero-padded low-resolution grid (``S = backbone.mask_size``, 256 for every SAM-family backbone): similarity
maps, mask estimates, points and boxes are computed there, and the decoder's low-res logits land there.
"""

from __future__ import annotations

import abc
import tempfile
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..data.validate import check_image, check_mask
from ..errors import InputError
from ..models.backbones.base import Backbone, ImageEmbedding
from ..models.cache import EmbeddingCache, image_key
from ..predictor import SamOutput, SamPredictor
from ..prompts.points import mask_prototype, similarity_map
from ..prompts.transforms import Frame, box_from_mask
from ..types import Prediction, Sample
from .base import Method

MaskInput = np.ndarray | Mapping[str, np.ndarray]
DEFAULT_STRUCTURE = "roi"


@dataclass
class Reference:
    """The annotated reference, prepared once by :meth:`OneShotMethod.set_reference`.

    Attributes:
        image: the checked HxW or HxWx3 uint8 image.
        masks: structure -> HxW bool mask at the original resolution.
        frame: the image's model frame.
        work_masks: structure -> (S, S) float mask in the work frame.
        prototypes: structure -> (C,) unit prototype (methods.md §1.3 step 1).
    """

    image: np.ndarray
    masks: dict[str, np.ndarray]
    frame: Frame
    work_masks: dict[str, np.ndarray]
    prototypes: dict[str, torch.Tensor]


@dataclass
class Target:
    """One target image and everything computed about it that several structures or rounds reuse."""

    key: str
    image: np.ndarray
    frame: Frame
    source: str
    _encode: Callable[[], ImageEmbedding]
    _embedding: ImageEmbedding | None = None
    state: dict[str, Any] = field(default_factory=dict)  # method-specific per-image values (e.g. warped masks)

    @property
    def embedding(self) -> ImageEmbedding:
        """The image embedding, encoded on first use only (registration never needs it)."""
        if self._embedding is None:
            self._embedding = self._encode()
        return self._embedding


class OneShotMethod(Method):
    """Base class of the one-shot segmenters (``med_persam``, ``persam``, ``persam_f``, ``registration``).

    Subclasses set ``config_class`` (a :class:`~roiprompt.methods.config.MethodConfig`) and implement
    :meth:`_segment`; they may extend :meth:`_on_reference` (fit something on the reference),
    :meth:`_prepare_target` (per-image work shared by every structure) and :meth:`predict_many` (transductive
    use of the whole target pool). Construction arguments: :class:`~roiprompt.methods.base.Method`.
    """

    def __init__(self, backbone: str | Backbone = "litemedsam", **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        self.predictor = SamPredictor(self.backbone, cache=self.cache)  # encodes each target once
        self.reference: Reference | None = None
        self._target: Target | None = None

    @property
    def work_size(self) -> int:
        """Side ``S`` of the work frame (the decoder's low-res grid)."""
        return self.backbone.mask_size

    @property
    def structures(self) -> list[str]:
        """Names of the reference's structures (["roi"] for a single unnamed mask)."""
        if self.reference is None:
            raise InputError(f"{self.name}: no reference set; call set_reference(image, mask) first")
        return list(self.reference.masks)

    # -- reference ------------------------------------------------------------------------------------------
    def set_reference(self, image: np.ndarray, mask: MaskInput, source: str = "reference",
                      pool: Sequence[np.ndarray] = ()) -> "OneShotMethod":
        """Set the annotated reference: ``mask`` is one HxW mask or ``{structure: mask}`` for several.

        Args:
            image: HxW or HxWx3 uint8 reference image.
            mask: binary mask(s) the size of ``image``, each non-empty.
            source: name used in error messages (e.g. the file name).
            pool: unlabeled target images a method may learn from at reference time (Med-PerSAM's warping model
                uses them as real pairs); ignored by training-free methods.

        Returns:
            self.

        Raises:
            InputError: bad image, a mask of the wrong size, empty, or not binary.
        """
        image = check_image(image, source)
        masks = dict(mask) if isinstance(mask, Mapping) else {DEFAULT_STRUCTURE: mask}
        if not masks:
            raise InputError(f"{source}: no reference mask given")
        masks = {str(k): check_mask(v, image.shape[:2], f"{source} [{k}]") for k, v in masks.items()}
        self.predictor.set_image(image, source=source)
        frame, features = self.predictor.frame, self.predictor.embedding.features[0].float()
        work = {k: self.to_work(frame, m) for k, m in masks.items()}
        prototypes = {k: mask_prototype(features, w) for k, w in work.items()}
        self.reference = Reference(image, masks, frame, work, prototypes)
        self._target = None
        self._on_reference(pool)
        return self

    def fit(self, support: Sequence[Sample], structures: Sequence[str] | None = None) -> "OneShotMethod":
        """One-shot fit: ``support`` must hold exactly one sample; its masks (or ``structures`` of them) are used."""
        if len(support) != 1:
            raise InputError(f"{self.name} is one-shot: fit() takes exactly one reference sample, got {len(support)}")
        sample = support[0]
        names = list(structures or sample.masks)
        missing = [s for s in names if s not in sample.masks]
        if missing:
            raise InputError(f"reference {sample.id}: no mask for {missing}; it has {list(sample.masks)}")
        return self.set_reference(sample.image, {s: sample.masks[s] for s in names},
                                  source=str(sample.meta.get("path", sample.id)))

    def _on_reference(self, pool: Sequence[np.ndarray]) -> None:
        """Optional hook: fit whatever the method learns from the reference (nothing by default)."""

    # -- targets --------------------------------------------------------------------------------------------
    def predict(self, image: np.ndarray, structure: str | None = None, *, source: str = "image",
                **prompts: Any) -> Prediction:
        """Segment ``structure`` (default: the reference's only structure) in ``image``.

        Args:
            image: HxW or HxWx3 uint8 target image.
            structure: one of :attr:`structures` (may be omitted when the reference has one).
            source: name of the image in error messages (e.g. its file name).

        Returns:
            Prediction with ``mask`` (HxW bool), ``scores`` (``iou_pred`` and method-specific quality figures)
            and ``extras`` (the prompts used, for inspection).

        Raises:
            InputError: no reference set, unknown structure, bad image, or an unexpected prompt (one-shot methods
                take no prompt: the reference is the prompt).
        """
        if prompts:
            raise InputError(f"{self.name} takes no prompts (got {sorted(prompts)} for {source}): the reference is "
                             "the prompt")
        structure = self._resolve_structure(structure)
        return self._segment(self._prepare(image, source), structure)

    def predict_all(self, image: np.ndarray, *, source: str = "image") -> dict[str, Prediction]:
        """Every reference structure in ``image`` (``source`` names it in errors), encoding it once."""
        target = self._prepare(image, source)
        return {s: self._segment(target, s) for s in self.structures}

    def predict_many(self, images: Sequence[np.ndarray], sources: Sequence[str] | None = None,
                     progress: Callable[[int, int], None] | None = None) -> list[dict[str, Prediction]]:
        """:meth:`predict_all` over a pool of target images (transductive methods override this); ``sources`` name
        them in errors (default "image <i>"); ``progress(done, total)`` is called after each."""
        sources = list(sources) if sources is not None else [f"image {i}" for i in range(len(images))]
        out = []
        for i, (image, source) in enumerate(zip(images, sources)):
            out.append(self.predict_all(image, source=source))
            if progress:
                progress(i + 1, len(images))
        return out

    @abc.abstractmethod
    def _segment(self, target: Target, structure: str) -> Prediction:
        """Segment one structure of a prepared target (every subclass implements this)."""

    def _resolve_structure(self, structure: str | None) -> str:
        names = self.structures
        if structure is None:
            if len(names) > 1:
                raise InputError(f"the reference has {len(names)} structures {names}; pass structure=... or use "
                                 "predict_all()")
            return names[0]
        if structure not in names:
            raise InputError(f"unknown structure {structure!r}; the reference has {names}")
        return structure

    def _prepare(self, image: np.ndarray, source: str) -> Target:
        """Check the image and return its :class:`Target`, reusing the last one when the pixels are the same."""
        if self.reference is None:
            raise InputError(f"{self.name}: no reference set; call set_reference(image, mask) first")
        image = check_image(image, source)
        key = image_key(image)
        if self._target is not None and self._target.key == key:
            return self._target

        def encode() -> ImageEmbedding:
            self.predictor.set_image(image, source=source)
            return self.predictor.embedding

        target = Target(key, image, Frame(image.shape[:2], self.backbone.input_size), source, encode)
        self._target = target
        self._prepare_target(target)
        return target

    def _prepare_target(self, target: Target) -> None:
        """Optional hook: per-image work shared by all structures (e.g. the warping flow); nothing by default."""

    # -- shared helpers -------------------------------------------------------------------------------------
    def to_work(self, frame: Frame, mask: np.ndarray) -> np.ndarray:
        """HxW mask (bool or soft) at the original resolution -> (S, S) float32 in the work frame."""
        return frame.mask_to_model(mask, size=self.work_size)[0, 0].numpy()

    def similarity(self, target: Target, structure: str) -> np.ndarray:
        """(S, S) cosine similarity of the reference prototype of ``structure`` to the target embedding."""
        cache = target.state.setdefault("similarity", {})
        if structure not in cache:
            cache[structure] = similarity_map(self.reference.prototypes[structure],
                                              target.embedding.features[0], self.work_size)
        return cache[structure]

    def decode(self, target: Target, points: np.ndarray | None = None, labels: np.ndarray | None = None,
               box: np.ndarray | None = None, mask_logits: np.ndarray | None = None,
               multimask: bool = True) -> SamOutput:
        """Run the decoder on ``target`` with prompts in **work-frame** pixels (converted here)."""
        scale = self.backbone.input_size / self.work_size
        frame = target.frame
        if not (self.predictor.is_image_set and self.predictor.embedding is target.embedding):  # another image
            self.predictor.set_embedding(target.embedding, frame.orig_hw)
        pts = frame.points_to_original(np.asarray(points) * scale) if points is not None else None
        orig_box = frame.points_to_original(np.asarray(box).reshape(2, 2) * scale).reshape(4) if box is not None \
            else None
        return self.predictor.predict(points=pts, point_labels=labels, box=orig_box, mask_input=mask_logits,
                                      multimask=multimask)

    def work_box(self, mask: np.ndarray, pad: float, valid_hw: tuple[int, int]) -> np.ndarray:
        """Padded XYXY box of a (S, S) work-frame mask (binarised at 0.5), clipped to the valid content."""
        box = box_from_mask(mask > 0.5, pad)
        h, w = valid_hw
        return np.array([box[0], box[1], min(box[2], float(w)), min(box[3], float(h))])

    def _scratch_cache(self) -> tempfile.TemporaryDirectory | None:
        """A temporary on-disk embedding cache when none is configured, so a second pass never re-encodes."""
        if self.predictor.cache is not None:
            return None
        tmp = tempfile.TemporaryDirectory(prefix="roiprompt-emb-")
        self.predictor.cache = EmbeddingCache(tmp.name)
        return tmp


def config_fields(method_name: str) -> set[str]:
    """Config field names of a one-shot method (e.g. to pass ``seed`` only where it exists)."""
    from .base import method_class

    return {f.name for f in fields(method_class(method_name).config_class)}


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))

