"""Import every built-in method module so its ``@register_method`` runs."""

from .baselines import box_prompt  # noqa: F401
from .med_persam import method  # noqa: F401
from .med_persam_plus import method as med_persam_plus_method  # noqa: F401
from .baselines import matcher, persam, self_prompt  # noqa: F401
from .classification import clip_adapter, finetune, medfocusclip, probes, segprompt  # noqa: F401
from .concept_text import method as concept_text_method  # noqa: F401
