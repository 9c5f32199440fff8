"""``matcher_lite``: bidirectional patch matching, sampled prompts, scored and merged masks (issue 23)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import roiprompt
from roiprompt.errors import InputError
from roiprompt.methods.baselines.matcher import box_iou, matched_points
from roiprompt.metrics import dice


def test_matches_follow_the_structure_and_drop_inconsistent_ones():
    g, c = 16, 32
    rng = torch.Generator().manual_seed(0)
    texture = torch.randn(c, g, g, generator=rng)  # every patch its own feature
    ref_mask = np.zeros((g, g), bool)
    ref_mask[3:7, 4:9] = True
    target = torch.roll(texture, shifts=(5, 2), dims=(1, 2)) + 0.05 * torch.randn(c, g, g, generator=rng)
    kept = matched_points(texture, ref_mask, target, max_patches=256)
    assert len(kept) == ref_mask.sum()  # every patch finds its moved twin, and its twin finds it back
    assert set(map(tuple, kept)) == {(r + 5, q + 2) for r, q in zip(*np.nonzero(ref_mask))}
    # a target without the structure: the reverse matches leave the mask and the matches are dropped
    unrelated = torch.randn(c, g, g, generator=torch.Generator().manual_seed(1))
    assert len(matched_points(texture, ref_mask, unrelated, max_patches=256)) <= 0.75 * ref_mask.sum()
    assert box_iou(np.array([0, 0, 2, 2]), np.array([1, 1, 3, 3])) == pytest.approx(1 / 7)


def test_heart_from_one_real_radiograph(litemedsam, jsrt_splits):
    train, test = jsrt_splits
    method = roiprompt.load_method("matcher_lite", backbone=litemedsam, samples=16)
    method.set_reference(train[0].image, {"heart": train[0].masks["heart"]})
    scores = []
    for sample in (test[0], test[1]):
        pred = method.predict(sample.image)
        truth = sample.masks["heart"]
        scores.append(dice(pred.mask, truth))
        xy = method.matches(sample.image).round().astype(int)
        on_heart = truth[xy[:, 1].clip(0, truth.shape[0] - 1), xy[:, 0].clip(0, truth.shape[1] - 1)].mean()
        assert on_heart >= 0.6, on_heart  # most kept matches land on the target's heart
        assert 0.0 <= pred.scores["quality"] <= 1.0 and pred.extras["boxes"].shape[1] == 4
    assert min(scores) >= 0.6, scores
    with pytest.raises(InputError, match="nms"):
        roiprompt.load_method("matcher_lite", backbone=litemedsam, nms=2.0)
