"""roiprompt: regions of interest as prompts for medical foundation models.

Public API::

    import roiprompt
    data = roiprompt.load_dataset("kvasir_seg")                  # lazy sequence of Sample
    method = roiprompt.load_method("box_prompt")                 # LiteMedSAM, offline weights
    pred = method.predict(data[0].image, box=[30, 40, 200, 180])  # Prediction(mask, label, scores)
"""

from __future__ import annotations

from .data import load_dataset
from .errors import CheckpointError, DataError, InputError, RoiPromptError
from .methods import Method, list_methods, load_method
from .models.backbones import Backbone, list_backbones, load_backbone
from .predictor import SamPredictor
from .types import Prediction, Prompt, Sample

__version__ = "0.1.0"

__all__ = [
    "Backbone", "CheckpointError", "DataError", "InputError", "Method", "Prediction", "Prompt", "RoiPromptError",
    "Sample", "SamPredictor", "list_backbones", "list_methods", "load_backbone", "load_dataset", "load_method",
]
