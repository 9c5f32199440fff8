"""The method contract, checked on every registered method (parametrized over ``list_methods()`` when the tests are
collected, so a new method is checked without anyone adding it here): it constructs on a tiny random backbone,
fits, predicts with the shared score / extras vocabulary, and refuses bad input and bad config with InputError;
a misspelt ``Literal`` config value is refused at construction, before any backbone is loaded or image encoded.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import roiprompt
from roiprompt.errors import InputError
from roiprompt.methods import base as methods_base
from roiprompt.methods import method_class
from roiprompt.methods.config import ConfigError, literal_fields
from roiprompt.models.backbones import load_backbone
from roiprompt.types import Sample

METHODS = roiprompt.list_methods()
#: The tiny backbone each method runs on (default test-litemedsam); zero_shot needs an image-text aligned CLIP.
BACKBONES = {"zero_shot": "test-clip"}
#: The shortest schedules; each method gets the fields its config has.
FAST = dict(views=1, epochs=1, min_steps=2, max_steps=2, batch_size=4, input_size=64,  # classifiers, concept_text
            warp_size=32, warp_iterations=2, instance_iterations=2, iterations=2)  # one-shot
#: The shared vocabulary (roiprompt.types.Prediction) a segmenter's scores and extras must keep to.
SCORE_KEYS = {"iou_pred", "quality", "warp_agreement", "head_prob", "cosine", "area", "agree_warp",
              "agree_registration", "warp_match", "margin"}
EXTRA_KEYS = {"boxes", "points", "point_labels", "low_res_logits", "mask", "probability", "warped_mask", "rounds",
              "source", "candidates"}
LITERALS = [(name, field) for name in METHODS for field in literal_fields(method_class(name).config_class)]


@pytest.fixture(scope="module")
def backbones():
    built: dict[str, object] = {}

    def get(method: str):
        name = BACKBONES.get(method, "test-litemedsam")
        if name not in built:
            built[name] = load_backbone(name)
        return built[name]

    return get


def _samples(n: int = 4, size: int = 64) -> list[Sample]:
    """Bright discs on noise, labelled "a" / "b" alternately (a class, a mask and an image for every task)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for i in range(n):
        cy, cx, r = rng.integers(20, 44), rng.integers(20, 44), rng.integers(8, 14)
        mask = np.hypot(yy - cy, xx - cx) < r
        image = np.clip(rng.normal(60, 15, (size, size)) + 120 * mask, 0, 255).astype(np.uint8)
        out.append(Sample(f"s{i}", image, {"roi": mask}, "a" if i % 2 == 0 else "b"))
    return out


def _fast(name: str) -> dict:
    fields = {f.name for f in dataclasses.fields(method_class(name).config_class)}
    return {k: v for k, v in FAST.items() if k in fields}


def _fit(method, samples: list[Sample]) -> dict:
    """Fit ``method`` the way its task is used; returns the prompts ``predict`` takes for ``samples[1]``."""
    task, target = method.info.task, samples[1]
    if task == "segmentation":
        method.fit([])
        return method.prompts_from_truth(target, "roi")
    if task == "oneshot":
        method.fit([samples[0]])
        return {}
    if task == "classification":
        method.fit(samples)
        return {"mask": target.masks["roi"]}
    if task == "text_free_segmentation":
        method.fit(samples)
        return method.prompts_from_truth(target, "roi")
    raise AssertionError(f"no recipe for task {task!r}: add one here so that {method.name} is checked")


def test_every_method_is_collected():
    assert METHODS and len(METHODS) == len(set(METHODS))
    assert ("med_persam", "points") in LITERALS  # the generic Literal check sees the fields it must


@pytest.mark.parametrize("name", METHODS)
def test_constructs_fits_predicts_and_refuses_bad_input(name, backbones):
    backbone = backbones(name)
    method = roiprompt.load_method(name, backbone=backbone, **_fast(name))
    assert method.backbone is backbone and method.cache is None and method.setting() is not None
    samples = _samples()
    prompts = _fit(method, samples)
    target = samples[1]
    pred = method.predict(target.image, source="target.png", **prompts)
    if method.info.task == "classification":
        assert pred.label in ("a", "b") and set(pred.scores) == {"a", "b"}
        assert abs(sum(pred.scores.values()) - 1) < 1e-5
    else:
        assert pred.mask.shape == target.hw and pred.mask.dtype == bool
        assert set(pred.scores) <= SCORE_KEYS, set(pred.scores) - SCORE_KEYS
        assert all(np.isfinite(v) for v in pred.scores.values())
    assert set(pred.extras) <= EXTRA_KEYS, set(pred.extras) - EXTRA_KEYS
    # a NaN float image is refused with the image's name, whatever the method
    with pytest.raises(InputError, match="bad.png"):
        method.predict(np.full(target.hw, np.nan, np.float32), source="bad.png", **prompts)
    with pytest.raises(InputError, match="unknown config"):
        roiprompt.load_method(name, backbone=backbone, not_a_setting=1)


@pytest.mark.parametrize(("name", "field"), LITERALS)
def test_a_misspelt_choice_is_refused_before_anything_loads(name, field, monkeypatch):
    def no_backbone(*args, **kwargs):
        raise AssertionError("the backbone was loaded before the config was checked")

    monkeypatch.setattr(methods_base, "load_backbone", no_backbone)
    with pytest.raises(ConfigError) as err:
        roiprompt.load_method(name, **{field: "not-a-choice"})
    message = str(err.value)
    choices, _ = literal_fields(method_class(name).config_class)[field]
    assert message.startswith(f"{name}: ") and f"{field}='not-a-choice'" in message
    assert all(repr(c) in message for c in choices), message


def test_med_persam_refuses_a_typo_and_a_config_with_nothing_to_prompt(backbones, monkeypatch):
    backbone = backbones("med_persam")
    monkeypatch.setattr(backbone, "encode_image", lambda *a, **k: pytest.fail("encoded before refusing"))
    with pytest.raises(InputError, match="points='subregon'.*'subregion'"):
        roiprompt.load_method("med_persam", backbone=backbone, points="subregon")
    with pytest.raises(InputError, match="at least one prompt"):
        roiprompt.load_method("med_persam", backbone=backbone, mask_prompt=False, box=False, points="none")
    # "auto" points mean none on a backbone trained with boxes only: refused once the backbone is known
    with pytest.raises(InputError, match="at least one prompt.*'auto'"):
        roiprompt.load_method("med_persam", backbone=backbone, mask_prompt=False, box=False)
    with pytest.raises(InputError, match="refine_prior=1.5.*\\[0.0, 1.0\\]"):
        roiprompt.load_method("med_persam", backbone=backbone, refine_prior=1.5)
    with pytest.raises(InputError, match="warp_size=100.*multiple of 16"):
        roiprompt.load_method("med_persam", backbone=backbone, warp_size=100)
