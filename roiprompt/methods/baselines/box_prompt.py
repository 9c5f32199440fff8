"""``box_prompt``: a SAM-family model given a bounding box of the structure.

With ground-truth boxes (padded by 5 % of their width/height per side, methods.md §5) this is the oracle upper
bound every one-shot method is compared with; it is never a competitor. The oracle gives one box per connected
component of the ground truth (components under 5 % of the mask's area are dropped), since one box around two
polyps far apart is a poor prompt (on 30 Kvasir-SEG images: Dice 0.967 per component vs 0.927 with one box).
Given a user's box (or several) it is plain box-prompted segmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ...errors import InputError
from ...models.backbones.base import Backbone
from ...models.cache import image_key
from ...predictor import SamPredictor
from ...prompts.transforms import box_from_mask, component_boxes
from ...types import Prediction, Sample
from ..base import Method, register_method
from ..config import MethodConfig, check_number


@dataclass(frozen=True)
class BoxPromptConfig(MethodConfig):
    """Settings of :class:`BoxPrompt`.

    Attributes:
        box_pad: fraction of the box width/height added per side to ground-truth boxes (oracle prompts).
        per_component: oracle prompts give one box per connected component instead of one around the mask.
        multimask: ask SAM for 3 masks and keep the one with the highest predicted IoU (False: single output).
    """

    box_pad: float = 0.05
    per_component: bool = True
    multimask: bool = False

    def validate(self) -> None:
        super().validate()
        check_number("box_pad", self.box_pad, 0.0)


@register_method(
    "box_prompt", task="segmentation", family="sam", role="baseline", trains=False,
    paper="oracle box (methods.md §5)",
)
class BoxPrompt(Method):
    """SAM-family segmentation from a box (oracle with ground-truth boxes).

    Example:
        >>> method = roiprompt.load_method("box_prompt")
        >>> pred = method.predict(image, box=[30, 40, 120, 160])
        >>> pred.mask.shape == image.shape[:2], pred.scores["iou_pred"]
    """

    config_class = BoxPromptConfig

    def __init__(self, backbone: str | Backbone = "litemedsam", **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        self.predictor = SamPredictor(self.backbone, cache=self.cache)
        self._image_key: str | None = None

    def fit(self, support: Sequence[Sample] = ()) -> "BoxPrompt":
        """Training-free: nothing to learn."""
        return self

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {}  # training-free: the config is all there is (e.g. a saved classifier's segmenter)

    def _restore_fitted_state(self, meta: dict[str, Any], tensors: dict[str, Any]) -> None:
        pass

    def prompts_from_truth(self, sample: Sample, structure: str | None = None) -> dict[str, Any]:
        mask = sample.mask(structure)
        if self.config.per_component:
            return {"box": component_boxes(mask, self.config.box_pad)}
        return {"box": box_from_mask(mask, self.config.box_pad)}

    def setting(self) -> dict[str, Any]:
        return {"prompt": "ground-truth box", **super().setting()}

    def predict(self, image: np.ndarray, box: Sequence[float] | np.ndarray | None = None, *, source: str = "image",
                **prompts: Any) -> Prediction:
        """Segment the structure inside ``box``: (4,) XYXY pixels of ``image``, or (N, 4) for N boxes whose
        masks are united (one object in several pieces).

        Points (``points``, ``point_labels``) may be added (single box only). The image is encoded only once when
        the same pixels are predicted several times in a row (e.g. one box per structure). ``source`` names the
        image in error messages.

        Returns:
            Prediction with ``mask`` (HxW bool), ``scores["iou_pred"]`` (area-weighted over boxes; also
            ``scores["quality"]``) and ``extras["boxes"]`` ((N, 4), the boxes used).

        Raises:
            InputError: no box given, bad image, or bad prompt.
        """
        if box is None:
            raise InputError(f"box_prompt needs box=(x0, y0, x1, y1) in pixels of {source}")
        if unknown := sorted(set(prompts) - {"points", "point_labels"}):
            raise InputError(f"box_prompt: unknown prompts {unknown}; give box=, points=, point_labels=")
        boxes = np.asarray(box, dtype=np.float64)
        boxes = boxes.reshape(1, -1) if boxes.ndim == 1 else boxes
        if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
            raise InputError(f"{source}: box must be (4,) or (N, 4) XYXY pixels, got shape {np.shape(box)}")
        if len(boxes) > 1 and prompts.get("points") is not None:
            raise InputError("points can be combined with a single box only")
        # Same pixels as the last call -> reuse its embedding (one encode for several structures). Hashing
        # costs ~1 ms against ~0.5 s for the encoder; an id() check could be fooled by a recycled array.
        key = image_key(np.asarray(image))
        if key != self._image_key or not self.predictor.is_image_set:
            self.predictor.set_image(image, source=source)
            self._image_key = key
        masks, ious, areas, low_res = [], [], [], None
        for b in boxes:
            out = self.predictor.predict(points=prompts.get("points"), point_labels=prompts.get("point_labels"),
                                         box=b, multimask=self.config.multimask)
            mask, iou, low = out.best()
            masks.append(mask)
            ious.append(iou)
            areas.append(max(int(mask.sum()), 1))
            low_res = low if low_res is None else low_res
        union = np.logical_or.reduce(masks)
        iou_pred = float(np.average(ious, weights=areas))
        return Prediction(mask=union, scores={"iou_pred": iou_pred, "quality": iou_pred},
                          extras={"boxes": boxes, "low_res_logits": low_res})
