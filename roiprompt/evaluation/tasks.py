"""The benchmark task definitions, in one place: classification tasks with their class prompts, the supervised
segmentation tasks of the conceptual-text segmenters, and the test-time mask sources of the classifiers.

Nothing here is heavy to import (no torch): the CLI reads it to build its help. The runners resolve a
``(dataset, label / structure)`` request with :func:`classification_task` / :func:`segmentation_task`: the
official datasets get their entries below; any other dataset (your ``folder``) gets a generic task built from
what it has.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import InputError

# The classification tasks of methods.md §6.1, with class prompts for the methods that read text (MedFocusCLIP).
TASKS: dict[str, dict[str, Any]] = {
    "busbra_pathology": dict(dataset="busbra", label="pathology", structures=None, class_prompts={
        "benign": ["an ultrasound image of a benign breast lesion",
                   "a breast ultrasound showing a benign, well-circumscribed mass",
                   "a benign breast tumour on ultrasound"],
        "malignant": ["an ultrasound image of a malignant breast lesion",
                      "a breast ultrasound showing a malignant, irregular mass",
                      "a malignant breast tumour on ultrasound"]}),
    "busbra_birads": dict(dataset="busbra", label="birads", structures=None, class_prompts={
        "2": ["an ultrasound image of a BI-RADS 2 breast lesion", "a benign breast finding on ultrasound"],
        "3": ["an ultrasound image of a BI-RADS 3 breast lesion", "a probably benign breast lesion on ultrasound"],
        "4": ["an ultrasound image of a BI-RADS 4 breast lesion", "a suspicious breast lesion on ultrasound"],
        "5": ["an ultrasound image of a BI-RADS 5 breast lesion",
              "a breast lesion highly suggestive of malignancy on ultrasound"]}),
    "jsrt_nodule": dict(dataset="jsrt", label=None, structures=("left_lung", "right_lung"), class_prompts={
        "nodule": ["a chest x-ray with a lung nodule", "a chest radiograph showing a pulmonary nodule"],
        "normal": ["a normal chest x-ray", "a chest radiograph with clear lungs and no nodule"]}),
}

# dataset -> (structure name used by the segmenter, masks whose union it is, sentence keyword, class-name prompt)
SEG_TASKS: dict[str, dict[str, Any]] = {
    "kvasir_polyp": dict(dataset="kvasir_seg", structure="polyp", parts=("polyp",), keyword="polyp area",
                         class_prompt="a polyp"),
    "busbra_lesion": dict(dataset="busbra", structure="lesion", parts=("lesion",), keyword="tumor area",
                          class_prompt="a breast lesion"),
    "jsrt_lungs": dict(dataset="jsrt", structure="lungs", parts=("left_lung", "right_lung"), keyword="lung area",
                       class_prompt="the lungs"),
    "jsrt_heart": dict(dataset="jsrt", structure="heart", parts=("heart",), keyword="heart area",
                       class_prompt="the heart"),
}

#: Test-time ROI masks of the classification benchmark (``evaluation/classification.py`` module doc).
#: "oneshot" is the default one-shot method (:data:`~roiprompt.methods.oneshot.DEFAULT_ONESHOT_METHOD`) from one
#: train reference; "med_persam" names the paper's pipeline.
MASK_SOURCES = ("gt", "gt_eroded", "gt_dilated", "box_prompt", "oneshot", "med_persam")


def classification_task(dataset: str, label: str | None = None) -> dict[str, Any] | None:
    """The :data:`TASKS` entry of ``(dataset, label)`` (its class prompts), or None for any other pair."""
    return next((t for t in TASKS.values() if t["dataset"] == dataset and t["label"] == label), None)


def segmentation_task(dataset: str, structure: str | None = None,
                      structures: Sequence[str] | None = None) -> dict[str, Any]:
    """The supervised segmentation task of ``dataset`` (and ``structure``), as a :data:`SEG_TASKS`-style dict.

    A :data:`SEG_TASKS` entry when one matches; otherwise (e.g. a ``folder`` dataset) a generic task that
    segments ``structure`` (default: the dataset's only structure, from ``structures``) with the method's own
    defaults for the keyword ("<structure> area") and the class-name prompt ("a <structure>").

    Raises:
        InputError: several tasks or structures fit and none was named, or ``structure`` is not in ``structures``.
    """
    known = [t for t in SEG_TASKS.values() if t["dataset"] == dataset]
    matches = [t for t in known if structure is None or t["structure"] == structure]
    if len(matches) == 1:
        return dict(matches[0])
    if len(matches) > 1:
        raise InputError(f"dataset {dataset!r} has several segmentation tasks; choose one with --structure: "
                         + ", ".join(t["structure"] for t in matches))
    available = list(structures or [])
    if structure is None:
        if len(available) != 1:
            raise InputError(f"dataset {dataset!r} has structures {available}; choose one with --structure")
        structure = available[0]
    elif available and structure not in available:
        raise InputError(f"dataset {dataset!r} has no structure {structure!r}; it has {available}"
                         + (f" (tasks: {[t['structure'] for t in known]})" if known else ""))
    return dict(dataset=dataset, structure=structure, parts=(structure,), keyword=None, class_prompt=None)
