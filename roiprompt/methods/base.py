"""The method contract and registry.

Every method, classifier or segmenter, learns from a few labelled samples (``fit``), then predicts one image at
a time (``predict``). Baselines are methods too, so every comparison goes through one code path.
"""

from __future__ import annotations

import abc
import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Sequence

import numpy as np

from ..errors import InputError, NotSavableError
from ..models.backbones.base import Backbone, load_backbone
from ..models.cache import EmbeddingCache
from ..types import Prediction, Sample
from .config import ConfigError, MethodConfig


#: What a method does, which decides how it is benchmarked and which CLI commands offer it:
#: ``segmentation`` = prompted segmentation (box / points), ``oneshot`` = segmentation from annotated reference
#: image(s), ``classification`` = few-shot classification, ``text_free_segmentation`` = supervised segmentation
#: that learns from text at training time and needs none at inference.
Task = Literal["segmentation", "oneshot", "classification", "text_free_segmentation"]
TASKS: tuple[str, ...] = typing.get_args(Task)
#: ``paper``: the published method itself; ``baseline``: what the paper compares against; ``ours``: roiprompt's own.
Role = Literal["paper", "baseline", "ours"]
ROLES: tuple[str, ...] = typing.get_args(Role)


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """How a registered method describes itself (:func:`method_info`, ``roiprompt methods``).

    Attributes:
        name: registry name, e.g. "med_persam".
        task: one of :data:`TASKS`.
        family: the method family it belongs to (the folder of the paper it serves), e.g. "med_persam".
        role: one of :data:`ROLES`.
        paper: the publication it implements or reproduces, e.g. "Med-PerSAM (2024)"; "" for roiprompt's own.
        trains: whether it learns weights from labelled data (``fit`` trains something beyond storing a reference).
        summary: the first line of the class docstring.
    """

    name: str
    task: Task
    family: str
    role: Role
    paper: str
    trains: bool
    summary: str


class Method(abc.ABC):
    """Learns from a few labelled samples, then predicts one image at a time.

    Construction is shared by every method: the keyword ``config`` is checked against ``config_class`` (a
    :class:`~roiprompt.methods.config.MethodConfig`; bad names and values raise before anything is loaded), the
    backbone is loaded (or taken as given) and the optional on-disk embedding cache is opened. Subclasses extend
    ``__init__`` only for what is theirs (a predictor, a view encoder, a segmenter) and may refuse a backbone /
    config pair in :meth:`_check_setup`.

    Args:
        backbone: a backbone registry name ("litemedsam", the offline default) or an already built
            :class:`~roiprompt.models.backbones.base.Backbone` (shared, never modified).
        weights: local checkpoint for a backbone given by name (None: its offline default); ignored when
            ``backbone`` is already built (it carries its weights).
        cache_dir: directory of the on-disk :class:`~roiprompt.models.cache.EmbeddingCache` (None: no disk cache).
        **config: fields of ``config_class``.

    Raises:
        InputError: an unknown config field, a bad config value (:class:`~roiprompt.methods.config.ConfigError`),
            or a backbone the method cannot use.
    """

    name: ClassVar[str]
    info: ClassVar[MethodInfo]
    #: The settings dataclass; every field is a keyword of ``load_method``.
    config_class: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, backbone: str | Backbone = "litemedsam", *, weights: str | None = None,
                 cache_dir: str | Path | None = None, **config: Any) -> None:
        self.config = resolve_config(self.config_class, self.name, config)
        self.backbone: Backbone = load_backbone(backbone, weights=weights) if isinstance(backbone, str) else backbone
        self.cache: EmbeddingCache | None = EmbeddingCache(cache_dir) if cache_dir else None
        self._check_setup()

    def _check_setup(self) -> None:
        """Hook: raise InputError when the config cannot work with this backbone (nothing by default)."""

    @abc.abstractmethod
    def fit(self, support: Sequence[Sample]) -> "Method":
        """Learn from ``support`` (may be empty for training-free methods); returns self."""

    @abc.abstractmethod
    def predict(self, image: np.ndarray, *, source: str = "image", **prompts: Any) -> Prediction:
        """Predict on one HxW or HxWx3 uint8 image at its original resolution.

        ``source`` names the image in error messages (e.g. its file name); ``prompts`` are method-specific
        (a box, a mask, a structure name...).
        """

    def prompts_from_truth(self, sample: Sample, structure: str | None = None) -> dict[str, Any]:
        """Prompts an *oracle* benchmark may pass to ``predict`` (e.g. the ground-truth box); none by default."""
        return {}

    def setting(self) -> dict[str, Any]:
        """The settings a benchmark records for this method: its config (paths are constructor arguments, so
        none is recorded)."""
        return dataclasses.asdict(self.config)

    # -- saving a fitted method (roiprompt/methods/saving.py writes and checks the files) ------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted method to the folder ``path``, without pickle; :func:`roiprompt.load_fitted` reads it.

        The folder holds ``roiprompt_fitted.json`` (format and roiprompt version, method name, config, backbone
        name and weights SHA-256, the SHA-256 of every tensor file, the method's JSON metadata) and
        ``tensors.safetensors`` (what the method learned, and its references or support statistics). It is
        written next to ``path`` and renamed into place, so a reader never sees half a folder; an existing fitted
        folder at ``path`` is replaced. The backbone weights and the embedding cache are not copied.

        Example:
            >>> method = roiprompt.load_method("med_persam_plus").set_reference(image, mask)
            >>> method.save("fitted/lesion")                   # a folder
            >>> same = roiprompt.load_fitted("fitted/lesion")  # e.g. in another process: identical masks

        Returns:
            The folder's path.

        Raises:
            InputError: not fitted yet (no reference / no ``fit``), or ``path`` is a folder that is not a fitted one.
            NotSavableError: a method that cannot be saved yet (the message names it).
        """
        from .saving import save_fitted

        return save_fitted(self, path)

    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Hook of :meth:`save`: ``(JSON-able metadata, {name: torch.Tensor or np.ndarray})`` of what the method
        learned. Methods that can be saved implement it with :meth:`_restore_fitted_state`; no file format code
        lives anywhere else."""
        raise NotSavableError(f"{self.name}: saving a fitted {self.name!r} is not supported yet")

    def _restore_fitted_state(self, meta: dict[str, Any], tensors: dict[str, Any]) -> None:
        """Hook of :func:`~roiprompt.methods.saving.load_fitted`: restore what :meth:`_fitted_state` returned
        (``tensors`` as ``torch.Tensor``) on a method freshly built with the same backbone and config."""
        raise NotSavableError(f"{self.name}: loading a fitted {self.name!r} is not supported yet")

    def _fitted_parts(self) -> dict[str, "Method"]:
        """Hook: methods this one was built with, saved beside it and given back to the constructor under the
        same keyword at load time (e.g. a classifier's ``segmenter``); none by default."""
        return {}


def config_values(config: MethodConfig) -> dict[str, Any]:
    """The fields of a config as keyword arguments (shallow: values are not copied)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def resolve_config(cls: type[MethodConfig], method: str, config: dict[str, Any]) -> MethodConfig:
    """Build the ``cls`` config from keyword arguments.

    Raises:
        InputError: an unknown name (with the known ones), or a bad value (a ConfigError naming ``method``).
    """
    known = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(config) - known):
        hints = [h for u in unknown for h in difflib.get_close_matches(u, known, n=1)]
        hint = f" Did you mean {hints[0]!r}?" if hints else ""
        raise InputError(f"{method}: unknown config {unknown}.{hint} Known: {sorted(known)}")
    try:
        return cls(**config)
    except ConfigError as err:
        raise err.owned_by(method) from None


_METHODS: dict[str, type[Method]] = {}


def register_method(name: str, *, task: Task, family: str, role: Role, paper: str = "",
                    trains: bool) -> Callable[[type[Method]], type[Method]]:
    """Class decorator registering a :class:`Method` under ``name`` with its :class:`MethodInfo`.

    Every argument is required (keyword-only) so that no method can be registered without describing itself; the
    CLI and the evaluation runners route by ``task``, never by name.
    """
    if task not in TASKS:
        raise ValueError(f"method {name!r}: task {task!r} is not one of {TASKS}")
    if role not in ROLES:
        raise ValueError(f"method {name!r}: role {role!r} is not one of {ROLES}")

    def add(cls: type[Method]) -> type[Method]:
        if name in _METHODS:  # two methods under one name is always a bug
            raise ValueError(f"method {name!r} is already registered by {_METHODS[name].__module__}")
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        cls.name = name
        cls.info = MethodInfo(name, task, family, role, paper, trains, summary)
        _METHODS[name] = cls
        return cls

    return add


def list_methods(task: str | None = None, family: str | None = None) -> list[str]:
    """Names of the registered methods (baselines included), optionally only those of one ``task`` / ``family``.

    Example:
        >>> roiprompt.list_methods(task="oneshot")
        ['med_persam', 'persam', 'persam_f', 'registration']

    Raises:
        InputError: an unknown task or family (with the known ones).
    """
    from . import _builtin  # noqa: F401

    if task is not None and task not in TASKS:
        raise InputError(f"unknown task {task!r}; the tasks are {list(TASKS)}")
    families = sorted({cls.info.family for cls in _METHODS.values()})
    if family is not None and family not in families:
        raise InputError(f"unknown method family {family!r}; the families are {families}")
    return sorted(n for n, cls in _METHODS.items()
                  if (task is None or cls.info.task == task) and (family is None or cls.info.family == family))


def method_info(name: str) -> MethodInfo:
    """The :class:`MethodInfo` of method ``name`` (InputError with a "did you mean" hint when unknown)."""
    return method_class(name).info


def method_class(name: str) -> type[Method]:
    """The registered class of method ``name`` (raises InputError with a "did you mean" hint when unknown)."""
    from . import _builtin  # noqa: F401

    if name not in _METHODS:
        close = difflib.get_close_matches(name, _METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputError(f"unknown method {name!r}.{hint} Available: {sorted(_METHODS)}")
    return _METHODS[name]


def load_method(name: str, backbone: str | Backbone = "litemedsam", weights: str | None = None,
                cache_dir: str | Path | None = None, **config: Any) -> Method:
    """Build a method by name.

    Args:
        name: one of :func:`list_methods`, e.g. ``"box_prompt"``.
        backbone: backbone registry name ("litemedsam", the offline default) or an already built
            :class:`~roiprompt.models.backbones.base.Backbone`.
        weights: local checkpoint for a backbone given by name (None: its offline default; ignored for a built one).
        cache_dir: on-disk embedding cache directory (None: none).
        **config: fields of the method's ``config_class`` dataclass, plus any extra constructor argument the
            method takes (``segmenter=`` for classifiers, ``attribute_source=`` for ``concept_text``).

    Raises:
        InputError: unknown method name (with a "did you mean" hint), unknown config field, or a bad config value
            (raised before the backbone is loaded or any image encoded).

    Example:
        >>> method = roiprompt.load_method("box_prompt")
        >>> pred = method.predict(image, box=[10, 20, 110, 140])
    """
    return method_class(name)(backbone, weights=weights, cache_dir=cache_dir, **config)
