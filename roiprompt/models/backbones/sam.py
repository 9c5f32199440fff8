"""SAM and MedSAM from the user's official checkpoints, behind the :class:`Backbone` interface.

Two checkpoint forms load offline:

* a Hugging Face-format folder (``config.json`` + ``model.safetensors``), e.g. ``facebook/sam-vit-base`` or
  ``wanglab/medsam-vit-base`` downloaded once elsewhere; loaded by ``transformers.SamModel``;
* a ``.pth`` file in the original segment-anything layout (``sam_vit_b_01ec64.pth``, ``medsam_vit_b.pth``): its
  keys are renamed to the transformers layout (:func:`convert_original_sam`) and the architecture (ViT-B/L/H or
  any other size) is read from the tensor shapes (:func:`sam_config_from_original`). The file is loaded with
  ``torch.load(weights_only=True)``, never unpickled freely, and strictly: every key must fit.

Frames: ``input_size`` = the model's square frame (1024 for real SAM); the image is resized on its longest side
and zero-padded bottom/right (:class:`~roiprompt.prompts.transforms.Frame`), exactly like segment-anything's
``ResizeLongestSide`` + ``preprocess``; ``mask_size`` = 4x the embedding grid (256 for real SAM).

Example:
    >>> sam = load_backbone("sam", weights="/models/sam-vit-base")        # doctest: +SKIP
    >>> emb = sam.encode_image(sam.preprocess(image))                     # (1, 256, 64, 64)
    >>> logits, iou = sam.decode(emb, boxes=torch.tensor([[100., 120., 400., 380.]]))
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from torch import nn

from ...runtime import EncoderRunner, InferenceOptions, inference_options
from ...errors import CheckpointError, InputError
from ...prompts.transforms import Frame
from ..weights import hf_weight_files, load_into, load_pretrained, load_state_dict, sha256_of
from .base import Backbone, ImageEmbedding, image_to_tensor, register_backbone

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # SAM's pixel_mean / pixel_std, on 0-255 pixels
IMAGENET_STD = (58.395, 57.12, 57.375)
Normalization = Literal["sam", "minmax"]


# -- shared helpers (also used by sam2.py and clip.py) ------------------------------------------------------------
def hf_folder_sha256(folder: Path) -> str:
    """SHA-256 of a Hugging Face folder's weights: of ``model.safetensors``, or of its sorted shards' hashes."""
    files = hf_weight_files(folder)
    if files == [folder / "model.safetensors"]:
        return sha256_of(files[0])
    digest = hashlib.sha256()
    for shard in files:
        digest.update(sha256_of(shard).encode())
    return digest.hexdigest()


def load_hf_folder(model_cls: type, weights: str | Path | None, *, model_types: tuple[str, ...], hub_id: str,
                   allow_download: bool, arch: str):
    """Load ``model_cls.from_pretrained`` from a local folder, strictly and offline.

    Returns:
        (model in eval mode, SHA-256 of its weights or None after a download).

    Raises:
        CheckpointError: no weights given (and no download allowed), a missing folder, no ``config.json``, a
            config of another model type, no ``model.safetensors`` (pickled ``.bin`` weights are refused), a
            corrupt config or safetensors file (named), or weights that do not fit the config
            (:func:`~roiprompt.models.weights.load_pretrained`).
    """
    if weights is None:
        if not allow_download:
            raise CheckpointError(
                f"{arch!r} has no offline default weights: pass weights='/path/to/folder' (a Hugging Face-format "
                f"folder with config.json + model.safetensors, e.g. a local copy of {hub_id!r}), or "
                "allow_download=True to fetch it from the hub (needs internet)")
        model = model_cls.from_pretrained(hub_id)  # pragma: no cover - needs internet
        return model.eval(), None  # pragma: no cover
    folder = Path(weights)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not found or not a folder; {arch!r} expects a Hugging Face-format folder "
                              "(config.json + model.safetensors)")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{folder}: no config.json, so this is not a Hugging Face-format checkpoint folder")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{config_file}: unreadable config ({err})") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_file}: unreadable config (a JSON {type(config).__name__}, not an object)")
    model_type = config.get("model_type")
    if model_type not in model_types:
        raise CheckpointError(f"{folder}: config.json says model_type={model_type!r}, but {arch!r} needs one of "
                              f"{list(model_types)}; pass the right folder or pick the matching backbone")
    if not (folder / "model.safetensors").is_file() and not (folder / "model.safetensors.index.json").is_file():
        raise CheckpointError(f"{folder}: no model.safetensors; only safetensors weights are loaded (pickled "
                              "pytorch_model.bin could run code); re-save it with save_pretrained()")
    return load_pretrained(model_cls, folder), hf_folder_sha256(folder)


# -- the backbone ---------------------------------------------------------------------------------------------------
#: the fast path for ViT / Hiera encoders: no BatchNorm to fold and no convolution-heavy stage for channels-last,
#: so no private copy of a (possibly 2.5 GB) encoder is made
VIT_FAST = InferenceOptions(channels_last=False, fold_bn=False, split_qkv=False)
#: what ``runtime="auto"`` means for them (unless ``$ROIPROMPT_RUNTIME`` says otherwise): eager with inference mode
#: and the allocator tuning. OpenVINO stays opt-in: on SAM ViT-B it measured 1.19x faster than the plain path here
#: (benchmarks/sam_encoder_speed.py, 3 images at 1024x1024: 5.8 vs 6.9 s) but its one-off conversion took 50 s and
#: holds a second copy of the weights in memory (2.5 GB for ViT-H), which only pays off over many images.
VIT_RUNTIME = "eager"


class ImageEmbeddings(nn.Module):
    """``model.get_image_embeddings`` as a module (what :class:`EncoderRunner` runs and OpenVINO converts); a
    tuple for SAM 2's multi-scale maps."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.model.get_image_embeddings(pixels)
        return tuple(out) if isinstance(out, (list, tuple)) else out


def encoder_runner(backbone: Backbone, model, inference: InferenceOptions | None) -> EncoderRunner:
    """The runner of a transformers SAM-family model's image encoder (default: :data:`VIT_FAST`); the OpenVINO
    cache key is the checkpoint hash (none for in-memory weights: converted in memory, nothing cached)."""
    key = f"{backbone.name}-{backbone.weights_sha256[:16]}" if backbone.weights_sha256 else None
    return EncoderRunner(ImageEmbeddings(model), inference or VIT_FAST, input_size=backbone.input_size, key=key,
                         prefer=VIT_RUNTIME)


class SamBackbone(Backbone):
    """A transformers ``SamModel`` (SAM ViT-B/L/H, MedSAM, SlimSAM, tiny test configs) as a :class:`Backbone`.

    Args:
        model: a ``transformers.SamModel``.
        normalization: ``"sam"``: ImageNet mean/std on 0-255 pixels (segment-anything's ``preprocess``);
            ``"minmax"``: min-max to [0, 1] with no mean/std (MedSAM's ``MedSAM_Inference.py`` feeds the encoder
            exactly that). Either way the zero pad is added after normalising, so it is 0 (SAM's convention).
            MedSAM squashes the image to 1024x1024; we keep the aspect ratio and pad instead, like SAM and
            LiteMedSAM, so one :class:`Frame` maps prompts for every backbone.
        weights_sha256: hash of the loaded checkpoint (embedding cache key).
        inference: how the image encoder runs on the CPU (default :data:`VIT_FAST`).
    """

    name = "sam"

    def __init__(self, model, normalization: Normalization = "sam", weights_sha256: str | None = None,
                 inference: InferenceOptions | None = None) -> None:
        super().__init__()
        if normalization not in ("sam", "minmax"):
            raise InputError(f"normalization={normalization!r}; expected 'sam' or 'minmax'")
        self.model = model
        self.normalization = normalization
        self.weights_sha256 = weights_sha256
        prompt_cfg = model.config.prompt_encoder_config
        self.input_size = int(prompt_cfg.image_size)  # 1024 for real SAM
        self.embed_size = int(prompt_cfg.image_size // prompt_cfg.patch_size)  # 64
        self.mask_size = 4 * self.embed_size  # the decoder upsamples the grid 4x: 256
        self.runner = encoder_runner(self, model, inference)

    @property
    def embedding_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{"features": (output channels, grid, grid)}``: (256, 64, 64) for SAM ViT-B/L/H."""
        g = self.embed_size
        return {"features": (int(self.model.config.vision_config.output_channels), g, g)}

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """HxW or HxWx3 uint8 in [0, 255] -> (1, 3, S, S) float32: normalised, longest side S, zero pad."""
        pixels = image_to_tensor(image)  # (1, 3, H, W) in [0, 255]
        if self.normalization == "sam":
            mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
            pixels = (pixels - mean) / std
        else:
            lo, hi = pixels.min(), pixels.max()
            pixels = (pixels - lo) / torch.clamp(hi - lo, min=1e-8)
        # resizing is linear, so normalise-then-resize equals resize-then-normalise, and the pad stays 0
        return Frame(tuple(image.shape[:2]), self.input_size).resize_image(pixels)  # (1, 3, S, S)

    def encode_image(self, pixels: torch.Tensor) -> ImageEmbedding:
        """(B, 3, S, S) from :meth:`preprocess` -> ImageEmbedding(features=(B, 256, 64, 64))."""
        check_pixels(pixels, self.input_size, self.name)
        return ImageEmbedding(self.runner(pixels))  # (B, 256, 64, 64)

    def decode(self, embedding: ImageEmbedding, points: torch.Tensor | None = None,
               point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
               mask_logits: torch.Tensor | None = None, multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """See :meth:`Backbone.decode`; coordinates in the ``input_size`` frame (SamModel adds the half-pixel
        shift and divides by ``input_size`` itself, so nothing is normalised here). Point labels default to 1."""
        prompts = sam_prompts(embedding.features.shape[0], points, point_labels, boxes, mask_logits,
                              self.mask_size, embedding.features.device)
        out = self.model(image_embeddings=embedding.features, multimask_output=multimask, **prompts)
        return out.pred_masks[:, 0], out.iou_scores[:, 0]  # (B, K, m, m), (B, K)


class MedSamBackbone(SamBackbone):
    """MedSAM (SAM ViT-B fine-tuned on medical images); min-max [0, 1] input by default, as MedSAM was trained."""

    name = "medsam"


def check_pixels(pixels: torch.Tensor, size: int, name: str) -> None:
    """Raise InputError unless ``pixels`` is (B, 3, size, size), as ``preprocess`` makes it."""
    if pixels.ndim != 4 or pixels.shape[1] != 3 or tuple(pixels.shape[2:]) != (size, size):
        raise InputError(f"{name}: pixels have shape {tuple(pixels.shape)}; expected (B, 3, {size}, {size}) "
                         "from preprocess()")


def sam_prompts(batch: int, points: torch.Tensor | None, point_labels: torch.Tensor | None,
                boxes: torch.Tensor | None, mask_logits: torch.Tensor | None, mask_size: int,
                device: torch.device) -> dict[str, torch.Tensor]:
    """Our prompt convention -> transformers' SAM/SAM 2 keywords (one mask per image: point batch of 1).

    points (B, N, 2) -> input_points (B, 1, N, 2); labels (B, N) -> (B, 1, N); boxes (B, 4) -> (B, 1, 4);
    mask_logits (B, 1, m, m) -> input_masks unchanged.
    """
    out: dict[str, torch.Tensor] = {}
    if points is not None:
        points = torch.as_tensor(points, dtype=torch.float32, device=device)
        if points.ndim != 3 or points.shape[0] != batch or points.shape[2] != 2:
            raise InputError(f"points have shape {tuple(points.shape)}; expected ({batch}, N, 2) (x, y)")
        labels = (torch.ones(points.shape[:2], dtype=torch.long) if point_labels is None
                  else torch.as_tensor(point_labels, dtype=torch.long))
        if tuple(labels.shape) != tuple(points.shape[:2]):
            raise InputError(f"point_labels have shape {tuple(labels.shape)}; expected {tuple(points.shape[:2])}")
        out["input_points"] = points[:, None]  # (B, 1, N, 2)
        out["input_labels"] = labels.to(device)[:, None]  # (B, 1, N)
    elif point_labels is not None:
        raise InputError("point_labels given without points")
    if boxes is not None:
        boxes = torch.as_tensor(boxes, dtype=torch.float32, device=device)
        if tuple(boxes.shape) != (batch, 4):
            raise InputError(f"boxes have shape {tuple(boxes.shape)}; expected ({batch}, 4) XYXY")
        out["input_boxes"] = boxes[:, None]  # (B, 1, 4)
    if mask_logits is not None:
        if tuple(mask_logits.shape) != (batch, 1, mask_size, mask_size):
            raise InputError(f"mask_logits have shape {tuple(mask_logits.shape)}; expected "
                             f"({batch}, 1, {mask_size}, {mask_size}) low-res logits")
        out["input_masks"] = mask_logits.to(device=device, dtype=torch.float32)
    return out


# -- original segment-anything .pth -> transformers SamModel ---------------------------------------------------------
_RENAMES = (  # (original fragment, transformers fragment), applied in order
    ("image_encoder.", "vision_encoder."), (".blocks.", ".layers."), ("patch_embed.proj.", "patch_embed.projection."),
    ("neck.0.", "neck.conv1."), ("neck.1.", "neck.layer_norm1."), ("neck.2.", "neck.conv2."),
    ("neck.3.", "neck.layer_norm2."),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("point_embeddings.", "point_embed."), ("mask_downscaling.0.", "mask_embed.conv1."),
    ("mask_downscaling.1.", "mask_embed.layer_norm1."), ("mask_downscaling.3.", "mask_embed.conv2."),
    ("mask_downscaling.4.", "mask_embed.layer_norm2."), ("mask_downscaling.6.", "mask_embed.conv3."),
    ("output_upscaling.0.", "upscale_conv1."), ("output_upscaling.1.", "upscale_layer_norm."),
    ("output_upscaling.3.", "upscale_conv2."), (".norm", ".layer_norm"),  # norm1..4, norm_final_attn
)
_MLP = re.compile(r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.layers\.(\d+)\.(.+)$")


def convert_original_sam(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a segment-anything state dict (``image_encoder.blocks.0.attn.qkv.weight``...) to SamModel keys.

    The heads' MLPs ``layers.0 .. layers.{d-1}`` become ``proj_in``, ``layers.0 .. layers.{d-3}``, ``proj_out``;
    ``pixel_mean``/``pixel_std`` buffers are dropped (normalisation lives in :meth:`SamBackbone.preprocess`); the
    prompt encoder's Gaussian matrix also fills SamModel's tied ``shared_image_embedding``.
    """
    depth: dict[str, int] = {}
    for key in state:
        if m := _MLP.match(key):
            depth[m.group(1)] = max(depth.get(m.group(1), 0), int(m.group(2)) + 1)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in ("pixel_mean", "pixel_std"):
            continue
        new = key
        if m := _MLP.match(key):
            i, last = int(m.group(2)), depth[m.group(1)] - 1
            part = "proj_in" if i == 0 else "proj_out" if i == last else f"layers.{i - 1}"
            new = f"{m.group(1)}.{part}.{m.group(3)}"
        else:
            for old, repl in _RENAMES:
                new = new.replace(old, repl)
        out[new] = value
    gaussian = out.get("prompt_encoder.shared_embedding.positional_embedding")
    if gaussian is not None:
        out["shared_image_embedding.positional_embedding"] = gaussian
    return out


def sam_config_from_original(state: dict[str, torch.Tensor]):
    """A ``SamConfig`` read from the shapes of a segment-anything state dict (ViT-B/L/H, SlimSAM, tiny).

    Heads: the ViT's head dim is the width of ``rel_pos_h`` (64 in every official model); global-attention
    blocks are those whose ``rel_pos_h`` spans the whole grid. The mask decoder's 8 heads cannot be read from
    shapes; every official SAM uses 8.
    """
    from transformers import SamConfig

    def get(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(f"not a segment-anything state dict: no {key!r}")
        return state[key]

    patch = get("image_encoder.patch_embed.proj.weight")  # (D, 3, p, p)
    hidden, patch_size = patch.shape[0], patch.shape[-1]
    grid = get("image_encoder.pos_embed").shape[1]  # (1, g, g, D)
    n_layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("image_encoder.blocks."))
    rel = [state.get(f"image_encoder.blocks.{i}.attn.rel_pos_h") for i in range(n_layers)]
    use_rel_pos = rel[0] is not None
    if use_rel_pos:
        head_dim = rel[0].shape[1]
        global_idx = [i for i, r in enumerate(rel) if r.shape[0] == 2 * grid - 1]
        window = next(((r.shape[0] + 1) // 2 for r in rel if r.shape[0] != 2 * grid - 1), 14)
    else:
        head_dim, global_idx, window = 64, [], 14
    dec_layers = 1 + max(int(k.split(".")[3]) for k in state if k.startswith("mask_decoder.transformer.layers."))
    iou_layers = [k for k in state if k.startswith("mask_decoder.iou_prediction_head.layers.") and k.endswith("weight")]
    prompt_hidden = get("prompt_encoder.no_mask_embed.weight").shape[1]
    vision = dict(hidden_size=hidden, output_channels=get("image_encoder.neck.0.weight").shape[0],
                  num_hidden_layers=n_layers, num_attention_heads=hidden // head_dim, image_size=grid * patch_size,
                  patch_size=patch_size, window_size=window, global_attn_indexes=global_idx,
                  mlp_dim=get("image_encoder.blocks.0.mlp.lin1.weight").shape[0], use_rel_pos=use_rel_pos,
                  qkv_bias="image_encoder.blocks.0.attn.qkv.bias" in state,
                  num_pos_feats=get("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix").shape[1])
    prompt = dict(hidden_size=prompt_hidden, image_size=grid * patch_size, patch_size=patch_size,
                  mask_input_channels=get("prompt_encoder.mask_downscaling.3.weight").shape[0])
    decoder = dict(hidden_size=prompt_hidden, num_hidden_layers=dec_layers,
                   mlp_dim=get("mask_decoder.transformer.layers.0.mlp.lin1.weight").shape[0],
                   attention_downsample_rate=prompt_hidden // get(
                       "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight").shape[0],
                   num_multimask_outputs=get("mask_decoder.mask_tokens.weight").shape[0] - 1,
                   iou_head_depth=len(iou_layers),
                   iou_head_hidden_dim=get("mask_decoder.iou_prediction_head.layers.0.weight").shape[0])
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def load_original_sam(path: str | Path):
    """Build a SamModel from a segment-anything ``.pth`` (safe, strict). Returns (model, file SHA-256)."""
    from transformers import SamModel

    path = Path(path)
    state = load_state_dict(path)  # weights_only=True; unwraps {"model": ...}
    try:
        config = sam_config_from_original(state)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    model = SamModel(config).eval()
    load_into(model, convert_original_sam(state), source=str(path))
    return model, sha256_of(path)


# -- builders -------------------------------------------------------------------------------------------------------
def _build(cls: type[SamBackbone], hub_id: str, weights: str | None, allow_download: bool,
           normalization: Normalization, fast: bool, inference: dict) -> SamBackbone:
    from transformers import SamModel

    if weights is not None and Path(weights).is_file():
        model, sha = load_original_sam(weights)
    else:
        model, sha = load_hf_folder(SamModel, weights, model_types=("sam",), hub_id=hub_id,
                                    allow_download=allow_download, arch=cls.name)
    options = inference_options(fast, base=VIT_FAST if fast else None, **inference)
    return cls(model, normalization=normalization, weights_sha256=sha, inference=options)


@register_backbone("sam")
def build_sam(weights: str | None = None, allow_download: bool = False,
              normalization: Normalization = "sam", fast: bool = True, **inference) -> SamBackbone:
    """Official SAM from a local Hugging Face folder or a segment-anything ``.pth`` file.

    ``fast`` and ``**inference`` (runtime, precision, threads, ...) set how the image encoder runs, as for
    LiteMedSAM (:func:`roiprompt.runtime.inference_options`).

    Raises:
        CheckpointError: ``weights`` is None (SAM ships no offline weights; ``facebook/sam-vit-base`` is fetched
            only with ``allow_download=True``), or the folder/file is missing, unsafe or does not fit.
    """
    return _build(SamBackbone, "facebook/sam-vit-base", weights, allow_download, normalization, fast, inference)


@register_backbone("medsam")
def build_medsam(weights: str | None = None, allow_download: bool = False,
                 normalization: Normalization = "minmax", fast: bool = True, **inference) -> SamBackbone:
    """MedSAM from a local Hugging Face folder (``wanglab/medsam-vit-base`` layout) or ``medsam_vit_b.pth``;
    ``fast`` and ``**inference`` as for :func:`build_sam`."""
    return _build(MedSamBackbone, "wanglab/medsam-vit-base", weights, allow_download, normalization, fast,
                  inference)
