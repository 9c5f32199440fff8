"""Dataset readers (official folder layouts), image/mask reading and validation, few-shot sampling.

Example::

    from roiprompt.data import load_dataset, sample_per_class
    data = load_dataset("busbra")                      # lazy: 1875 samples, nothing read yet
    train = data.split("train")
    support = train.subset(sample_per_class(train, k=8, seed=0))
    sample = support[0]                                # Sample(id, image HxW uint8, masks {"lesion": HxW bool}, ...)
"""

from __future__ import annotations

from .datasets import Dataset, default_root, find_datasets, list_datasets, load_dataset
from .io import IMAGE_EXTENSIONS, read_image, read_label_map, read_mask, write_mask_nifti, write_mask_png
from .nifti import write_label_nifti
from .overlay import write_attention_png, write_overlay_png
from .sampling import sample_fraction, sample_per_class, sample_references, sample_support
from .splits import Split, resolve_split
from .validate import check_image, check_mask

__all__ = [
    "Dataset", "IMAGE_EXTENSIONS", "check_image", "check_mask", "default_root", "find_datasets", "list_datasets",
    "load_dataset", "read_image", "read_mask", "resolve_split", "sample_fraction", "sample_per_class",
    "sample_references", "sample_support", "Split",
    "read_label_map", "write_label_nifti", "write_mask_nifti", "write_mask_png",
    "write_attention_png",
    "write_overlay_png",
]
