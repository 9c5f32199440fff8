"""roiprompt: regions of interest as prompts for medical foundation models.

Public API::

    import roiprompt
    data = roiprompt.load_dataset("kvasir_seg")                  # lazy sequence of Sample
    method = roiprompt.load_method("box_prompt")                 # LiteMedSAM, offline weights
    pred = method.predict(data[0].image, box=[30, 40, 200, 180])  # Prediction(mask, label, scores)
    roiprompt.metrics.dice(pred.mask, data[0].masks["polyp"])    # metrics: imported on first use
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .data import load_dataset
from .errors import CheckpointError, DataError, InputError, NotSavableError, RoiPromptError
from .methods import Method, list_methods, load_fitted, load_method, method_info
from .models.backbones import Backbone, list_backbones, load_backbone
from .predictor import SamPredictor
from .types import Prediction, Prompt, Sample

if TYPE_CHECKING:
    from . import metrics

from .version import __version__  # noqa: E402

__all__ = [
    "Backbone", "CheckpointError", "DataError", "InputError", "Method", "NotSavableError", "Prediction", "Prompt",
    "RoiPromptError", "Sample", "SamPredictor", "list_backbones", "list_methods", "load_backbone", "load_dataset",
    "load_fitted", "load_method", "method_info", "metrics",
]


def __getattr__(name: str) -> Any:
    """``roiprompt.metrics`` on first use: importing it eagerly (scikit-learn, scipy.stats) would add ~0.6 s to
    every ``import roiprompt``, e.g. to each command line call that never scores anything."""
    if name == "metrics":
        import importlib

        return importlib.import_module(".metrics", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
