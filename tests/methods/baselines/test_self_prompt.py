"""``self_prompt``: a logistic head on the reference's encoder tokens draws the target's box (issue 23)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import roiprompt
from roiprompt.errors import InputError
from roiprompt.methods.baselines.self_prompt import fit_token_head
from roiprompt.metrics import dice


def test_token_head_separates_inside_from_outside():
    rng = torch.Generator().manual_seed(0)
    inside = (torch.arange(400) < 40).float()  # 10 % of the tokens are inside: the classes are weighed equally
    tokens = torch.randn(400, 8, generator=rng)
    tokens[:, 3] += 8 * inside  # one channel says "inside"
    head = fit_token_head(tokens, inside, weight_decay=1e-3, iterations=50)
    p = torch.sigmoid(((tokens - head["mean"]) / head["std"]) @ head["weight"] + head["bias"])
    assert p[:40].min() > 0.5 > p[40:].max()
    assert int(head["weight"].abs().argmax()) == 3


def test_heart_from_one_real_radiograph_boxes_and_saving(litemedsam, jsrt_splits, tmp_path):
    train, test = jsrt_splits
    method = roiprompt.load_method("self_prompt", backbone=litemedsam)
    method.set_reference(train[0].image, {"heart": train[0].masks["heart"]})
    scores = []
    for sample in (test[0], test[1]):
        pred = method.predict(sample.image)
        truth = sample.masks["heart"]
        scores.append(dice(pred.mask, truth))
        x0, y0, x1, y1 = pred.extras["boxes"][0]
        ys, xs = np.nonzero(truth)
        cy, cx = ys.mean(), xs.mean()
        assert x0 < cx < x1 and y0 < cy < y1  # the head's box holds the heart
    assert min(scores) >= 0.7, scores  # measured 0.76 and 0.86 (the box alone, no refinement)
    method.save(tmp_path / "fitted")
    again = roiprompt.load_fitted(tmp_path / "fitted", backbone=litemedsam)
    assert np.array_equal(again.predict(test[0].image).mask, method.predict(test[0].image).mask)
    with pytest.raises(InputError, match="threshold"):
        roiprompt.load_method("self_prompt", backbone=litemedsam, threshold=1.5)
