"""Tiny random SAM, SAM 2 and CLIP, registered as first-class backbones for tests (timm's ``test_vit``).

``test-sam`` (64 px frame, 8x8x32 embedding, 32x32 masks), ``test-sam2`` (128 px, 8x8x32 embedding + 32x32x4 and
16x16x8 high-res maps, 32x32 masks) and ``test-clip`` (32 px, patch 8, width 32, 2 blocks, 16-d projection, a
character-level CLIP tokenizer) are built from a fixed seed in well under a second, so tests exercise the real
wrappers of sam.py / sam2.py / clip.py. :func:`save_tiny` writes one to a folder with ``save_pretrained`` so the
offline from-a-local-path loaders are tested too:

    >>> folder = save_tiny("sam", tmp_path)                                   # doctest: +SKIP
    >>> load_backbone("sam", weights=str(folder))                              # doctest: +SKIP
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Literal

import torch

from ...runtime import inference_options
from ...errors import CheckpointError
from .base import register_backbone
from .clip import ClipBackbone
from .sam import VIT_FAST, SamBackbone
from .sam2 import Sam2Backbone

Kind = Literal["sam", "sam2", "clip"]
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def tiny_sam_config():
    """SamConfig: ViT width 32, 2 blocks (1 windowed, 1 global), 64 px / patch 8 -> 8x8 grid; 32-d prompts."""
    from transformers import SamConfig

    return SamConfig(
        vision_config=dict(hidden_size=32, output_channels=32, num_hidden_layers=2, num_attention_heads=2,
                           image_size=64, patch_size=8, window_size=4, global_attn_indexes=[1], mlp_dim=64,
                           num_pos_feats=16),  # 2 * num_pos_feats = prompt width
        prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=8, mask_input_channels=8),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=32),
    )


def tiny_sam2_config():
    """Sam2Config: Hiera 8-16-32-64 channels, 1-1-2-1 blocks, 128 px -> FPN 32^2, 16^2, 8^2 at 32 channels."""
    from transformers import Sam2Config

    hiera = dict(model_type="sam2_hiera_det_model", hidden_size=8, num_attention_heads=1, image_size=[128, 128],
                 blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[8, 16, 32, 64],
                 num_attention_heads_per_stage=[1, 1, 2, 2], window_size_per_stage=[4, 4, 4, 2],
                 # a global block may not open a pooling stage (its pooled window would be 0): block 3, not 2
                 global_attention_blocks=[3], window_positional_embedding_background_size=[4, 4])
    return Sam2Config(
        vision_config=dict(model_type="sam2_vision_model", backbone_config=hiera,
                           backbone_channel_list=[64, 32, 16, 8], backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],
                           fpn_hidden_size=32),
        prompt_encoder_config=dict(hidden_size=32, image_size=128, patch_size=16, mask_input_channels=8),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=32),
    )


def tiny_clip_vocab() -> dict[str, int]:
    """Character-level CLIP BPE vocabulary (no merges): each printable character, alone and word-final."""
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({BOS: len(vocab), EOS: len(vocab) + 1})  # highest ids, like CLIP's 49406 / 49407
    return vocab


def tiny_clip_tokenizer():
    """A real ``CLIPTokenizer`` over :func:`tiny_clip_vocab`, built offline."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=tiny_clip_vocab(), merges=[], model_max_length=16)


def tiny_clip_config():
    """CLIPConfig: towers of width 32, 2 blocks; image 32 px / patch 8 (4x4 grid); 16 text tokens; 16-d projection."""
    from transformers import CLIPConfig

    vocab = tiny_clip_vocab()
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=16, bos_token_id=vocab[BOS], eos_token_id=vocab[EOS],
                pad_token_id=vocab[EOS])
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)


def tiny_model(kind: Kind, seed: int = 0):
    """A seeded, randomly initialised tiny ``SamModel`` / ``Sam2Model`` / ``CLIPModel`` in eval mode."""
    from transformers import CLIPModel, Sam2Model, SamModel

    builders = {"sam": (SamModel, tiny_sam_config), "sam2": (Sam2Model, tiny_sam2_config),
                "clip": (CLIPModel, tiny_clip_config)}
    model_cls, config = builders[kind]
    with torch.random.fork_rng():  # seed without disturbing the caller's random stream
        torch.manual_seed(seed)
        return model_cls(config()).eval()


def save_tiny(kind: Kind, folder: str | Path, seed: int = 0, tokenizer: bool = True) -> Path:
    """Write a tiny model (and for CLIP its tokenizer, unless ``tokenizer=False``) as a Hugging Face folder."""
    folder = Path(folder)
    tiny_model(kind, seed).save_pretrained(folder)
    if kind == "clip" and tokenizer:
        tiny_clip_tokenizer().save_pretrained(folder)
    return folder


def _no_weights(name: str, weights: str | None) -> None:
    if weights is not None:
        raise CheckpointError(f"{name!r} is a random test model and takes no weights (got {weights!r}); save it "
                              "with save_tiny() and load the folder through the real backbone name instead")


class TinySamBackbone(SamBackbone):
    name = "test-sam"


class TinySam2Backbone(Sam2Backbone):
    name = "test-sam2"


class TinyClipBackbone(ClipBackbone):
    name = "test-clip"


@register_backbone("test-sam")
def build_test_sam(weights: str | None = None, allow_download: bool = False, seed: int = 0,
                   **inference) -> SamBackbone:
    """Tiny random SAM; eager by default, like every SAM-family backbone (``runtime=`` overrides)."""
    _no_weights("test-sam", weights)
    options = inference_options(base=VIT_FAST, **inference)
    return TinySamBackbone(tiny_model("sam", seed), inference=options)


@register_backbone("test-sam2")
def build_test_sam2(weights: str | None = None, allow_download: bool = False, seed: int = 0,
                    **inference) -> Sam2Backbone:
    """Tiny random SAM 2; eager by default (``runtime=`` overrides)."""
    _no_weights("test-sam2", weights)
    options = inference_options(base=VIT_FAST, **inference)
    return TinySam2Backbone(tiny_model("sam2", seed), inference=options)


@register_backbone("test-clip")
def build_test_clip(weights: str | None = None, allow_download: bool = False, seed: int = 0) -> ClipBackbone:
    _no_weights("test-clip", weights)
    return TinyClipBackbone(tiny_model("clip", seed), tiny_clip_tokenizer(), source="test-clip")
