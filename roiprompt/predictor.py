"""SAM-family predictor: encode an image once, then prompt the decoder as often as needed.

A drop-in for segment-anything's ``SamPredictor``: ``set_image(image)``, then ``predict(...)`` with either
vocabulary,

* roiprompt's: ``predict(points=, point_labels=, box=, mask_input=, multimask=False)`` -> :class:`SamOutput`;
* segment-anything's: ``predict(point_coords=, point_labels=, box=, mask_input=, multimask_output=True,
  return_logits=False)``; the same :class:`SamOutput` unpacks as segment-anything's tuple
  ``masks, scores, logits = predictor.predict(...)``;

plus ``reset_image()``, ``is_image_set``, ``original_size``, ``input_size``, ``features`` and
``get_image_embedding()``. Points are (x, y) and boxes (x0, y0, x1, y1) in pixels of the original image; masks
come back at the original resolution.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from .data.validate import check_image
from .errors import InputError, PromptWarning
from .models.backbones.base import Backbone, ImageEmbedding, load_backbone
from .models.cache import EmbeddingCache, encode_cached
from .prompts.transforms import Frame
from .types import Prompt


class _Unset:
    """Marks a keyword that was not given, so that an explicit ``point_coords=None`` still counts as
    segment-anything's vocabulary (and selects its defaults)."""

    def __repr__(self) -> str:
        return "<not given>"


_UNSET: Any = _Unset()


@dataclass(frozen=True, init=False, eq=False)
class SamOutput:
    """Decoder answer for one prompt; also a 3-sequence ``(masks, iou, low_res_logits)``, segment-anything's
    return value, so ``masks, scores, logits = predictor.predict(...)`` works.

    Attributes:
        masks: (K, H, W) bool at the original resolution (K = 3 with multimask, else 1); float32 logits instead
            when :meth:`SamPredictor.predict` was called with ``return_logits=True`` (segment-anything's meaning).
        iou: (K,) float32 predicted IoU of each mask.
        low_res_logits: (K, m, m) float32 logits in the model frame (m = 256 for the SAM family); feed one back
            as ``mask_input`` (``(m, m)`` or ``(1, m, m)``).
        logits: (K, H, W) float32 logits at the original resolution, computed from ``low_res_logits`` on first
            access and kept (4 bytes per pixel and mask: a prediction that only needs its masks never holds them).

    Args:
        logits: the full-resolution logits, when already computed; else ``frame``, the image's
            :class:`~roiprompt.prompts.transforms.Frame`, to compute them from ``low_res_logits`` when asked.
    """

    masks: np.ndarray
    iou: np.ndarray
    low_res_logits: np.ndarray

    def __init__(self, masks: np.ndarray, iou: np.ndarray, low_res_logits: np.ndarray,
                 logits: np.ndarray | None = None, frame: Frame | None = None) -> None:
        if logits is None and frame is None:
            raise ValueError("SamOutput needs the full-resolution logits, or the frame to compute them from")
        object.__setattr__(self, "masks", masks)
        object.__setattr__(self, "iou", iou)
        object.__setattr__(self, "low_res_logits", low_res_logits)
        object.__setattr__(self, "_logits", logits)
        object.__setattr__(self, "_frame", frame)

    @property
    def logits(self) -> np.ndarray:
        if self._logits is None:
            object.__setattr__(self, "_logits", _full_logits(self._frame, self.low_res_logits))
        return self._logits

    def best(self) -> tuple[np.ndarray, float, np.ndarray]:
        """(mask, iou, low-res logits) of the output with the highest predicted IoU."""
        i = int(np.argmax(self.iou))
        return self.masks[i], float(self.iou[i]), self.low_res_logits[i]

    # segment-anything's tuple (masks, iou_predictions, low_res_masks)
    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.masks, self.iou, self.low_res_logits))

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int | slice) -> Any:
        return (self.masks, self.iou, self.low_res_logits)[index]


def _full_logits(frame: Frame, low_res_logits: np.ndarray) -> np.ndarray:
    """(K, m, m) low-res logits -> (K, H, W) float32 logits at the original resolution."""
    low = torch.from_numpy(np.ascontiguousarray(low_res_logits, dtype=np.float32))[None]
    with torch.inference_mode():
        return frame.logits_to_original(low)[0].numpy()


class SamPredictor:
    """Encode once, prompt many times.

    Args:
        backbone: a SAM-family :class:`Backbone` (the ``sam`` of ``SamPredictor(sam)``) or its registry name
            ("litemedsam" is the offline default).
        cache: optional on-disk :class:`EmbeddingCache`; with it an image seen before is never re-encoded.

    Example:
        >>> predictor = SamPredictor("litemedsam")
        >>> predictor.set_image(image)                       # HxW or HxWx3 uint8
        >>> out = predictor.predict(box=[30, 40, 120, 160])  # XYXY pixels
        >>> out.masks.shape                                  # (1, H, W)
        >>> masks, scores, logits = predictor.predict(point_coords=np.array([[80, 90]]), point_labels=np.array([1]))
        >>> masks.shape, scores.shape, logits.shape          # (3, H, W), (3,), (3, 256, 256): segment-anything
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
    def set_image(self, image: np.ndarray, source: str = "image", image_format: str = "RGB") -> None:
        """Validate and encode ``image``, replacing the previous one.

        Args:
            image: HxW or HxWx3 uint8.
            source: file name or label used in error messages.
            image_format: "RGB" or "BGR" (segment-anything's keyword; BGR, e.g. from ``cv2.imread``, is flipped).
        """
        if image_format not in ("RGB", "BGR"):
            raise InputError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        image = check_image(image, source)
        if image_format == "BGR" and image.ndim == 3:
            image = np.ascontiguousarray(image[..., ::-1])
        embedding, encoded = encode_cached(self.backbone, image, self.cache)  # the one load-or-encode path
        self.encoder_calls += int(encoded)
        self._frame = Frame(image.shape[:2], self.backbone.input_size)
        self._embedding = embedding

    def set_embedding(self, embedding: ImageEmbedding, orig_hw: tuple[int, int]) -> None:
        """Use a precomputed embedding (from a cache or a batched encode) for an image of size ``orig_hw``."""
        self._embedding = embedding
        self._frame = Frame(tuple(orig_hw), self.backbone.input_size)

    def reset_image(self) -> None:
        """Forget the current image (segment-anything's name); :meth:`predict` raises until the next one is set."""
        self._embedding = None
        self._frame = None

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

    # -- segment-anything's attributes ----------------------------------------------------------------------
    @property
    def original_size(self) -> tuple[int, int] | None:
        """(H, W) of the current image, or None when no image is set."""
        return None if self._frame is None else tuple(self._frame.orig_hw)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(h, w) of the image inside the padded model frame (resized, before padding), or None."""
        return None if self._frame is None else self._frame.resized_hw

    @property
    def features(self) -> torch.Tensor | None:
        """(1, C, h, w) image embedding of the current image (LiteMedSAM: (1, 256, 64, 64)), or None."""
        return None if self._embedding is None else self._embedding.features

    def get_image_embedding(self) -> torch.Tensor:
        """(1, C, h, w) image embedding of the current image; raises :class:`InputError` when none is set."""
        return self.embedding.features

    @property
    def device(self) -> torch.device:
        """Where the backbone's weights live (scripts put prompt tensors there)."""
        param = next(self.backbone.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    # -- prompts --------------------------------------------------------------------------------------------
    def predict(
        self,
        points: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool | None = None,
        return_logits: bool = _UNSET,
        *,
        point_coords: np.ndarray | None = _UNSET,
        multimask_output: bool = _UNSET,
    ) -> SamOutput:
        """Prompt the decoder on the current image.

        Two vocabularies, one behaviour each: a call that names any of segment-anything's own keywords
        (``point_coords``, ``multimask_output``, ``return_logits``) gets segment-anything's defaults
        (``multimask_output=True``); otherwise roiprompt's (``multimask=False``). A call with only the shared
        names (``point_labels``, ``box``, ``mask_input``) or positional arguments is a roiprompt call.

        Args:
            points: (N, 2) (x, y) pixels of the original image, or None. segment-anything: ``point_coords``.
            point_labels: (N,) 1 = foreground, 0 = background (default all 1).
            box: (4,) or (1, 4) XYXY pixels of the original image, or None.
            mask_input: (m, m) or (1, m, m) low-res logits from a previous call (``low_res_logits``), or None.
            multimask: return SAM's 3 candidate masks instead of one. segment-anything: ``multimask_output``.
            return_logits: segment-anything's: ``masks`` holds the float logits at the original resolution
                instead of bool masks.
            point_coords: segment-anything's name for ``points``.
            multimask_output: segment-anything's name for ``multimask`` (default True, as there).

        Returns:
            :class:`SamOutput` (masks at the original resolution, predicted IoU, low-res logits), which also
            unpacks as segment-anything's ``(masks (K, H, W), iou_predictions (K,), low_res_masks (K, m, m))``.

        Raises:
            InputError: no image set, malformed prompt, a prompt entirely outside the image, or one argument
                given in both vocabularies (``points`` and ``point_coords``, ``multimask`` and
                ``multimask_output``).
        """
        segment_anything = any(v is not _UNSET for v in (point_coords, multimask_output, return_logits))
        if point_coords is not _UNSET:
            if points is not None:
                raise InputError("give the points once: points= (roiprompt) or point_coords= (segment-anything)")
            points = point_coords
        if multimask_output is not _UNSET:
            if multimask is not None:
                raise InputError("give multimask once: multimask= (roiprompt) or multimask_output= "
                                 "(segment-anything)")
            multimask = multimask_output
        if multimask is None:
            multimask = segment_anything  # segment-anything defaults to 3 masks, roiprompt to 1
        prompt = Prompt(points, point_labels, box, mask_input)
        if return_logits is not _UNSET and return_logits:  # masks are the float logits: no bool masks computed
            low, iou = self._decode(prompt, bool(multimask))
            logits = _full_logits(self.frame, low)
            return SamOutput(masks=logits, iou=iou, low_res_logits=low, logits=logits)
        return self.predict_prompt(prompt, multimask=bool(multimask))

    def predict_prompt(self, prompt: Prompt, multimask: bool = False) -> SamOutput:
        """Same as :meth:`predict` with a :class:`Prompt`.

        Warns (:class:`~roiprompt.errors.PromptWarning`) when points come without a box to a backbone trained with
        boxes only (LiteMedSAM: the mask is then near-empty), and when every returned mask is empty.
        """
        if prompt.points is not None and prompt.box is None and not self.backbone.point_prompts:
            warnings.warn(f"{self.backbone.name} was trained with box prompts only: points without a box give a "
                          "poor, often empty mask; add a box", PromptWarning, stacklevel=3)
        low, iou = self._decode(prompt, multimask)
        # the masks one at a time (one H x W float32 map at most); the full-resolution logits only when asked for
        out = SamOutput(masks=self.frame.masks_to_original(low), iou=iou, low_res_logits=low, frame=self.frame)
        if not out.masks.any():
            warnings.warn("the predicted mask is empty (no pixel above the decoder's threshold)", PromptWarning,
                          stacklevel=3)
        return out

    def _decode(self, prompt: Prompt, multimask: bool) -> tuple[np.ndarray, np.ndarray]:
        """Checked prompt -> ((K, m, m) float32 low-res logits, (K,) float32 predicted IoU)."""
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
        return low_res[0].float().numpy(), iou[0].float().numpy()
