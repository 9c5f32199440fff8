"""SegPrompt-ViT (methods.md §2.1) on a tiny random CLIP ViT: the tokens go inside the frozen blocks, the mask
decides the class, CLIP stays frozen and unsaved; and SegPrompt's ``probe_init`` starts from the masked probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import roiprompt
from roiprompt.methods.classification.segprompt_vit import SegPromptViTHead
from roiprompt.methods.config import ConfigError
from roiprompt.models.backbones import load_backbone
from roiprompt.models.backbones.testing import save_tiny
from tests.methods.classification.test_classification import FAST, _toy_samples


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A tiny random CLIP saved as a local Hugging Face folder and loaded the way a user's checkpoint is."""
    return load_backbone("clip", weights=str(save_tiny("clip", tmp_path_factory.mktemp("clip"))))


def test_segmentation_tokens_run_inside_the_frozen_blocks(clip):
    layers = clip.vision.encoder.layers
    seen = []
    hooks = [layer.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[1])) for layer in layers]
    head = SegPromptViTHead(clip, num_classes=2, prompts=3)
    pixels = torch.randn(2, 3, clip.input_size, clip.input_size)
    hidden = clip.hidden_states(pixels, 0)
    mask = torch.zeros(2, 1, clip.input_size, clip.input_size)
    mask[..., :16, :16] = 1
    logits = head(hidden, mask)
    for h in hooks:
        h.remove()
    n = clip.grid ** 2
    assert logits.shape == (2, 2)
    assert seen == [1 + 3 + n + n] * len(layers)  # [CLS, P_l, X_l, S_l] through every block
    # the mask reaches the logits through the blocks (image tokens attend to segmentation tokens)
    assert not torch.allclose(head(hidden, 1 - mask), logits)
    logits.sum().backward()
    assert head.seg_embed.weight.grad.abs().sum() > 0 and head.prompt_tokens.grad[0].abs().sum() > 0
    assert not any(p.requires_grad for p in clip.parameters())
    assert not any(k.startswith("backbone") for k in head.state_dict())
    # VPT-deep: no segmentation stream, CLS readout only
    vpt = SegPromptViTHead(clip, num_classes=2, prompts=3, seg_tokens=False)
    assert vpt(hidden).shape == (2, 2) and vpt.seg_embed is None


def test_segprompt_on_a_vit_learns_where_the_roi_is_and_saves(clip, tmp_path):
    samples = _toy_samples()
    clf = roiprompt.load_method("segprompt", backbone=clip, **dict(FAST, min_steps=120, lr=3e-3)).fit(samples)
    assert clf.vit_form and isinstance(clf.model, SegPromptViTHead)
    # trainable: the mask conv, the per-block prompts, the gammas, the readout; CLIP's own weights are not
    vision = clip.vision.config
    conv = vision.hidden_size * (vision.patch_size ** 2 + 1)
    prompts = len(clip.vision.encoder.layers) * 8 * vision.hidden_size
    readout = 2 * (2 * vision.hidden_size) + (2 * vision.hidden_size + 1) * 2
    assert clf.trainable_parameters() == conv + prompts + len(clip.vision.encoder.layers) - 1 + readout
    fitted = [clf.predict(s.image, mask=s.masks["roi"]).label == s.label for s in samples]
    assert np.mean(fitted) >= 0.75  # only the mask's position tells the classes apart
    image, mask = samples[0].image, samples[0].masks["roi"]
    saved = clf.save(tmp_path / "vit")
    again = roiprompt.load_fitted(saved, backbone=clip)
    assert again.predict(image, mask=mask).scores == pytest.approx(clf.predict(image, mask=mask).scores, abs=1e-6)
    with pytest.raises(ConfigError, match="probe_init"):
        roiprompt.load_method("segprompt", backbone=clip, probe_init=True)


def test_probe_init_starts_segprompt_at_the_masked_probe():
    tiny = load_backbone("test-litemedsam")
    samples = _toy_samples(n=8)
    clf = roiprompt.load_method("segprompt", backbone=tiny, probe_init=True, **dict(FAST, grid=8, min_steps=10))
    inputs = [clf.inputs(s.image, s.masks["roi"], views=1) for s in samples]
    batch = {k: torch.cat([i[k] for i in inputs]) for k in inputs[0]}
    labels = torch.tensor([int(s.label == "b") for s in samples])
    clf.classes = ["a", "b"]
    model = clf._build(2, int(batch["tokens"].shape[1]))
    clf._prepare(model, batch, labels)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch), model.probe(**batch))  # the head is zeroed: exactly the probe
        assert model.probe.head.weight.abs().sum() > 0  # and the probe was fitted first
    clf.fit(samples)
    assert clf.model.head.weight.abs().sum() > 0  # then the head trains on top of it
