"""One definition of every metric the benchmarks report (methods.md §6.3–6.4).

Segmentation metrics take one binary HxW mask pair at the original image resolution. Dice and IoU are MONAI's
``compute_dice`` / ``compute_iou``; HD95 is MONAI's ``compute_hausdorff_distance(percentile=95)``. The empty-mask
rules of methods.md §6.3 are applied here, before MONAI sees the masks:

=====================  ====  ====  ==========================================
case                   Dice  IoU   HD95
=====================  ====  ====  ==========================================
both masks empty       1     1     0
exactly one empty      0     0     image diagonal ``hypot(H*dy, W*dx)``
=====================  ====  ====  ==========================================

HD95 boundary convention (MONAI ``get_mask_edges`` / ``get_surface_distance``, checked in tests): the boundary of a
mask is its *inner* contour, the foreground pixels with at least one 4-neighbour in the background
(``mask ^ binary_erosion(mask)``); pixels on the image border count as boundary (outside the image is background).
Distances are Euclidean between pixel centres, scaled by ``spacing`` = (row, column) pixel size. HD95 is symmetric
as MONAI defines it: ``max(q95(d(pred -> target)), q95(d(target -> pred)))``, each directed set of boundary-pixel
distances reduced by ``torch.quantile`` (linear interpolation), not the 95th percentile of the pooled distances.
A one-pixel shift gives HD95 = 1; a one-pixel mask is its own boundary.

Modules: :mod:`.segmentation` (Dice, IoU, HD95, the flag AUROC), :mod:`.classification` (scikit-learn wrappers;
labels may be ints or strings, ``classes`` fixes their order) and :mod:`.intervals` (percentile bootstrap over
items and t-intervals over seeds).
"""

from .classification import accuracy, auroc, balanced_accuracy, classification_scores, confusion_matrix, macro_f1
from .intervals import bootstrap_ci, bootstrap_ci_paired, summarize, t_interval
from .segmentation import Spacing, dice, empty_mask_case, flag_auroc, hd95, iou, segmentation_scores

__all__ = ["Spacing", "accuracy", "auroc", "balanced_accuracy", "bootstrap_ci", "bootstrap_ci_paired",
           "classification_scores", "confusion_matrix", "dice", "empty_mask_case", "flag_auroc", "hd95", "iou",
           "macro_f1", "segmentation_scores", "summarize", "t_interval"]
