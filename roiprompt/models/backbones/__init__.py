"""Backbones: one interface (:class:`Backbone`), one registry (:func:`load_backbone`)."""

from .base import Backbone, ImageEmbedding, list_backbones, load_backbone, register_backbone

__all__ = ["Backbone", "ImageEmbedding", "list_backbones", "load_backbone", "register_backbone"]
