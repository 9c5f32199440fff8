"""The method contract and registry.

Every method, classifier or segmenter, learns from a few labelled samples (``fit``), then predicts one image at
a time (``predict``). Baselines are methods too, so every comparison goes through one code path.
"""

from __future__ import annotations

import abc
import dataclasses
import difflib
from typing import Any, Callable, ClassVar, Literal, Sequence

import numpy as np

from ..errors import InputError
from ..types import Prediction, Sample


class Method(abc.ABC):
    """Learns from a few labelled samples, then predicts one image at a time."""

    name: ClassVar[str]
    task: ClassVar[Literal["classification", "segmentation"]]

    @abc.abstractmethod
    def fit(self, support: Sequence[Sample]) -> "Method":
        """Learn from ``support`` (may be empty for training-free methods); returns self."""

    @abc.abstractmethod
    def predict(self, image: np.ndarray, **prompts: Any) -> Prediction:
        """Predict on one HxW or HxWx3 uint8 image at its original resolution."""

    def prompts_from_truth(self, sample: Sample, structure: str | None = None) -> dict[str, Any]:
        """Prompts an *oracle* benchmark may pass to ``predict`` (e.g. the ground-truth box); none by default."""
        return {}

    def setting(self) -> dict[str, Any]:
        """The settings a benchmark records for this method: its ``config`` dataclass, minus paths."""
        config = getattr(self, "config", None)
        if config is None or not dataclasses.is_dataclass(config):
            return {}
        return {k: v for k, v in dataclasses.asdict(config).items() if k not in ("weights", "cache_dir")}


def resolve_config(cls: type, method: str, config: dict[str, Any]) -> Any:
    """Build the ``cls`` config dataclass from keyword arguments, refusing unknown names (InputError)."""
    known = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(config) - known):
        raise InputError(f"{method}: unknown config {unknown}; known: {sorted(known)}")
    return cls(**config)


_METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator registering a :class:`Method` under ``name``."""

    def add(cls: type[Method]) -> type[Method]:
        if name in _METHODS:  # two methods under one name is always a bug
            raise ValueError(f"method {name!r} is already registered by {_METHODS[name].__module__}")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return add


def list_methods() -> list[str]:
    """Names of every registered method (baselines included)."""
    from . import _builtin  # noqa: F401

    return sorted(_METHODS)


def method_class(name: str) -> type[Method]:
    """The registered class of method ``name`` (raises InputError with a "did you mean" hint when unknown)."""
    from . import _builtin  # noqa: F401

    if name not in _METHODS:
        close = difflib.get_close_matches(name, _METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputError(f"unknown method {name!r}.{hint} Available: {sorted(_METHODS)}")
    return _METHODS[name]


def load_method(name: str, backbone: str = "litemedsam", **config: Any) -> Method:
    """Build a method by name.

    Args:
        name: one of :func:`list_methods`, e.g. ``"box_prompt"``.
        backbone: backbone registry name ("litemedsam", the offline default) or an already built backbone.
        **config: fields of the method's ``Config`` dataclass (and ``weights=...`` for the backbone).

    Raises:
        InputError: unknown method name (with a "did you mean" hint) or unknown config field.

    Example:
        >>> method = roiprompt.load_method("box_prompt")
        >>> pred = method.predict(image, box=[10, 20, 110, 140])
    """
    return method_class(name)(backbone=backbone, **config)
