"""SAM 2 (image predictor only) from the user's Hugging Face-format folder, behind the :class:`Backbone` interface.

``transformers.Sam2Model`` loads ``facebook/sam2.1-hiera-*`` folders offline. Only the single-image path is used
(no video memory): the encoder's three FPN levels become

* ``features``: the 256x64x64 image embedding (the lowest level, with SAM 2's learned "no memory" embedding
  already added, as its image predictor does), and
* ``extra["high_res_0"]`` (B, 32, 256, 256) and ``extra["high_res_1"]`` (B, 64, 128, 128): the high-resolution
  maps, already projected by the decoder's ``conv_s0``/``conv_s1``, which :meth:`Sam2Backbone.decode` hands back
  to the mask decoder.

Frames: SAM 2's own processor squashes the image to 1024x1024; we resize the longest side and zero-pad like every
other SAM-family backbone here, so one :class:`~roiprompt.prompts.transforms.Frame` maps prompts for all of them.
Pixels are normalised with ImageNet mean/std (SAM 2's convention) before padding, so the pad is 0.

Example:
    >>> sam2 = load_backbone("sam2", weights="/models/sam2.1-hiera-tiny")   # doctest: +SKIP
    >>> emb = sam2.encode_image(sam2.preprocess(image))
    >>> logits, iou = sam2.decode(emb, points=torch.tensor([[[512., 400.]]]), point_labels=torch.tensor([[1]]))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...runtime import InferenceOptions, inference_options
from ...errors import InputError
from ...prompts.transforms import Frame
from .base import Backbone, ImageEmbedding, register_backbone
from .base import image_to_tensor
from .sam import IMAGENET_MEAN, IMAGENET_STD, VIT_FAST, check_pixels, encoder_runner, load_hf_folder, sam_prompts

HIGH_RES_KEYS = ("high_res_0", "high_res_1")  # 4x and 2x the embedding grid (256^2 and 128^2 for real SAM 2)


class Sam2Backbone(Backbone):
    """A transformers ``Sam2Model`` as a :class:`Backbone`.

    Args:
        model: a ``transformers.Sam2Model``.
        weights_sha256: hash of the loaded checkpoint (embedding cache key).
        inference: how the image encoder runs on the CPU (default ``VIT_FAST``: eager, inference mode).

    Note:
        ``decode(..., multimask=False)`` keeps SAM 2's own single-mask rule: in eval mode, when the single-mask
        output is unstable it returns the best of the three multimask outputs instead (SAM 2's
        ``dynamic_multimask_via_stability``).
    """

    name = "sam2"

    def __init__(self, model, weights_sha256: str | None = None, inference: InferenceOptions | None = None) -> None:
        super().__init__()
        self.model = model
        self.weights_sha256 = weights_sha256
        prompt_cfg = model.config.prompt_encoder_config
        self.input_size = int(prompt_cfg.image_size)  # 1024
        self.embed_size = int(prompt_cfg.image_size // prompt_cfg.patch_size)  # 64
        self.mask_size = 4 * self.embed_size  # 256
        self.runner = encoder_runner(self, model, inference)

    @property
    def embedding_shapes(self) -> dict[str, tuple[int, ...]]:
        """The FPN levels as :meth:`encode_image` returns them: channels from the FPN and the decoder's
        ``conv_s0``/``conv_s1`` projections, sides from the backbone's feature sizes (high to low resolution)."""
        decoder = self.model.mask_decoder
        channels = (decoder.conv_s0.out_channels, decoder.conv_s1.out_channels,
                    int(self.model.config.vision_config.fpn_hidden_size))
        shapes = [(c, *map(int, hw)) for c, hw in zip(channels, self.model.backbone_feature_sizes)]
        return {**dict(zip(HIGH_RES_KEYS, shapes[:-1])), "features": shapes[-1]}

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """HxW or HxWx3 uint8 in [0, 255] -> (1, 3, S, S) float32: ImageNet-normalised, longest side S, zero pad."""
        pixels = image_to_tensor(image)  # (1, 3, H, W)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return Frame(tuple(image.shape[:2]), self.input_size).resize_image((pixels - mean) / std)

    def encode_image(self, pixels: torch.Tensor) -> ImageEmbedding:
        """(B, 3, S, S) -> features (B, 256, 64, 64); extra high_res_0 (B, 32, 256, 256)
        and high_res_1 (B, 64, 128, 128)."""
        check_pixels(pixels, self.input_size, self.name)
        levels = self.runner(pixels)  # high -> low resolution
        return ImageEmbedding(levels[-1], dict(zip(HIGH_RES_KEYS, levels[:-1])))

    def decode(self, embedding: ImageEmbedding, points: torch.Tensor | None = None,
               point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
               mask_logits: torch.Tensor | None = None, multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """See :meth:`Backbone.decode`; coordinates in the ``input_size`` frame, labels default to 1."""
        missing = [k for k in HIGH_RES_KEYS if k not in embedding.extra]
        if missing:
            raise InputError(f"sam2: embedding lacks {missing}; pass the ImageEmbedding from sam2's encode_image")
        prompts = sam_prompts(embedding.features.shape[0], points, point_labels, boxes, mask_logits,
                              self.mask_size, embedding.features.device)
        levels = [embedding.extra[k] for k in HIGH_RES_KEYS] + [embedding.features]
        out = self.model(image_embeddings=levels, multimask_output=multimask, **prompts)
        return out.pred_masks[:, 0], out.iou_scores[:, 0]  # (B, K, m, m), (B, K)


@register_backbone("sam2")
def build_sam2(weights: str | Path | None = None, allow_download: bool = False, fast: bool = True,
               **inference) -> Sam2Backbone:
    """SAM 2 / 2.1 from a local Hugging Face-format folder (``config.json`` + ``model.safetensors``); ``fast`` and
    ``**inference`` set how the image encoder runs, as for SAM.

    Raises:
        CheckpointError: ``weights`` is None (no offline default; ``facebook/sam2.1-hiera-tiny`` only with
            ``allow_download=True``), or the folder is missing, not SAM 2, unsafe or does not fit.
    """
    from transformers import Sam2Model

    model, sha = load_hf_folder(Sam2Model, weights, model_types=("sam2",), hub_id="facebook/sam2.1-hiera-tiny",
                                allow_download=allow_download, arch="sam2")
    options = inference_options(fast, base=VIT_FAST if fast else None, **inference)
    return Sam2Backbone(model, weights_sha256=sha, inference=options)
