"""Conceptual text prompts (methods.md §4, CoTexNet on LiteMedSAM): text-free segmentation whose decoder learned
from attribute sentences of the training ROIs, and its baselines.

Registered names (one code path, one training recipe):

* ``concept_text``: the distilled student. Training conditions the decoder on the teacher's text (attribute
  sentence + pseudo-text token of the ROI) mixed with the student's prediction ``ŷ`` (self-adding noise) and
  distils the text into ``ŷ``; inference reads the image only (``c = a ŷ + b``), no text encoder is loaded.
* ``concept_text_teacher``: the same fitted model at test time with the real (oracle) attribute text of the test
  ROI: an upper bound that needs the test mask. ``ConceptText.as_teacher()`` (``ConceptTextTeacher.sharing``)
  shares the student's weights.
* ``concept_text_class_name``: the decoder conditioned on one fixed class-name sentence ("a polyp"), no KD.
* ``concept_text_no_text``: the decoder conditioned on a learned constant (no text at all).

Frozen: the LiteMedSAM image encoder (embeddings cached once per image) and the text encoder (MiniLM, or a CLIP
text tower from a local folder through the same ``text_with_slots`` interface when it has one). Trained: a copy
of the mask decoder (~4 M), the FiLM/token projections, ``g_roi``, ``g_pred`` and the conditioning scalars.

Our CPU choices (methods.md §4.3 "CPU recipe" and §4.4): no augmented views (one cached embedding per image);
the "class token" of an image is the mean of its 256x64x64 embedding; the ROI feature that feeds ``g_roi`` is the
mask-weighted mean of the same embedding (``roi_feature="masked_pool"``, no extra encoder pass) unless
``roi_feature="roi_image"`` asks for the paper's separate encoding of the background-zeroed ROI image; training
runs a fixed number of steps (``max_steps``) instead of 500 epochs with early stopping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from ...data.validate import check_image, check_mask
from ...errors import InputError
from ...models.backbones.base import Backbone, load_backbone
from ...models.cache import encode_cached
from ...prompts.transforms import Frame
from ...types import Prediction, Sample
from ..base import Method, config_values, register_method
from ..classification.base import cosine_with_warmup
from ..config import MethodConfig, check_int, check_number
from .attributes import roi_image
from .sources import AttributeSource, MeasuredAttributes
from .model import (ConditionedDecoder, Conditioning, EmbeddingPredictor, PseudoText, dice_ce_loss,
                    distillation_loss)

PLACEHOLDER = "[unused0]"
_C = TypeVar("_C", bound="ConceptText")


@dataclass(frozen=True)
class ConceptTextConfig(MethodConfig):
    """Settings of the conceptual-text segmenters (methods.md §4; defaults are the CPU recipe).

    Attributes:
        structure: the mask of each sample to segment (None: the sample's only mask).
        keyword: the sentence's object word, e.g. "polyp area" (None: "<structure> area").
        class_prompt: ``concept_text_class_name``'s fixed sentence (None: "a <structure>").
        template: prepended to each attribute sentence; its placeholder takes the pseudo-text token.
        extended_attributes: add margin, contrast and texture to the sentence (the ablation of §4.5).
        roi_feature: "masked_pool" (mask-weighted mean of the image embedding) or "roi_image" (encode the
            background-zeroed ROI image, the paper's; one extra encoder pass per training image).
        train_decoder: train the mask decoder copy (default) or freeze it (ablation).
        self_noise: mix the student's ``ŷ`` into the training condition (alpha learned from 0.2); False fixes
            alpha = 0: KD without noise (the ablation of §4.5).
        epochs, max_steps, batch_size, lr, weight_decay, warmup_steps: AdamW + cosine; steps =
            min(epochs x images / batch, max_steps).
        kd_weight, kd_temperature: weight and temperature of the distillation KL.
        text_encoder: "minilm" (offline default) or "clip" (a CLIP text tower; ``text_weights`` = its local
            Hugging Face folder, tokenizer included): any backbone with ``text_with_slots``.
        text_weights: local weights of the text encoder (None: its offline default).
        seed: initialisation and batch order.
    """

    structure: str | None = None
    keyword: str | None = None
    class_prompt: str | None = None
    template: str = f"Segmentation area of {PLACEHOLDER}. "
    extended_attributes: bool = False
    roi_feature: Literal["masked_pool", "roi_image"] = "masked_pool"
    train_decoder: bool = True
    self_noise: bool = True
    epochs: int = 50
    max_steps: int = 300
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 10
    kd_weight: float = 10.0
    kd_temperature: float = 0.1
    text_encoder: str = "minilm"
    text_weights: str | None = None
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        check_int("epochs", self.epochs, 0)  # the schedule runs at least one step whatever the epochs
        check_int("max_steps", self.max_steps, 1)
        check_int("batch_size", self.batch_size, 1)
        check_number("lr", self.lr, 0.0)
        check_number("weight_decay", self.weight_decay, 0.0)
        check_int("warmup_steps", self.warmup_steps, 0)
        check_number("kd_weight", self.kd_weight, 0.0)
        check_number("kd_temperature", self.kd_temperature, 0.0, low_open=True)
        check_int("seed", self.seed, 0)


class _Segmenter(nn.Module):
    """Every trainable part; which are used depends on the method's ``conditioning`` mode."""

    def __init__(self, sam_model: nn.Module, dim: int, text_dim: int, token_dim: int, train_decoder: bool) -> None:
        super().__init__()
        self.pseudo = PseudoText(dim, token_dim)
        self.predictor = EmbeddingPredictor(dim, text_dim)
        self.cond = Conditioning()
        self.constant = nn.Parameter(torch.full((text_dim,), 0.5))  # the no-text baseline's learned "text"
        self.decoder = ConditionedDecoder(sam_model, text_dim, train_decoder)


class ConceptText(Method):
    """Text-free segmentation distilled from ROI attribute text (see the module docstring).

    Example:
        >>> seg = roiprompt.load_method("concept_text", structure="polyp", keyword="polyp area")
        >>> seg.fit(train_samples)                 # Samples with masks; text is measured from them
        >>> seg.predict(image).mask                # image only
        >>> seg.as_teacher().predict(image, mask=truth)   # oracle text of the true ROI (upper bound)
    """

    config_class = ConceptTextConfig
    conditioning: ClassVar[str] = "student"  # "student" | "teacher" | "class_name" | "no_text"

    def __init__(self, backbone: str | Backbone = "litemedsam", attribute_source: AttributeSource | None = None,
                 **kwargs: Any) -> None:
        """``attribute_source``: where the training sentences come from (None: measured from the masks, offline);
        ``kwargs``: ``weights``, ``cache_dir`` (image embeddings) and config fields, as :class:`Method`."""
        super().__init__(backbone, **kwargs)
        self.attribute_source = attribute_source or MeasuredAttributes(extended=self.config.extended_attributes)
        self.model: _Segmenter | None = None
        self.structure: str | None = None
        self.losses: list[dict[str, float]] = []
        self.fit_seconds = float("nan")
        self._text: Backbone | None = None  # loaded by fit (and by the teacher's predict), never by the student
        self.sentences: dict[str, str] = {}  # sample id -> the attribute sentence it was trained with

    def _check_setup(self) -> None:
        b = self.backbone
        if not (b.has_image_encoder and b.has_decoder and hasattr(b.model, "mask_decoder")):
            raise InputError(f"{self.name} needs a SAM-family backbone with a mask decoder; got {b.name!r}")

    @classmethod
    def sharing(cls: type[_C], fitted: "ConceptText") -> _C:
        """A ``cls`` method built on ``fitted``'s backbone, config, attribute source and embedding cache that
        shares its trained model (no copy, no training): e.g. the teacher of a fitted student."""
        if fitted.model is None:
            raise InputError(f"{cls.name}: sharing() needs a fitted model; call fit() on {fitted.name} first")
        trained = {"teacher": "student"}  # the teacher trains as the student: one fit serves both
        if trained.get(cls.conditioning, cls.conditioning) != trained.get(fitted.conditioning, fitted.conditioning):
            raise InputError(f"{cls.name} cannot share the model of {fitted.name}: they are trained differently")
        other = cls(fitted.backbone, attribute_source=fitted.attribute_source, **config_values(fitted.config))
        other.cache = fitted.cache
        other.model, other.structure, other.sentences = fitted.model, fitted.structure, fitted.sentences
        other.losses, other.fit_seconds, other._text = fitted.losses, fitted.fit_seconds, fitted._text
        return other

    # -- features ----------------------------------------------------------------------------------------------
    def embed(self, image: np.ndarray, source: str = "image") -> torch.Tensor:
        """(1, 256, 64, 64) frozen image embedding, from the cache when present (``source`` names the image)."""
        image = check_image(image, source)
        return encode_cached(self.backbone, image, self.cache)[0].features

    def _roi_feature(self, image: np.ndarray, mask: np.ndarray, embedding: torch.Tensor) -> torch.Tensor:
        """(256,) feature of the ROI for ``g_roi``."""
        if self.config.roi_feature == "roi_image":
            return self.embed(roi_image(image, mask)).mean((2, 3))[0]
        frame = Frame(image.shape[:2], self.backbone.input_size)
        w = frame.mask_to_model(mask, embedding.shape[-1])[0, 0]  # (64, 64)
        return (embedding[0] * w).sum((1, 2)) / w.sum().clamp_min(1e-6)

    def _text_encoder(self) -> Backbone:
        if self._text is None:
            self._text = load_backbone(self.config.text_encoder, weights=self.config.text_weights)
            if not hasattr(self._text, "text_with_slots"):
                raise InputError(f"text encoder {self.config.text_encoder!r} has no text_with_slots")
            self._text.lock()
        return self._text

    def sentence(self, image: np.ndarray, mask: np.ndarray) -> str:
        """The attribute sentence of one ROI (measured offline; methods.md §4.1)."""
        keyword = self.config.keyword or f"{(self.structure or 'object').replace('_', ' ')} area"
        return self.attribute_source.describe(image, mask, keyword)

    def _mask_of(self, sample: Sample) -> np.ndarray:
        names = list(sample.masks)
        structure = self.config.structure or (names[0] if len(names) == 1 else None)
        if structure is None or structure not in sample.masks:
            raise InputError(f"{self.name}: sample {sample.id!r} has masks {names}; set structure= to one of them")
        self.structure = structure
        return check_mask(sample.masks[structure], sample.hw, f"sample {sample.id!r} ({structure})")

    # -- training ----------------------------------------------------------------------------------------------
    def fit(self, support: Sequence[Sample]) -> "ConceptText":
        """Train on labelled masks (the structure named in the config): the student, teacher and KD together.

        Raises:
            InputError: no samples, a sample without that structure, an empty or wrong-size mask, a bad image.
        """
        support = list(support)
        if not support:
            raise InputError(f"{self.name}: fit needs training samples with masks; got none")
        start = time.perf_counter()
        c = self.config
        mode = "student" if self.conditioning == "teacher" else self.conditioning  # the teacher trains as one
        embeds, globals_, rois, targets, valids, texts = [], [], [], [], [], []
        for s in support:
            mask = self._mask_of(s)
            emb = self.embed(s.image, f"sample {s.id!r}")
            frame = Frame(s.hw, self.backbone.input_size)
            embeds.append(emb[0].half())  # half precision in RAM: 2 MB per image
            globals_.append(emb[0].mean((1, 2)))
            targets.append((frame.mask_to_model(mask) > 0.5).float()[0])
            valid = torch.zeros(1, self.backbone.input_size, self.backbone.input_size)
            valid[:, : frame.resized_hw[0], : frame.resized_hw[1]] = 1
            valids.append(valid)
            if mode == "student":
                rois.append(self._roi_feature(s.image, mask, emb))
                self.sentences[s.id] = self.sentence(s.image, mask)
                texts.append(c.template + self.sentences[s.id])
        torch.manual_seed(c.seed)
        text = None if mode == "no_text" else self._text_encoder()
        text_dim, token_dim = (384, 384) if text is None else (text.text_dim, text.text_token_dim)
        model = _Segmenter(self.backbone.model, embeds[0].shape[0], text_dim, token_dim, c.train_decoder)
        if not c.self_noise:
            model.cond.alpha.data.zero_()
            model.cond.alpha.requires_grad_(False)
        fixed = None
        if mode == "class_name":
            prompt = c.class_prompt or f"a {(self.structure or 'object').replace('_', ' ')}"
            with torch.no_grad():
                fixed = self._text_encoder().encode_text([prompt], normalize=False)  # (1, Dt), un-normalised
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        total = min(c.max_steps, max(1, c.epochs * len(support) // c.batch_size))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: cosine_with_warmup(i, total, c.warmup_steps))
        gen = torch.Generator().manual_seed(c.seed)
        g_all, t_all, v_all = torch.stack(globals_), torch.stack(targets), torch.stack(valids)
        r_all = torch.stack(rois) if rois else None
        model.train()
        self.losses = []
        for _ in range(total):
            idx = torch.randint(len(support), (min(c.batch_size, len(support)),), generator=gen)
            emb = torch.stack([embeds[i] for i in idx]).float()
            y_hat = model.predictor(g_all[idx]) if mode == "student" else None
            kd = torch.zeros(())
            if mode == "student":
                slots = model.pseudo(r_all[idx])
                text = self._text_encoder().text_with_slots([texts[i] for i in idx], slots)  # (B, Dt)
                cond = model.cond(y_hat, text)
                kd = distillation_loss(text, y_hat, c.kd_temperature)
            elif mode == "class_name":
                cond = model.cond(None, fixed.expand(len(idx), -1))
            else:
                cond = model.cond(model.constant.expand(len(idx), -1))
            seg = dice_ce_loss(model.decoder(emb, cond), t_all[idx], v_all[idx])
            loss = seg + c.kd_weight * kd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            self.losses.append({"loss": loss.item(), "seg": seg.item(), "kd": kd.item()})
        model.eval()
        self.model = model
        if mode == "class_name":  # the condition is a constant now: keep it, drop the text encoder
            with torch.no_grad():
                self._fixed_cond = model.cond(None, fixed)
            self._text = None
        self.fit_seconds = time.perf_counter() - start
        return self

    # -- inference ---------------------------------------------------------------------------------------------
    def _condition(self, image: np.ndarray, embedding: torch.Tensor, mask: np.ndarray | None,
                   source: str) -> torch.Tensor:
        model = self.model
        if self.conditioning == "no_text":
            return model.cond(model.constant[None])
        if self.conditioning == "class_name":  # a constant, computed once at the end of fit
            return self._fixed_cond
        y_hat = model.predictor(embedding.mean((2, 3)))
        if self.conditioning == "student":
            return model.cond(y_hat)
        if mask is None:  # the teacher reads the real text of the ROI: it needs the true mask
            raise InputError(f"{self.name} conditions on the attribute text of the true ROI: pass mask= for "
                             f"{source}")
        mask = check_mask(mask, image.shape[:2], f"{source} (mask)")
        slot = model.pseudo(self._roi_feature(image, mask, embedding)[None])
        text = self._text_encoder().text_with_slots(self.config.template + self.sentence(image, mask), slot)
        return model.cond(y_hat, text)

    @torch.no_grad()
    def predict(self, image: np.ndarray, mask: np.ndarray | None = None, *, source: str = "image",
                **prompts: Any) -> Prediction:
        """Segment the structure in ``image`` (the teacher also needs the true ``mask`` for its text); ``source``
        names the image in error messages.

        Returns:
            Prediction with ``mask`` (HxW bool, original resolution), ``scores["quality"]`` (mean foreground
            probability inside the predicted mask, 0 when it is empty) and ``extras["probability"]`` (HxW float).

        Raises:
            InputError: not fitted, bad image or mask, the teacher without ``mask``, or an unexpected prompt.
        """
        if prompts:
            raise InputError(f"{self.name} takes no prompts besides mask= (got {sorted(prompts)}) for {source}")
        if self.model is None:
            raise InputError(f"{self.name}: call fit() before predict()")
        image = check_image(image, source)
        embedding = self.embed(image, source)
        logits = self.model.decoder(embedding, self._condition(image, embedding, mask, source))
        prob = torch.sigmoid(Frame(image.shape[:2], self.backbone.input_size).logits_to_original(logits))[0, 0]
        out = (prob > 0.5).numpy()
        quality = float(prob[prob > 0.5].mean()) if out.any() else 0.0
        return Prediction(mask=out, scores={"quality": quality}, extras={"probability": prob.numpy()})

    @torch.no_grad()
    def distillation_gap(self, samples: Sequence[Sample]) -> float:
        """Mean distillation KL between the teacher's text embedding and the student's ``ŷ`` over ``samples``
        (the quantity the KD loss lowers; a diagnostic of how well the text was distilled)."""
        if self.model is None or self.conditioning not in ("student", "teacher"):
            raise InputError("distillation_gap needs a fitted concept_text model")
        gaps = []
        for s in samples:
            mask = self._mask_of(s)
            emb = self.embed(s.image, f"sample {s.id!r}")
            slot = self.model.pseudo(self._roi_feature(s.image, mask, emb)[None])
            text = self._text_encoder().text_with_slots(self.config.template + self.sentence(s.image, mask), slot)
            y_hat = self.model.predictor(emb.mean((2, 3)))
            gaps.append(float(distillation_loss(text, y_hat, self.config.kd_temperature)))
        return float(np.mean(gaps))

    def prompts_from_truth(self, sample: Sample, structure: str | None = None) -> dict[str, Any]:
        """The student needs nothing; the teacher's oracle text needs the true mask."""
        if self.conditioning != "teacher":
            return {}
        return {"mask": sample.masks[structure or self.structure]}

    def as_teacher(self) -> "ConceptText":
        """This fitted model evaluated with the real attribute text of each test ROI (``concept_text_teacher``)."""
        if self.model is None or self.conditioning != "student":
            raise InputError("as_teacher() needs a fitted concept_text (student) model")
        return ConceptTextTeacher.sharing(self)

    def setting(self) -> dict[str, Any]:
        out = super().setting()
        return {**out, "structure": self.structure or self.config.structure}


register_method(
    "concept_text", task="text_free_segmentation", family="concept_text", role="paper", trains=True,
    paper="conceptual text prompts, CoTexNet (He et al., Engineering 2026)",
)(ConceptText)


@register_method(
    "concept_text_teacher", task="text_free_segmentation", family="concept_text", role="baseline",
    trains=True,
    paper="CoTexNet teacher: oracle attribute text (methods.md §4.5)",
)
class ConceptTextTeacher(ConceptText):
    """Baseline/upper bound: the concept_text model with the real attribute text of the test ROI at inference."""

    conditioning = "teacher"

    # fit is the student's: one training gives both (ConceptText.as_teacher() shares a fitted student's weights)


@register_method(
    "concept_text_class_name", task="text_free_segmentation", family="concept_text", role="baseline",
    trains=True,
    paper="fixed class-name prompt (methods.md §4.5)",
)
class ConceptTextClassName(ConceptText):
    """Baseline: the same segmenter conditioned on one fixed class-name sentence (no ROI text, no KD)."""

    conditioning = "class_name"


@register_method(
    "concept_text_no_text", task="text_free_segmentation", family="concept_text", role="baseline",
    trains=True,
    paper="no text (methods.md §4.5)",
)
class ConceptTextNoText(ConceptText):
    """Baseline: the same segmenter conditioned on a learned constant instead of text."""

    conditioning = "no_text"
