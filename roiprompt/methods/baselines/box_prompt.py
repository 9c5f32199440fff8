"""``box_prompt``: a SAM-family model given a bounding box of the structure.

With the ground-truth box (padded by 5 % of its width/height per side, methods.md §5) this is the oracle upper
bound every one-shot method is compared with; it is never a competitor. Given a user's box it is plain
box-prompted segmentation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np

from ...engine.cache import EmbeddingCache, image_key
from ...errors import InputError
from ...models.backbones.base import Backbone, load_backbone
from ...predictor import SamPredictor
from ...prompts.transforms import box_from_mask
from ...types import Prediction, Sample
from ..base import Method, register_method


@dataclass(frozen=True)
class BoxPromptConfig:
    """Settings of :class:`BoxPrompt`.

    Attributes:
        box_pad: fraction of the box width/height added per side to ground-truth boxes (oracle prompts).
        multimask: ask SAM for 3 masks and keep the one with the highest predicted IoU (False: single output).
        weights: local checkpoint for the backbone (None: the offline default).
        cache_dir: on-disk embedding cache directory (None: no disk cache).
    """

    box_pad: float = 0.05
    multimask: bool = False
    weights: str | None = None
    cache_dir: str | None = None


@register_method("box_prompt")
class BoxPrompt(Method):
    """SAM-family segmentation from a box (oracle with ground-truth boxes).

    Example:
        >>> method = roiprompt.load_method("box_prompt")
        >>> pred = method.predict(image, box=[30, 40, 120, 160])
        >>> pred.mask.shape == image.shape[:2], pred.scores["iou_pred"]
    """

    task = "segmentation"

    def __init__(self, backbone: str | Backbone = "litemedsam", **config: Any) -> None:
        known = {f.name for f in fields(BoxPromptConfig)}
        if unknown := sorted(set(config) - known):
            raise InputError(f"box_prompt: unknown config {unknown}; known: {sorted(known)}")
        self.config = BoxPromptConfig(**config)
        if isinstance(backbone, str):
            backbone = load_backbone(backbone, weights=self.config.weights)
        cache = EmbeddingCache(self.config.cache_dir) if self.config.cache_dir else None
        self.predictor = SamPredictor(backbone, cache=cache)
        self._image_key: str | None = None

    def fit(self, support: Sequence[Sample] = ()) -> "BoxPrompt":
        """Training-free: nothing to learn."""
        return self

    def prompts_from_truth(self, sample: Sample, structure: str | None = None) -> dict[str, Any]:
        return {"box": box_from_mask(sample.mask(structure), self.config.box_pad)}

    def setting(self) -> dict[str, Any]:
        return {"prompt": "ground-truth box", **super().setting()}

    def predict(self, image: np.ndarray, box: Sequence[float] | None = None, **prompts: Any) -> Prediction:
        """Segment the structure inside ``box`` (XYXY pixels of ``image``).

        Points (``points``, ``point_labels``) may be added; the image is encoded only once when the same array
        is predicted several times in a row (e.g. one box per structure).

        Raises:
            InputError: no box given, bad image, or bad prompt.
        """
        if box is None:
            raise InputError("box_prompt needs box=(x0, y0, x1, y1) in pixels of the image")
        if unknown := sorted(set(prompts) - {"points", "point_labels", "source"}):
            raise InputError(f"box_prompt: unknown prompts {unknown}; give box=, points=, point_labels=")
        # Same pixels as the last call -> reuse its embedding (one encode for several structures). Hashing
        # costs ~1 ms against ~0.5 s for the encoder; an id() check could be fooled by a recycled array.
        key = image_key(np.asarray(image))
        if key != self._image_key or not self.predictor.is_image_set:
            self.predictor.set_image(image, source=prompts.get("source", "image"))
            self._image_key = key
        out = self.predictor.predict(points=prompts.get("points"), point_labels=prompts.get("point_labels"),
                                     box=np.asarray(box, dtype=np.float64), multimask=self.config.multimask)
        mask, iou, low_res = out.best()
        return Prediction(mask=mask, scores={"iou_pred": iou}, extras={"box": np.asarray(box, dtype=float),
                                                                        "low_res_logits": low_res})
