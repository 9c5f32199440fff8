"""Import every built-in backbone module so its ``@register_backbone`` runs."""

from . import clip, litemedsam, minilm, sam, sam2, testing  # noqa: F401
