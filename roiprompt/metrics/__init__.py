"""One definition of every metric the benchmarks report (methods.md §6.3–6.4).

Modules:

- :mod:`.segmentation`: Dice, IoU, HD95 and the flag AUROC on one binary HxW mask pair at the original resolution
  (its docstring gives the empty-mask rules and the HD95 boundary convention);
- :mod:`.classification`: scikit-learn wrappers (labels may be ints or strings; ``classes`` fixes their order);
- :mod:`.intervals`: percentile bootstrap over items and t-intervals over seeds.
"""

from .classification import accuracy, auroc, balanced_accuracy, classification_scores, confusion_matrix, macro_f1
from .intervals import bootstrap_ci, bootstrap_ci_paired, summarize, t_interval
from .segmentation import Spacing, dice, empty_mask_case, flag_auroc, hd95, iou, segmentation_scores

__all__ = ["Spacing", "accuracy", "auroc", "balanced_accuracy", "bootstrap_ci", "bootstrap_ci_paired",
           "classification_scores", "confusion_matrix", "dice", "empty_mask_case", "flag_auroc", "hd95", "iou",
           "macro_f1", "segmentation_scores", "summarize", "t_interval"]
