"""Class prompts as text (methods.md §3.1.3): the prompts of each class, the text encoder that embeds them (the
backbone's own aligned tower, e.g. CLIP's, or all-MiniLM-L6-v2 offline) and :class:`TextPromptConfig`, the
settings every classifier with a text branch shares (MedFocusCLIP, CLIP-Adapter, zero-shot).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F

from ...errors import InputError
from ...models.backbones.base import Backbone, load_backbone
from ...models.backbones.clip import ClipBackbone
from ..config import ConfigError
from .base import ClassifierConfig


@dataclass(frozen=True)
class TextPromptConfig(ClassifierConfig):
    """:class:`ClassifierConfig` plus the text branch.

    Attributes:
        text_encoder: "auto" (the backbone's aligned text tower, else MiniLM), "minilm" or "backbone".
        templates: prompt templates, ``{}`` = the class phrase (the class name unless ``class_prompts`` has it).
        class_prompts: {class: prompt or list of prompts} used instead of the templates for that class.
    """

    text_encoder: Literal["auto", "minilm", "backbone"] = "auto"
    templates: tuple[str, ...] = ("a medical image of {}.", "an image showing {}.", "{}.")
    class_prompts: Mapping[str, Any] | None = None

    def validate(self) -> None:
        super().validate()
        if isinstance(self.templates, str) or not self.templates or not all(isinstance(t, str) for t in self.templates):
            raise ConfigError("templates", self.templates, "a non-empty sequence of strings, each with {} for the "
                              "class phrase")


def class_prompts(classes: Sequence[str], templates: Sequence[str],
                  overrides: Mapping[str, Any] | None = None) -> list[list[str]]:
    """The prompts of each class: ``overrides[c]`` (a string or a list) or the templates filled with ``c``."""
    out = []
    for c in classes:
        given = (overrides or {}).get(c)
        if given is None:
            out.append([t.format(c) for t in templates])
        else:
            out.append([given] if isinstance(given, str) else [str(p) for p in given])
        if not out[-1]:
            raise InputError(f"class {c!r} has no prompt")
    return out


@lru_cache(maxsize=2)
def _text_backbone(name: str) -> Backbone:
    return load_backbone(name)


def text_encoder_for(backbone: Backbone, choice: str = "auto") -> Backbone:
    """The text encoder a method uses with ``backbone``: its own aligned tower (CLIP) or MiniLM."""
    aligned = is_aligned(backbone)
    if choice == "auto":
        choice = "backbone" if aligned else "minilm"
    if choice == "backbone":
        if not backbone.has_text_encoder:
            raise InputError(f"backbone {backbone.name!r} has no text tower; use text_encoder='minilm'")
        return backbone
    if choice == "minilm":
        return _text_backbone("minilm")
    raise InputError(f"text_encoder={choice!r} is not allowed; expected 'auto', 'minilm' or 'backbone'")


@torch.no_grad()
def encode_class_prompts(encoder: Backbone, prompts: list[list[str]]) -> torch.Tensor:
    """(C, Dt): per class, the L2-normalised mean of its L2-normalised prompt embeddings."""
    rows = [F.normalize(F.normalize(encoder.encode_text(p).float(), dim=-1).mean(0), dim=0) for p in prompts]
    return torch.stack(rows)


def prompt_embeddings(backbone: Backbone, config: TextPromptConfig, classes: Sequence[str]) -> torch.Tensor:
    """(C, Dt) embeddings of each class's prompts (``config.templates`` / ``class_prompts``) by the text encoder
    ``config.text_encoder`` chooses for ``backbone``."""
    prompts = class_prompts(classes, config.templates, config.class_prompts)
    return encode_class_prompts(text_encoder_for(backbone, config.text_encoder), prompts)


def is_aligned(backbone: Backbone) -> bool:
    """True when ``backbone`` has a text tower aligned to its image tower (CLIP with its tokenizer)."""
    return isinstance(backbone, ClipBackbone) and backbone.tokenizer is not None
