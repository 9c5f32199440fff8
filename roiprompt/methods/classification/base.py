"""The few-shot classifier contract shared by SegPrompt and its baselines: one config, one training recipe, one
``fit`` / ``predict`` path.

A classifier turns each (image, ROI mask) into a dict of input tensors (``_inputs``: frozen tokens, or pixels
for fine-tuning), trains its ``model`` on the stacked inputs of every augmented view of the support set, and
predicts from view 0 of the test image. The ROI mask comes with the sample, from the caller, or from a
segmenter the caller passes (``box_prompt`` from a box, ``med_persam`` from one reference): the label-efficient
chain (methods.md §2).
"""

from __future__ import annotations

import abc
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import CheckpointError, InputError
from ...models.backbones.base import Backbone
from ...models.cache import image_key
from ...types import Prediction, Sample
from ..base import Method
from ..config import ConfigError, MethodConfig, check_int, check_number
from .features import ViewAugment, ViewEncoder, checked_pair, roi_mask


@dataclass(frozen=True)
class ClassifierConfig(MethodConfig):
    """Settings shared by every classifier; the training recipe is methods.md §2.3.

    Attributes:
        classes: class labels in output order (None: the sorted labels of the support set); any sequence,
            stored as a tuple of strings.
        num_classes: expected number of classes, checked at ``fit`` (None: any).
        structures: which masks of a sample form the ROI (their union); None = all of the sample's masks; a
            single name or a sequence, stored as a tuple.
        allow_empty_mask: accept an empty ROI mask (segmentation tokens then say "no ROI"); by default an empty
            mask is an error, since it usually means a failed segmentation or a wrong file.
        views: augmented views per training image (view 0 is the image itself).
        grid: side of the token grid the frozen embedding is pooled to.
        epochs, min_steps: the schedule is max(epochs, min_steps) steps, so it scales with the support size;
            an epoch is one pass over the training images, each drawn as one of its views (the views augment;
            they do not multiply the epoch).
        max_steps: hard cap on the steps (None: none), for slow baselines on a CPU budget.
        patience, tolerance: stop early once the support loss has stopped falling: the mean of the last
            ``patience`` step losses is not ``tolerance`` (relative) below the mean of the ``patience`` before
            them (None: train the whole schedule). Never before ``min_steps``.
        batch_size, lr, weight_decay, warmup_steps, label_smoothing: AdamW + cosine schedule, smoothed CE.
        seed: seeds the head's initialisation and the batch sampler.
    """

    classes: tuple[str, ...] | None = None
    num_classes: int | None = None
    structures: tuple[str, ...] | None = None
    allow_empty_mask: bool = False
    views: int = 4
    grid: int = 16
    epochs: int = 60
    # Until issue 22 every fit trained at least 300 steps (a 16-per-class SegPrompt fit: 150 s on 2 cores). The
    # scaled schedule and the early stop were chosen on BUS-BRA's validation split and checked on its test fold:
    # benchmarks/classify_schedule.py, RESULTS.md "Classifier training schedule".
    min_steps: int = 50
    max_steps: int | None = None
    patience: int | None = 20
    tolerance: float = 0.01
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 10
    label_smoothing: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        # normalise before validating: a list from JSON or a single structure name are common spellings
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if isinstance(self.structures, str):
            object.__setattr__(self, "structures", (self.structures,))
        elif self.structures is not None:
            object.__setattr__(self, "structures", tuple(self.structures))
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        check_int("num_classes", self.num_classes, 2, optional=True)
        if self.classes is not None and (len(set(self.classes)) < 2 or len(set(self.classes)) != len(self.classes)):
            raise ConfigError("classes", self.classes, "at least two distinct class labels, or None")
        check_int("views", self.views, 1)
        check_int("grid", self.grid, 1)
        check_int("epochs", self.epochs, 0)
        check_int("min_steps", self.min_steps, 0)
        if self.epochs == 0 and self.min_steps == 0:
            raise ConfigError("epochs, min_steps", (self.epochs, self.min_steps), "at least one training step")
        check_int("max_steps", self.max_steps, 1, optional=True)
        check_int("patience", self.patience, 1, optional=True)
        check_number("tolerance", self.tolerance, 0.0, 1.0, high_open=True)
        check_int("batch_size", self.batch_size, 1)
        check_number("lr", self.lr, 0.0)
        check_number("weight_decay", self.weight_decay, 0.0)
        check_int("warmup_steps", self.warmup_steps, 0)
        check_number("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        check_int("seed", self.seed, 0)


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train_steps(n_images: int, config: ClassifierConfig) -> int:
    """The schedule's length: max(epochs over ``n_images``, min_steps), capped by ``max_steps``."""
    steps = max(config.epochs * math.ceil(n_images / config.batch_size), config.min_steps)
    return min(steps, config.max_steps) if config.max_steps else steps


def plateaued(losses: Sequence[float], patience: int, tolerance: float) -> bool:
    """Whether the loss stopped falling: the mean of the last ``patience`` values is not ``tolerance`` (relative)
    below the mean of the ``patience`` values before them (False while there are fewer than 2 x patience)."""
    if len(losses) < 2 * patience:
        return False
    recent = float(np.mean(losses[-patience:]))
    before = float(np.mean(losses[-2 * patience:-patience]))
    return recent > before * (1 - tolerance)


#: ``progress(stage, done, total)``: stage is "encoding" (images of the support set) or "training" (steps).
Progress = Callable[[str, int, int], None]


def train_classifier(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                     config: ClassifierConfig, n_images: int | None = None,
                     progress: Progress | None = None) -> list[float]:
    """Train the parameters of ``model`` that require grad with the §2.3 recipe; returns the loss per step
    (fewer than :func:`train_steps` when the loss plateaued: ``config.patience``).

    Batches are class-balanced: each item (one view of one image) is drawn with probability inversely
    proportional to its class count. ``n_images`` (default: every item is an image) sets the epoch length.
    """
    if hasattr(model, "param_groups"):  # e.g. a lower learning rate for a fine-tuned encoder
        groups = model.param_groups(config.lr)
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    opt = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    total = train_steps(n_images or len(labels), config)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_with_warmup(s, total, config.warmup_steps))
    counts = torch.bincount(labels)
    weights = 1.0 / counts[labels].double()
    gen = torch.Generator().manual_seed(config.seed)
    model.train()
    losses: list[float] = []
    for step in range(total):
        idx = torch.multinomial(weights, min(config.batch_size, len(labels)), replacement=True, generator=gen)
        batch = {k: v[idx] for k, v in inputs.items()}
        if hasattr(model, "loss"):  # a model with its own objective (e.g. MedFocusCLIP's two heads)
            loss = model.loss(labels[idx], **batch)
        else:
            loss = F.cross_entropy(model(**batch), labels[idx], label_smoothing=config.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress:
            progress("training", step + 1, total)
        if config.patience and step + 1 >= config.min_steps and plateaued(losses, config.patience,
                                                                          config.tolerance):
            break
    if progress:
        progress("training", total, total)
    model.eval()
    return losses


class ClassifierMethod(Method):
    """Base of the few-shot classifiers (SegPrompt and its baselines).

    Subclasses set ``config_class`` and ``uses_mask`` and implement :meth:`_build` (the trainable model) and,
    when they do not classify frozen tokens, :meth:`_inputs`.

    Args:
        backbone: backbone name or a built backbone (its image encoder stays frozen unless the method
            fine-tunes a copy of it).
        segmenter: a method that segments (box-prompted, one-shot or text-free) and supplies the ROI mask when
            ``predict`` gets none.
        **kwargs: ``weights``, ``cache_dir`` (cached encoder tokens) and fields of ``config_class``, as
            :class:`~roiprompt.methods.base.Method`.
    """

    config_class: ClassVar[type[ClassifierConfig]] = ClassifierConfig
    uses_mask: ClassVar[bool] = True

    def __init__(self, backbone: str | Backbone = "litemedsam", segmenter: Method | None = None,
                 **kwargs: Any) -> None:
        if segmenter is not None and getattr(getattr(segmenter, "info", None), "task", "classification") \
                == "classification":
            raise InputError(f"segmenter must be a segmentation method, got {type(segmenter).__name__}")
        super().__init__(backbone, **kwargs)
        self.encoder = ViewEncoder(self.backbone, self.config.grid, ViewAugment(), self.cache)
        self.segmenter = segmenter
        self.classes: list[str] | None = None
        self.model: nn.Module | None = None
        self.losses: list[float] = []
        self.fit_seconds = float("nan")  # the whole fit: encoding the support's views, then training
        self.train_seconds = float("nan")  # the training steps alone
        self.feature_dim = 0

    # -- subclass hooks ----------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _build(self, num_classes: int, in_dim: int) -> nn.Module:
        """The trainable model: ``model(**inputs) -> (B, num_classes)`` logits; ``in_dim`` = token channels.
        ``self.classes`` is set when it is called. Every classifier implements this."""

    def _prepare(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
        """Optional hook, called once before training with every training input and its (N,) class index (e.g.
        to set feature statistics); nothing by default."""

    def _feature_dim(self, inputs: dict[str, torch.Tensor]) -> int:
        """Optional hook: channels of the features the head reads (default: the frozen tokens')."""
        return int(inputs["tokens"].shape[1])

    def _inputs(self, image: np.ndarray, mask: np.ndarray | None, views: list[int], key: str) -> dict[str, torch.Tensor]:
        """Optional hook: model inputs of ``views`` of one image, stacked on dim 0. Default: frozen tokens +
        masks."""
        out = {"tokens": self.encoder.tokens(image, views, key)}
        if self.uses_mask:
            out["mask"] = torch.cat([self.encoder.mask(image, mask, v, key) for v in views])
        return out

    # -- the contract -------------------------------------------------------------------------------------------
    def _sample_mask(self, sample: Sample) -> np.ndarray | None:
        if not self.uses_mask:
            return None
        return roi_mask(dict(sample.masks), self.config.structures, f"sample {sample.id!r}")

    def inputs(self, image: np.ndarray, mask: np.ndarray | None = None, views: int | Sequence[int] = 1,
               source: str = "image", **prompts: Any) -> dict[str, torch.Tensor]:
        """Validated model inputs of one image (view 0 by default), resolving its ROI mask first.

        Raises:
            InputError: bad image, mask of the wrong size or values, an empty mask (unless allowed), or no mask
                and no segmenter when the method needs one.
        """
        views = list(range(views)) if isinstance(views, int) else list(views)
        image, mask = checked_pair(image, mask, source, self.config.allow_empty_mask)
        if self.uses_mask and mask is None:
            mask = self.segment(image, source=source, **prompts)
        return self._inputs(image, mask if self.uses_mask else None, views, image_key(image))

    def segment(self, image: np.ndarray, source: str = "image", **prompts: Any) -> np.ndarray:
        """The ROI mask of ``image`` from the segmenter (one structure, or the union of ``config.structures``);
        ``prompts`` go to the segmenter's ``predict`` (e.g. ``box=``), ``source`` names the image in errors."""
        if self.segmenter is None:
            raise InputError(f"{self.name} needs the ROI mask of {source}: pass mask=..., or build the method with "
                             "segmenter=load_method('box_prompt') and pass box=... (or a med_persam segmenter with "
                             "its reference set)")
        from ..oneshot import OneShotMethod

        if isinstance(self.segmenter, OneShotMethod):  # every structure from one encode, then their union
            preds = self.segmenter.predict_all(image, source=source)
            names = self.config.structures or tuple(preds)
            if missing := [s for s in names if s not in preds]:
                raise InputError(f"{self.name}: the segmenter's reference has no {missing}; it has {sorted(preds)}")
            mask = np.logical_or.reduce([preds[s].mask for s in names])
        else:
            mask = self.segmenter.predict(image, source=source, **prompts).mask
        _, mask = checked_pair(image, mask, f"{source} (segmenter {self.segmenter.name})",
                               self.config.allow_empty_mask)
        return mask

    def fit(self, support: Sequence[Sample], progress: Progress | None = None) -> "ClassifierMethod":
        """Train on every augmented view of ``support`` (labelled samples with their ROI masks);
        ``progress(stage, done, total)`` hears of each image encoded and each training step.

        Raises:
            InputError: an unlabelled sample, fewer than two classes, a label outside ``config.classes``, a class
                count that disagrees with ``num_classes``, or a bad image/mask (the message names the sample).
        """
        support = list(support)
        if not support:
            raise InputError(f"{self.name}: fit needs labelled samples; got none")
        if unlabelled := [s.id for s in support if s.label is None]:
            raise InputError(f"{self.name}: samples without a label: {unlabelled[:5]}")
        labels = [str(s.label) for s in support]
        classes = list(self.config.classes) if self.config.classes else sorted(set(labels))
        if unknown := sorted(set(labels) - set(classes)):
            raise InputError(f"{self.name}: labels {unknown} are not in classes {classes}")
        if len(classes) < 2:
            raise InputError(f"{self.name}: need at least two classes to classify, got {classes}")
        if self.config.num_classes is not None and len(classes) != self.config.num_classes:
            raise InputError(f"{self.name}: num_classes={self.config.num_classes} but the classes are {classes}")
        start = time.perf_counter()
        views = list(range(self.config.views))
        parts = []
        for n, s in enumerate(support):
            parts.append(self.inputs(s.image, self._sample_mask(s), views, source=f"sample {s.id!r}"))
            if progress:
                progress("encoding", n + 1, len(support))
        inputs = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        y = torch.tensor([classes.index(label) for label in labels]).repeat_interleave(len(views))
        self.feature_dim = self._feature_dim(inputs)
        self.classes, self.model = classes, None  # _build may read the class names (e.g. for text prompts)
        with torch.random.fork_rng():
            torch.manual_seed(self.config.seed)
            model = self._build(len(classes), self.feature_dim)
        self._prepare(model, inputs, y)
        train_start = time.perf_counter()
        self.losses = train_classifier(model, inputs, y, self.config, n_images=len(support), progress=progress)
        self.train_seconds = time.perf_counter() - train_start
        self.model = model
        self.fit_seconds = time.perf_counter() - start
        return self

    @torch.no_grad()
    def predict_proba(self, inputs: dict[str, torch.Tensor], batch_size: int = 64) -> np.ndarray:
        """(N, C) class probabilities of stacked ``inputs`` (from :meth:`inputs`), in ``self.classes`` order."""
        if self.model is None:
            raise InputError(f"{self.name}: call fit() before predicting")
        n = len(next(iter(inputs.values())))
        self.model.eval()
        out = [F.softmax(self.model(**{k: v[i:i + batch_size] for k, v in inputs.items()}), dim=1)
               for i in range(0, n, batch_size)]
        return torch.cat(out).numpy()

    def predict(self, image: np.ndarray, mask: np.ndarray | None = None, *, source: str = "image",
                **prompts: Any) -> Prediction:
        """Classify one image given its ROI mask (or the segmenter's, from ``prompts`` such as ``box=``);
        ``source`` names the image in error messages.

        Returns:
            Prediction with ``label``, ``scores`` = {class: probability} and ``extras["mask"]`` (the ROI used).
        """
        if self.uses_mask and mask is None:
            image = checked_pair(image, None, source, False)[0]
            mask = self.segment(image, source=source, **prompts)
        probs = self.predict_proba(self.inputs(image, mask, source=source))[0]
        label = self.classes[int(np.argmax(probs))]
        return Prediction(label=label, scores={c: float(p) for c, p in zip(self.classes, probs)},
                          extras={"mask": mask})

    # -- saving (Method.save / load_fitted) -----------------------------------------------------------------------
    def _fitted_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.model is None:
            raise InputError(f"{self.name}: call fit() before saving")
        shared = _backbone_keys(self.model, self.backbone)  # the frozen backbone is loaded, never saved
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items() if k not in shared}
        meta = {"classes": list(self.classes), "feature_dim": self.feature_dim, "losses": self.losses,
                "fit_seconds": self.fit_seconds}
        return meta, tensors

    def _restore_fitted_state(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.classes, self.feature_dim, self.model = [str(c) for c in meta["classes"]], int(meta["feature_dim"]), None
        with torch.random.fork_rng():  # _build draws an initialisation the saved weights then replace
            torch.manual_seed(self.config.seed)
            model = self._build(len(self.classes), self.feature_dim)
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if set(missing) != _backbone_keys(model, self.backbone) or unexpected:
            raise CheckpointError(f"{self.name}: the saved head does not fit (missing {sorted(missing)[:5]}, "
                                  f"unexpected {sorted(unexpected)[:5]})")
        self.model = model.eval()
        self.losses, self.fit_seconds = [float(x) for x in meta["losses"]], float(meta["fit_seconds"])

    def _fitted_parts(self) -> dict[str, Method]:
        return {"segmenter": self.segmenter} if self.segmenter is not None else {}

    # -- reporting ------------------------------------------------------------------------------------------------
    def trainable_parameters(self) -> int:
        """Parameters updated by ``fit``, counted from ``requires_grad`` (after ``fit``)."""
        if self.model is None:
            raise InputError(f"{self.name}: call fit() before counting trainable parameters")
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def parameter_report(self) -> dict[str, Any]:
        """Trainable parameters, the image encoder's, and their ratio to full fine-tuning (encoder + linear head)."""
        trainable = self.trainable_parameters()
        encoder = sum(p.numel() for p in self.backbone.image_encoder_module.parameters())
        finetune = encoder + (self.feature_dim + 1) * len(self.classes)
        return {"trainable_params": trainable, "encoder_params": encoder, "finetune_params": finetune,
                "ratio_to_finetune": trainable / finetune}

    def setting(self) -> dict[str, Any]:
        out = super().setting()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _backbone_keys(model: nn.Module, backbone: Backbone) -> set[str]:
    """State-dict keys of ``model`` that are the (shared, frozen) backbone's own tensors (e.g. a guided CLIP)."""
    own = {t.data_ptr() for t in (*backbone.parameters(), *backbone.buffers()) if t.numel()}
    return {k for k, v in model.state_dict().items() if v.numel() and v.data_ptr() in own}
