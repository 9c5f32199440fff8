"""Import every built-in method module so its ``@register_method`` runs."""

from .baselines import box_prompt  # noqa: F401
