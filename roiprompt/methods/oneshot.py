"""One-shot segmentation: what Med-PerSAM, ``med_persam_plus`` and the baselines share.

A one-shot method learns from **one** annotated reference image (one mask per structure), or from k of them, and
then segments the same structures in other images with a frozen SAM-family model::

    method = roiprompt.load_method("med_persam_plus")
    method.set_reference(image, {"left_lung": m1, "heart": m2})   # or set_reference(image, mask)
    method.add_reference(image2, {"left_lung": n1, "heart": n2})  # k-shot; or set_reference([(img, masks), ...])
    pred = method.predict(target, structure="heart")              # -> Prediction
    preds = method.predict_all(target)                            # {structure: Prediction}, one encode
    picks = method.suggest_references(images, k=3)                # which images to annotate (medoids)

This module owns the references (each one's embedding, per-structure prototypes and masks in the decoder's
frame; the prototype of a structure is the mean over references), the per-target cache (an image is encoded once
however many structures, candidates or rounds use it) and the conversions between the *work frame* and the
original pixels. The work frame is the decoder's square, zero-padded low-resolution grid (``S =
backbone.mask_size``, 256 for every SAM-family backbone): similarity maps, mask estimates, points and boxes are
computed there, and the decoder's low-res logits land there.

A prediction depends only on the references and the settings: unlabeled images are used only when given
explicitly (``pool=`` at :meth:`OneShotMethod.set_reference`, recorded in ``setting()``), never taken from the
batch being predicted.
"""

from __future__ import annotations

import abc
import tempfile
import warnings
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.validate import check_image, check_mask
from ..errors import InputError, PromptWarning
from ..models.backbones.base import Backbone, ImageEmbedding
from ..models.cache import EmbeddingCache, image_key
from ..predictor import SamOutput, SamPredictor
from ..prompts.points import mask_prototype, similarity_map
from ..prompts.transforms import Frame, box_from_mask
from ..types import Prediction, Sample
from .base import Method
from .references import (MaskInput, Reference, image_descriptor, k_medoids, reference_pairs, references_state,
                         saved_references)

#: The one-shot method used when none is named (``roiprompt oneshot``, the classifiers' one-shot mask source):
#: it beats ``med_persam`` on every benchmarked structure (``benchmarks/RESULTS.md``).
DEFAULT_ONESHOT_METHOD = "med_persam_plus"
DEFAULT_STRUCTURE = "roi"


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
    """Base class of the one-shot segmenters (``med_persam_plus``, ``med_persam``, ``persam``, ``persam_f``,
    ``registration``).

    Subclasses set ``config_class`` (a :class:`~roiprompt.methods.config.MethodConfig`) and implement
    :meth:`_segment`; they may extend :meth:`_on_reference` (fit something on the references),
    :meth:`_prepare_target` (per-image work shared by every structure) and :meth:`predict_many` (transductive
    use of the whole target pool). Construction arguments: :class:`~roiprompt.methods.base.Method`.
    """

    def __init__(self, backbone: str | Backbone = "litemedsam", **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        self.predictor = SamPredictor(self.backbone, cache=self.cache)  # encodes each target once
        self.references: list[Reference] = []
        self.pool: list[np.ndarray] = []  # unlabeled images given explicitly at set_reference (recorded)
        self._target: Target | None = None

    @property
    def work_size(self) -> int:
        """Side ``S`` of the work frame (the decoder's low-res grid)."""
        return self.backbone.mask_size

    @property
    def structures(self) -> list[str]:
        """Names of the references' structures (["roi"] for a single unnamed mask)."""
        return list(self._first_reference().masks)

    def _first_reference(self) -> Reference:
        if not self.references:
            raise InputError(f"{self.name}: no reference set; call set_reference(image, mask) first")
        return self.references[0]

    # -- references -----------------------------------------------------------------------------------------
    def set_reference(self, image: np.ndarray | Sequence[tuple[np.ndarray, MaskInput]], mask: MaskInput | None = None,
                      source: str | Sequence[str] = "reference", pool: Sequence[np.ndarray] = ()) -> "OneShotMethod":
        """Set the annotated reference(s), replacing any set before.

        ``set_reference(image, mask)`` sets one reference; ``mask`` is one HxW mask or ``{structure: mask}``.
        ``set_reference([(image1, masks1), (image2, masks2), ...])`` sets k references at once (k-shot); every one
        must annotate the same structures.

        Args:
            image: HxW or HxWx3 uint8 reference image, or a list of ``(image, mask)`` pairs.
            mask: binary mask(s) the size of ``image``, each non-empty (omitted with a list of pairs).
            source: name used in error messages (e.g. the file name); one per pair for a list.
            pool: unlabeled images a method may learn from at reference time (Med-PerSAM's warping model uses
                them as real pairs); an explicit, recorded choice (``setting()["pool"]``), never taken from the
                images later predicted, so a target's mask does not depend on the batch it is in. Training-free
                methods ignore it.

        Returns:
            self.

        Raises:
            InputError: bad image, a mask of the wrong size, empty, or not binary; references with different
                structure sets. Each message names the image.
        """
        pairs, sources = reference_pairs(image, mask, source)
        references = []
        for (img, msk), src in zip(pairs, sources):
            references.append(self._prepare_reference(img, msk, src, references[0] if references else None))
        self.references = references
        self.pool = [check_image(p, f"pool image {i}") for i, p in enumerate(pool)]
        self._target = None
        self._on_reference()
        return self

    def add_reference(self, image: np.ndarray, mask: MaskInput, source: str | None = None) -> "OneShotMethod":
        """Add one more annotated image to the references without refitting the others (e.g. a corrected
        failure). ``mask`` must annotate the same structures as the first reference. Returns self."""
        source = source or f"reference {len(self.references)}"
        first = self.references[0] if self.references else None
        self.references.append(self._prepare_reference(image, mask, source, first))
        self._target = None
        self._on_reference()
        return self

    def _prepare_reference(self, image: np.ndarray, mask: MaskInput, source: str,
                           first: Reference | None) -> Reference:
        image = check_image(image, source)
        masks = dict(mask) if isinstance(mask, Mapping) else {DEFAULT_STRUCTURE: mask}
        if not masks:
            raise InputError(f"{source}: no reference mask given")
        if first is not None and set(map(str, masks)) != set(first.masks):
            raise InputError(f"{source}: the reference annotates {sorted(map(str, masks))}, but {first.source} "
                             f"annotates {sorted(first.masks)}; every reference needs the same structures")
        order = list(first.masks) if first is not None else list(map(str, masks))
        masks = {k: check_mask(masks[k], image.shape[:2], f"{source} [{k}]") for k in order}
        self.predictor.set_image(image, source=source)
        frame, features = self.predictor.frame, self.predictor.embedding.features[0].float()
        work = {k: self.to_work(frame, m) for k, m in masks.items()}
        prototypes = {k: mask_prototype(features, w) for k, w in work.items()}
        return Reference(image, masks, frame, work, prototypes, source, image_descriptor(features, frame),
                         self.predictor.embedding)

    def prototype(self, structure: str) -> torch.Tensor:
        """(C,) unit prototype of ``structure``: the normalised mean of the references' prototypes."""
        stacked = torch.stack([r.prototypes[structure] for r in self.references])
        return F.normalize(stacked.mean(0), dim=0)

    def nearest_reference(self, target: "Target") -> int:
        """Index of the reference closest to ``target`` in feature space (cosine of mean encoder tokens)."""
        if len(self.references) == 1:
            return 0
        descriptor = image_descriptor(target.embedding.features[0].float(), target.frame)
        return int(torch.stack([r.descriptor for r in self.references]).matmul(descriptor).argmax())

    def suggest_references(self, images: Sequence[np.ndarray], k: int = 1,
                           sources: Sequence[str] | None = None) -> list[int]:
        """Indices of ``k`` representative images to annotate: feature-space medoids of ``images``.

        Each image is encoded once (the embedding cache is used), summarised by the mean of its encoder tokens,
        and k-medoids on cosine distance picks the k images that best cover the set (greedy start, then swaps).

        Args:
            images: the pool to choose from (HxW or HxWx3 uint8).
            k: how many references to suggest (1 <= k <= len(images)).
            sources: names of the images in errors.

        Returns:
            k indices into ``images``, the most central first.
        """
        if not 1 <= k <= len(images):
            raise InputError(f"suggest_references: k must be between 1 and {len(images)} (the pool size), got {k}")
        sources = list(sources) if sources is not None else [f"image {i}" for i in range(len(images))]
        descriptors = []
        for image, source in zip(images, sources):
            image = check_image(image, source)
            self.predictor.set_image(image, source=source)
            descriptors.append(image_descriptor(self.predictor.embedding.features[0].float(), self.predictor.frame))
        return k_medoids(1.0 - torch.stack(descriptors) @ torch.stack(descriptors).T, k)

    def fit(self, support: Sequence[Sample], structures: Sequence[str] | None = None) -> "OneShotMethod":
        """Fit on annotated samples (k >= 1 references): their masks (or ``structures`` of them) are used."""
        if not support:
            raise InputError(f"{self.name}: fit() needs at least one reference sample")
        names = list(structures or support[0].masks)
        pairs, sources = [], []
        for sample in support:
            if missing := [s for s in names if s not in sample.masks]:
                raise InputError(f"reference {sample.id}: no mask for {missing}; it has {list(sample.masks)}")
            pairs.append((sample.image, {s: sample.masks[s] for s in names}))
            sources.append(str(sample.meta.get("path", sample.id)))
        return self.set_reference(pairs, source=sources)

    def _on_reference(self) -> None:
        """Optional hook, called whenever the references change: fit whatever the method learns from them
        (``self.references``, ``self.pool``). Nothing by default."""

    def setting(self) -> dict[str, Any]:
        return {**super().setting(), "references": len(self.references), "pool": len(self.pool)}

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        self._first_reference()  # nothing to save before set_reference
        return references_state(self.references, self.pool)

    def _restore_fitted_state(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """The references as ``set_reference`` prepared them (re-encoded; the saved prototypes and descriptors
        kept); subclasses then restore what they fit, instead of :meth:`_on_reference` refitting it."""
        self.references = []
        for saved in saved_references(meta, tensors):
            ref = self._prepare_reference(saved["image"], saved["masks"], saved["source"],
                                          self.references[0] if self.references else None)
            ref.prototypes, ref.descriptor = saved["prototypes"], saved["descriptor"]
            self.references.append(ref)
        self.pool = [tensors[f"pool.{j}"].numpy() for j in range(meta["pool"])]
        self._target = None

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
        self._first_reference()
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
            cache[structure] = similarity_map(self.prototype(structure),
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
        with warnings.catch_warnings():  # a method's own prompts and empty candidates are not the user's doing
            warnings.simplefilter("ignore", PromptWarning)
            return self.predictor.predict(points=pts, point_labels=labels, box=orig_box, mask_input=mask_logits,
                                          multimask=multimask)

    def decode_low_res(self, target: Target, box: np.ndarray | None = None, mask_logits: np.ndarray | None = None,
                       points: np.ndarray | None = None, labels: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Single-mask decode with **work-frame** prompts, answered in the work frame only: ((S, S) low-res logits,
        predicted IoU). Cheaper than :meth:`decode` when many candidates are tried and one is kept (the upsampling
        to the original resolution is skipped; :meth:`to_original` does it for the one kept)."""
        scale = self.backbone.input_size / self.work_size
        as_tensor = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float32))  # noqa: E731
        boxes = as_tensor(box).reshape(1, 4) * scale if box is not None else None
        pts = as_tensor(points)[None] * scale if points is not None else None
        lab = torch.as_tensor(np.asarray(labels), dtype=torch.int64)[None] if labels is not None else None
        dense = as_tensor(mask_logits).reshape(1, 1, self.work_size, self.work_size) if mask_logits is not None \
            else None
        with torch.inference_mode():
            low, iou = self.backbone.decode(target.embedding, pts, lab, boxes, dense, multimask=False)
        return low[0, 0].float().numpy(), float(iou[0, 0])

    def to_original(self, target: Target, logits: np.ndarray) -> np.ndarray:
        """(S, S) work-frame logits -> HxW bool mask of the target's original pixels."""
        with torch.inference_mode():
            up = target.frame.logits_to_original(torch.as_tensor(logits, dtype=torch.float32)[None, None])
        return up[0, 0].numpy() > 0

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

