"""SAM-family predictor: encode an image once, then prompt the decoder as often as needed.

Shaped like segment-anything's ``SamPredictor``: ``set_image(image)`` then ``predict(points=..., box=...)``.
Points are (x, y) and boxes (x0, y0, x1, y1) in pixels of the original image; masks come back at the original
resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .data.validate import check_image
from .engine.cache import EmbeddingCache
from .errors import InputError
from .models.backbones.base import Backbone, ImageEmbedding, load_backbone
from .prompts.transforms import Frame
from .types import Prompt


@dataclass(frozen=True)
class SamOutput:
    """Decoder answer for one prompt.

    Attributes:
        masks: (K, H, W) bool at the original resolution (K = 3 with multimask, else 1).
        iou: (K,) predicted IoU of each mask.
        low_res_logits: (K, m, m) float logits in the model frame; feed one back as ``mask_input``.
        logits: (K, H, W) float logits at the original resolution.
    """

    masks: np.ndarray
    iou: np.ndarray
    low_res_logits: np.ndarray
    logits: np.ndarray

    def best(self) -> tuple[np.ndarray, float, np.ndarray]:
        """(mask, iou, low-res logits) of the output with the highest predicted IoU."""
        i = int(np.argmax(self.iou))
        return self.masks[i], float(self.iou[i]), self.low_res_logits[i]


class SamPredictor:
    """Encode once, prompt many times.

    Args:
        backbone: a SAM-family :class:`Backbone` or its registry name ("litemedsam" is the offline default).
        cache: optional on-disk :class:`EmbeddingCache`; with it an image seen before is never re-encoded.

    Example:
        >>> predictor = SamPredictor("litemedsam")
        >>> predictor.set_image(image)                       # HxW or HxWx3 uint8
        >>> out = predictor.predict(box=[30, 40, 120, 160])  # XYXY pixels
        >>> out.masks.shape                                  # (1, H, W)
    """

    def __init__(self, backbone: Backbone | str = "litemedsam", cache: EmbeddingCache | None = None) -> None:
        self.backbone = load_backbone(backbone) if isinstance(backbone, str) else backbone
        if not self.backbone.has_decoder:
            raise InputError(f"backbone {self.backbone.name!r} has no prompt decoder; use a SAM-family backbone")
        self.cache = cache
        self._embedding: ImageEmbedding | None = None
        self._frame: Frame | None = None
        self.encoder_calls = 0  # how many times the image encoder actually ran (tests check "encode once")

    # -- image ----------------------------------------------------------------------------------------------
    def set_image(self, image: np.ndarray, source: str = "image") -> None:
        """Validate and encode ``image`` (HxW or HxWx3 uint8), replacing the previous one."""
        image = check_image(image, source)
        self._frame = Frame(image.shape[:2], self.backbone.input_size)
        embedding = self.cache.load(image, self.backbone) if self.cache is not None else None
        if embedding is None:
            with torch.inference_mode():
                embedding = self.backbone.encode_image(self.backbone.preprocess(image))
            self.encoder_calls += 1
            if self.cache is not None:
                self.cache.store(image, self.backbone, embedding)
        self._embedding = embedding

    def set_embedding(self, embedding: ImageEmbedding, orig_hw: tuple[int, int]) -> None:
        """Use a precomputed embedding (from a cache or a batched encode) for an image of size ``orig_hw``."""
        self._embedding = embedding
        self._frame = Frame(tuple(orig_hw), self.backbone.input_size)

    @property
    def is_image_set(self) -> bool:
        return self._embedding is not None

    @property
    def frame(self) -> Frame:
        if self._frame is None:
            raise InputError("no image set: call set_image(image) first")
        return self._frame

    @property
    def embedding(self) -> ImageEmbedding:
        if self._embedding is None:
            raise InputError("no image set: call set_image(image) first")
        return self._embedding

    # -- prompts --------------------------------------------------------------------------------------------
    def predict(
        self,
        points: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = False,
    ) -> SamOutput:
        """Prompt the decoder on the current image.

        Args:
            points: (N, 2) (x, y) pixels of the original image, or None.
            point_labels: (N,) 1 = foreground, 0 = background (default all 1).
            box: (4,) XYXY pixels of the original image, or None.
            mask_input: (m, m) or (1, m, m) low-res logits from a previous call (``low_res_logits``), or None.
            multimask: return SAM's 3 candidate masks instead of one.

        Returns:
            :class:`SamOutput` with masks at the original resolution and the predicted IoU.

        Raises:
            InputError: no image set, malformed prompt, or a prompt entirely outside the image.
        """
        return self.predict_prompt(Prompt(points, point_labels, box, mask_input), multimask=multimask)

    def predict_prompt(self, prompt: Prompt, multimask: bool = False) -> SamOutput:
        """Same as :meth:`predict` with a :class:`Prompt`."""
        frame, embedding = self.frame, self.embedding
        h, w = frame.orig_hw
        pts = labels = boxes = dense = None
        if prompt.points is not None:
            if not ((prompt.points[:, 0] >= -0.5) & (prompt.points[:, 0] <= w) &
                    (prompt.points[:, 1] >= -0.5) & (prompt.points[:, 1] <= h)).any():
                raise InputError(f"all points lie outside the {h}x{w} image (points are (x, y) pixels)")
            pts = torch.as_tensor(frame.points_to_model(prompt.points), dtype=torch.float32)[None]  # (1, N, 2)
            labels = torch.as_tensor(prompt.point_labels, dtype=torch.int64)[None]  # (1, N)
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
                raise InputError(f"box {prompt.box.tolist()} lies outside the {h}x{w} image (XYXY pixels)")
            boxes = torch.as_tensor(frame.box_to_model(prompt.box), dtype=torch.float32)[None]  # (1, 4)
        if prompt.mask_logits is not None:
            m = self.backbone.mask_size
            dense = torch.as_tensor(np.asarray(prompt.mask_logits, dtype=np.float32))
            if dense.numel() != m * m:
                raise InputError(f"mask_input must be {m}x{m} low-res logits, got shape {tuple(dense.shape)}")
            dense = dense.reshape(1, 1, m, m)
        with torch.inference_mode():
            low_res, iou = self.backbone.decode(embedding, pts, labels, boxes, dense, multimask=multimask)
            logits = frame.logits_to_original(low_res.float())  # (1, K, H, W)
        logits_np = logits[0].numpy()
        return SamOutput(masks=logits_np > 0, iou=iou[0].float().numpy(), low_res_logits=low_res[0].float().numpy(),
                         logits=logits_np)
