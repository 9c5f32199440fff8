"""Few-shot classification with ROI masks as prompts: SegPrompt and its baselines, one code path.

* :mod:`.segprompt`: ``segprompt`` (segmentation tokens + prompt tokens on frozen tokens) and ``vpt`` (no mask);
* :mod:`.probes`: ``linear_probe`` and ``linear_probe_masked`` on pooled frozen tokens;
* :mod:`.finetune`: ``finetune`` and ``mask_channel`` (the encoder trains);
* :mod:`.base`: the shared config, training recipe and ``fit`` / ``predict``; :mod:`.features`: views, masks and
  cached tokens.
"""

from .base import ClassifierConfig, ClassifierMethod
from .features import ViewAugment, ViewEncoder

__all__ = ["ClassifierConfig", "ClassifierMethod", "ViewAugment", "ViewEncoder"]
