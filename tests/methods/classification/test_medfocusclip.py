"""MedFocusCLIP and its baselines: guidance moves attention into the mask, tiny CLIP end to end, a real BUS-BRA
fit, the loss, parameters, and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import roiprompt
from roiprompt.data import load_dataset, sample_per_class
from roiprompt.errors import InputError
from roiprompt.methods.classification.guidance import GuidedClsAttention, GuidedTokenPool
from roiprompt.methods.classification.medfocusclip import FocusHead
from roiprompt.methods.classification.text_prompts import class_prompts
from roiprompt.metrics import auroc
from roiprompt.models.backbones import load_backbone
from roiprompt.models.backbones.testing import save_tiny
from tests.conftest import data_root
from tests.methods.classification.test_classification import _toy_samples

FAST = dict(views=2, epochs=2, min_steps=20, batch_size=8)


def _quadrant_mask(batch: int, size: int) -> torch.Tensor:
    mask = torch.zeros(batch, 1, size, size)
    mask[..., : size // 2, : size // 2] = 1  # top-left quarter of the frame
    return mask


def _mass_inside(attn: torch.Tensor, grid: int) -> torch.Tensor:
    inside = torch.zeros(grid, grid, dtype=torch.bool)
    inside[: grid // 2, : grid // 2] = True
    return attn.reshape(-1, grid, grid)[:, inside].sum(1)


def test_token_guidance_moves_attention_into_the_mask():
    pool = GuidedTokenPool(dim=8, grid=4, eps=0.05)
    torch.nn.init.normal_(pool.query)  # a trained-looking query, not the zero init
    tokens, mask = torch.randn(3, 8, 4, 4), _quadrant_mask(3, 16)
    guided, unguided = pool.attention(tokens, mask), pool.attention(tokens, mask, guided=False)
    assert torch.allclose(guided.sum(1), torch.ones(3)) and torch.allclose(unguided.sum(1), torch.ones(3))
    assert (_mass_inside(guided, 4) > _mass_inside(unguided, 4)).all()
    # zero query: the guided pooling is exactly the (eps + m)-weighted mean, i.e. 4 * 1.05 / (4 * 1.05 + 12 * 0.05)
    zero = GuidedTokenPool(dim=8, grid=4, eps=0.05).attention(tokens, mask)
    assert torch.allclose(_mass_inside(zero, 4), torch.full((3,), 4.2 / 4.8))
    v_full, v_roi = GuidedTokenPool(dim=8, grid=4, eps=0.0)(tokens, mask)
    assert torch.allclose(v_full, tokens.flatten(2).mean(2))
    assert torch.allclose(v_roi, tokens[..., :2, :2].flatten(2).mean(2), atol=1e-5)  # eps 0: only the ROI counts


def test_clip_guidance_moves_cls_attention_into_the_mask():
    clip = load_backbone("test-clip")
    pixels = torch.randn(2, 3, clip.input_size, clip.input_size)
    guidance = GuidedClsAttention(clip, blocks=2)
    hidden = clip.hidden_states(pixels, guidance.start)
    # resuming from cached hidden states gives exactly the one-pass encoder
    assert torch.allclose(clip.finish(hidden, guidance.start).extra["image_embeds"],
                          clip.encode_image(pixels).extra["image_embeds"], atol=1e-5)
    mask = _quadrant_mask(2, clip.input_size)
    guided, unguided = guidance.attention(hidden, mask), guidance.attention(hidden, mask, guided=False)
    assert (_mass_inside(guided, clip.grid) > _mass_inside(unguided, clip.grid) + 0.1).all()
    v_full, v_roi = guidance(hidden, mask)
    assert v_full.shape == v_roi.shape == (2, clip.embed_dim) and not torch.allclose(v_full, v_roi)
    v_roi.sum().backward()  # beta learns through the frozen blocks
    assert guidance.beta.grad is not None and guidance.beta.grad != 0
    assert not any(p.requires_grad for p in clip.parameters())
    assert not any(k.startswith("backbone") for k in guidance.state_dict())  # CLIP is never saved with the head


def test_tiny_clip_folder_loads_fits_predicts_and_explains(tmp_path):
    folder = save_tiny("clip", tmp_path / "clip")
    clip = load_backbone("clip", weights=str(folder))
    samples = _toy_samples()
    clf = roiprompt.load_method("medfocusclip", backbone=clip, guided_blocks=1, **FAST)
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    clf.fit(samples)
    assert clf.model.text.shape == (2, clip.embed_dim)  # CLIP's own (aligned) text tower, not MiniLM
    assert clf.model.guidance.beta.item() != 1.0  # beta trained through CLIP's last block
    assert all(torch.equal(before[k], v) for k, v in clip.state_dict().items())
    pred = clf.predict(samples[0].image, mask=samples[0].masks["roi"])
    assert set(pred.scores) == {"a", "b"} and abs(sum(pred.scores.values()) - 1) < 1e-5
    maps = clf.attention(samples[0].image, mask=samples[0].masks["roi"])
    assert maps["guided"].shape == maps["unguided"].shape == (clip.grid, clip.grid)
    assert np.isclose(maps["guided"].sum(), 1, atol=1e-5)
    zero = roiprompt.load_method("zero_shot", backbone=clip, classes=("a", "b")).fit()
    probs = zero.predict(samples[1].image).scores
    assert set(probs) == {"a", "b"} and zero.trainable_parameters() == 0


def test_text_prompts_and_zero_shot_needs_an_aligned_tower():
    assert class_prompts(["benign"], ("an image of {}.",)) == [["an image of benign."]]
    assert class_prompts(["benign", "x"], ("{}",), {"benign": "a benign lesion"}) == [["a benign lesion"], ["x"]]
    with pytest.raises(InputError, match="aligned"):
        roiprompt.load_method("zero_shot", backbone="test-litemedsam")


def test_loss_has_both_heads_and_both_contrastive_directions():
    text = torch.randn(2, 6)
    head = FocusHead(GuidedTokenPool(4, 2), 4, text, dim=8, dropout=0.0)
    tokens, mask = torch.randn(4, 4, 2, 2), torch.ones(4, 1, 8, 8)
    labels = torch.tensor([0, 1, 0, 1])
    s, c = head.heads(tokens, mask)
    both = head.loss(labels, tokens, mask)
    one_class = head.loss(torch.zeros(4, dtype=torch.long), tokens, mask)  # no text->image term with one class
    assert torch.isfinite(both) and torch.isfinite(one_class)
    i2t = torch.nn.functional.cross_entropy(s, labels)
    log_p = torch.log_softmax(s, 0)
    t2i = -(log_p[[0, 2], 0].mean() + log_p[[1, 3], 1].mean()) / 2
    expected = 0.5 * (i2t + t2i) / 2 + 0.5 * torch.nn.functional.cross_entropy(c, labels, label_smoothing=0.1)
    assert torch.allclose(both, expected, atol=1e-5)
    probs = torch.softmax(head(tokens, mask), 1)
    assert torch.allclose(probs, (torch.softmax(s, 1) + torch.softmax(c, 1)) / 2, atol=1e-6)


def test_unguided_ignores_the_mask_and_guided_reads_it():
    samples = _toy_samples()
    img = samples[0].image
    top, bottom = np.zeros(img.shape, bool), np.zeros(img.shape, bool)
    top[5:15, 20:30], bottom[45:55, 20:30] = True, True
    guided = roiprompt.load_method("medfocusclip", backbone="test-litemedsam", **FAST).fit(samples)
    unguided = roiprompt.load_method("medfocusclip_unguided", backbone="test-litemedsam", **FAST).fit(samples)
    assert guided.predict(img, mask=top).scores != guided.predict(img, mask=bottom).scores
    assert unguided.predict(img, mask=top).scores == unguided.predict(img, mask=bottom).scores
    trainable = {n for n, p in guided.model.named_parameters() if p.requires_grad}
    assert {"guidance.query", "guidance.beta", "logit_scale"} <= trainable
    assert not any(p.requires_grad for p in guided.backbone.parameters())
    with pytest.raises(InputError, match="no guidance"):
        unguided.attention(img, mask=top)


def test_bad_inputs_are_rejected_with_clear_errors():
    samples = _toy_samples()
    clf = roiprompt.load_method("medfocusclip", backbone="test-litemedsam", **FAST)
    with pytest.raises(InputError, match="fit"):
        clf.predict(samples[0].image, mask=samples[0].masks["roi"])
    clf.fit(samples)
    img = samples[0].image
    with pytest.raises(InputError, match="mask"):
        clf.predict(img, mask=np.ones((10, 10), bool))  # wrong size
    with pytest.raises(InputError, match="empty"):
        clf.predict(img, mask=np.zeros(img.shape, bool))
    with pytest.raises(InputError, match="channel"):
        clf.predict(np.zeros((64, 64, 4), np.uint8), mask=samples[0].masks["roi"])
    with pytest.raises(InputError, match="ROI mask"):
        clf.predict(img)  # no mask, no segmenter
    with pytest.raises(InputError, match="text_encoder"):
        roiprompt.load_method("medfocusclip", backbone="test-litemedsam", text_encoder="bert", **FAST).fit(samples)
    with pytest.raises(InputError, match="guided_blocks"):
        roiprompt.load_method("medfocusclip", backbone="test-clip", guided_blocks=9)


def test_few_shot_fit_on_real_busbra(litemedsam, tmp_path):
    """Real images and masks, the real encoder (the same images as SegPrompt's real test: tokens are shared)."""
    data = load_dataset("busbra", root=data_root("busbra"), label="pathology")
    train, test = data.split("train"), data.split("test")
    support = [train[i] for i in sample_per_class(train, 16, seed=0)]
    # the default's residual path, without the cue: the cue's extra encoder pass per image would add ~20 s to the
    # suite (its wiring is tested above on tiny encoders; its accuracy is the benchmark's job)
    clf = roiprompt.load_method("medfocusclip", backbone=litemedsam, views=1, segmented_cue=False,
                                cache_dir=str(tmp_path)).fit(support)
    report = clf.parameter_report()
    assert 0.3e6 < report["trainable_params"] < 0.4e6  # methods.md §3.2: ~0.3 M
    assert np.mean(clf.losses[-10:]) < np.mean(clf.losses[:10])
    held = [test[i] for i in sample_per_class(test, 20, seed=0)]
    scores = [clf.predict(s.image, mask=s.mask()).scores["malignant"] for s in held]
    # measured 0.71 with this support set (default templates, 1 view); chance is 0.5
    assert auroc([s.label for s in held], scores, ["benign", "malignant"]) >= 0.65
    maps = [clf.attention(s.image, mask=s.mask()) for s in held[:5]]
    grid = clf.encoder.token_grid
    for m, s in zip(maps, held[:5]):
        inside = torch.nn.functional.adaptive_avg_pool2d(
            clf.encoder.mask(s.image, s.mask()), grid)[0, 0].numpy() > 0.5
        assert m["guided"][inside].sum() > m["unguided"][inside].sum()


@pytest.mark.parametrize("backbone", ["test-litemedsam", "test-clip"])
def test_segmented_cue_encodes_the_image_with_its_background_suppressed(backbone):
    clf = roiprompt.load_method("medfocusclip", backbone=backbone, guided_blocks=1, segmented_cue=True,
                                residual=True, **FAST)
    sample = _toy_samples()[0]
    image, mask = sample.image, sample.masks["roi"]
    enc = clf.encoder
    prefix, pixels = enc._segmented(image, mask, "k")
    plain, m = enc.pixels(image, mask, 1, "k")
    seg = pixels(1)  # view 1: the same flip / rotation / zoom as the mask's view 1
    if hasattr(clf.backbone, "pixel_mean"):  # CLIP: compare in [0, 1], before normalisation
        mean, std = clf.backbone.pixel_mean, clf.backbone.pixel_std
        plain, seg = plain * std + mean, seg * std + mean
    assert torch.allclose(seg, plain * (m + 0.2 * (1 - m)), atol=1e-5) and prefix.startswith("seg0.2-")
    inputs = clf.inputs(image, mask, views=2)
    assert inputs["segmented"].shape == inputs["features"].shape
    assert not torch.allclose(inputs["segmented"], inputs["features"])
    calls = enc.encoder_calls
    moved = np.roll(mask, 20, axis=0)
    assert torch.equal(clf.inputs(image, mask, views=2)["segmented"], inputs["segmented"])  # cached
    assert enc.encoder_calls == calls
    assert not torch.allclose(clf.inputs(image, moved, views=2)["segmented"], inputs["segmented"])
    clf.fit(_toy_samples(n=6))
    assert clf.model.residual is not None  # the linear path on v_roi
    pred = clf.predict(image, mask=mask)
    assert abs(sum(pred.scores.values()) - 1) < 1e-5
    # the cue is read at prediction: a different mask changes the segmented view and the answer
    assert pred.scores != clf.predict(image, mask=moved).scores


def test_clip_adapter_classifies_with_the_class_text(tmp_path):
    samples = _toy_samples()
    clip = load_backbone("test-clip")
    aligned = roiprompt.load_method("clip_adapter", backbone=clip, **FAST)
    aligned.classes = ["a", "b"]
    head = aligned._build(2, clip.embed_dim)
    assert head.text_proj is None and not head.logit_scale.requires_grad  # CLIP's own text is the classifier
    feats = torch.randn(3, clip.embed_dim)
    with torch.no_grad():  # alpha = 0: plain CLIP zero-shot logits
        head.ratio = 0.0
        expected = 100 * torch.nn.functional.normalize(feats, dim=1) @ torch.nn.functional.normalize(head.text, dim=1).T
        assert torch.allclose(head(feats), expected, atol=1e-3)
    # offline: MiniLM text through a learned projection; it learns the support set and round-trips
    tiny = load_backbone("test-litemedsam")
    clf = roiprompt.load_method("clip_adapter", backbone=tiny, **dict(FAST, min_steps=80, lr=3e-3)).fit(samples)
    assert clf.model.text_proj is not None and clf.model.text.shape[1] == 384
    assert np.mean(clf.losses[-10:]) < np.mean(clf.losses[:10])
    assert not clf.uses_mask and clf.predict(samples[0].image).label in ("a", "b")
    again = roiprompt.load_fitted(clf.save(tmp_path / "adapter"), backbone=tiny)
    assert again.predict(samples[0].image).scores == pytest.approx(clf.predict(samples[0].image).scores, abs=1e-6)
