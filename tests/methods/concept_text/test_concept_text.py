"""Conceptual text prompts: conditioning forms, distillation, text-free inference, the baselines, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import roiprompt
from roiprompt.errors import InputError
from roiprompt.methods.concept_text import method as concept_method
from roiprompt.methods.concept_text.model import Conditioning, distillation_loss
from roiprompt.types import Sample

FAST = dict(max_steps=30, batch_size=4, lr=1e-3)


def _discs(n: int = 8, size: int = 64) -> list[Sample]:
    """Bright discs of varying size and place on a dark noisy background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for i in range(n):
        cy, cx, r = rng.integers(18, 46), rng.integers(18, 46), rng.integers(6, 14)
        mask = np.hypot(yy - cy, xx - cx) < r
        img = np.clip(rng.normal(60, 15, (size, size)) + 120 * mask, 0, 255).astype(np.uint8)
        out.append(Sample(f"d{i}", img, {"lesion": mask}))
    return out


@pytest.fixture(scope="module")
def fitted():
    return roiprompt.load_method("concept_text", backbone="test-litemedsam", **FAST).fit(_discs())


def test_conditioning_forms():
    cond = Conditioning()
    y_hat, text = torch.rand(2, 5), torch.randn(2, 5)
    assert torch.allclose(cond(y_hat), 1.0 * y_hat - 0.002)  # inference: c = a ŷ + b
    mixed = 1.0 * (0.8 * torch.sigmoid(text) + 0.2 * y_hat) - 0.002  # training: the student's ŷ is the noise
    assert torch.allclose(cond(y_hat, text), mixed)
    assert torch.allclose(cond(None, text), torch.sigmoid(text) - 0.002)  # fixed-prompt baseline


def test_distillation_temperature_keeps_the_loss_informative():
    text, y_hat = torch.randn(4, 384) * 3, torch.rand(4, 384)
    # at T = 1 softmaxes of values in (0, 1) are nearly uniform, so the KD signal vanishes (methods.md §4.4)
    assert distillation_loss(text, y_hat, 1.0) < 0.1 * distillation_loss(text, y_hat, 0.1)
    assert distillation_loss(text, torch.sigmoid(text), 0.1) < 1e-6  # a perfect student costs nothing


def test_distillation_lowers_the_student_teacher_distance(fitted):
    import copy

    assert set(fitted.sentences) == {f"d{i}" for i in range(8)}  # one measured sentence per training ROI
    assert all(s.endswith("of the image.") and "lesion area" in s for s in fitted.sentences.values())
    samples = _discs()
    trained = fitted.distillation_gap(samples)
    untrained = copy.copy(fitted)
    untrained.model = copy.deepcopy(fitted.model)
    torch.manual_seed(1)
    net = fitted.model.predictor.net
    untrained.model.predictor = type(fitted.model.predictor)(net[0].in_features, net[-1].out_features)  # fresh student
    assert trained < 0.7 * untrained.distillation_gap(samples)
    kd = [step["kd"] for step in fitted.losses]
    assert np.mean(kd[-5:]) < np.mean(kd[:5])
    assert all(np.isfinite(step["seg"]) for step in fitted.losses)


def test_student_predicts_with_no_text_encoder_loaded(fitted, monkeypatch):
    fitted._text = None

    def no_text(*args, **kwargs):
        raise AssertionError("inference loaded a backbone")

    monkeypatch.setattr(concept_method, "load_backbone", no_text)
    sample = _discs(1)[0]
    pred = fitted.predict(sample.image)
    assert pred.mask.shape == sample.hw and pred.mask.dtype == bool
    with pytest.raises(AssertionError, match="loaded a backbone"):  # the teacher does need its text encoder
        fitted.as_teacher().predict(sample.image, mask=sample.masks["lesion"])


def test_teacher_reads_the_roi_text_and_needs_the_mask(fitted):
    teacher = fitted.as_teacher()
    assert teacher.name == "concept_text_teacher" and teacher.model is fitted.model
    sample = _discs(1)[0]
    small = np.zeros(sample.hw, bool)
    small[5:9, 5:9] = True
    assert fitted.sentence(sample.image, sample.masks["lesion"]) != fitted.sentence(sample.image, small)
    a = teacher.predict(sample.image, mask=sample.masks["lesion"]).extras["probability"]
    b = teacher.predict(sample.image, mask=small).extras["probability"]
    assert not np.allclose(a, b)  # a different ROI text changes the condition
    with pytest.raises(InputError, match="true ROI"):
        teacher.predict(sample.image)


def test_kd_without_noise_keeps_alpha_at_zero():
    m = roiprompt.load_method("concept_text", backbone="test-litemedsam", self_noise=False, max_steps=3,
                              batch_size=2).fit(_discs(3))
    assert m.model.cond.alpha.item() == 0.0 and not m.model.cond.alpha.requires_grad


def test_baselines_share_the_segmenter_and_keep_the_backbone_frozen():
    from roiprompt.models.backbones import load_backbone

    backbone = load_backbone("test-litemedsam")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    for name in ("concept_text_class_name", "concept_text_no_text"):
        m = roiprompt.load_method(name, backbone=backbone, **FAST).fit(_discs())
        assert m.predict(_discs(1)[0].image).mask.shape == (64, 64)
        assert all(step["kd"] == 0 for step in m.losses)
        assert m._text is None  # no text encoder kept for inference
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_bad_inputs_are_rejected_with_clear_errors():
    samples = _discs(3)
    with pytest.raises(InputError, match="fit"):
        roiprompt.load_method("concept_text", backbone="test-litemedsam").predict(samples[0].image)
    with pytest.raises(InputError, match="structure"):
        roiprompt.load_method("concept_text", backbone="test-litemedsam", structure="heart", **FAST).fit(samples)
    empty = Sample("e0", samples[0].image, {"lesion": np.zeros((64, 64), bool)})
    with pytest.raises(InputError, match="e0"):
        roiprompt.load_method("concept_text", backbone="test-litemedsam", **FAST).fit([empty])
    with pytest.raises(InputError, match="mask decoder"):
        roiprompt.load_method("concept_text", backbone="test-clip")
    with pytest.raises(InputError, match="roi_feature"):
        roiprompt.load_method("concept_text", backbone="test-litemedsam", roi_feature="crop")


def test_a_clip_text_tower_plugs_in_through_the_same_interface(tmp_path):
    from roiprompt.models.backbones.testing import save_tiny

    folder = save_tiny("clip", tmp_path / "clip")
    # the tiny CLIP reads 16 tokens, so the template and sentence must be short
    m = roiprompt.load_method("concept_text", backbone="test-litemedsam", text_encoder="clip",
                              text_weights=str(folder), template="[unused0]", keyword="x", max_steps=4,
                              batch_size=2).fit(_discs(4))
    assert m.model.pseudo.net[-1].normalized_shape == (32,)  # CLIP text width, not MiniLM's 384
    assert m.model.predictor.net[-1].out_features == 16  # CLIP's projection
    assert m.predict(_discs(1)[0].image).mask.shape == (64, 64)


def test_short_fit_on_real_jsrt_hearts(litemedsam):
    """Real chest radiographs and the real encoder: a short schedule already segments the heart without text."""
    from roiprompt.data import load_dataset
    from roiprompt.metrics import dice
    from tests.conftest import data_root

    data = load_dataset("jsrt", root=data_root("jsrt").parent)
    train, test = data.split("train"), data.split("test")
    seg = roiprompt.load_method("concept_text", backbone=litemedsam, structure="heart", keyword="heart area",
                                max_steps=20, batch_size=4, lr=1e-3).fit([train[i] for i in range(8)])
    assert "heart area" in seg.sentence(train[0].image, train[0].masks["heart"])
    scores = [dice(seg.predict(test[i].image).mask, test[i].masks["heart"]) for i in range(4)]
    # 20 steps gave 0.83 (0.92, 0.80, 0.88, 0.72); the 124-image, 150-step benchmark fit reaches Dice 0.93
    assert np.mean(scores) > 0.6, scores
