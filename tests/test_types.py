"""Prompt validation and Sample helpers."""

from __future__ import annotations

import numpy as np
import pytest

from roiprompt import InputError, Prompt, Sample
from roiprompt.prompts import Frame, box_from_mask


def test_prompt_normalises_points_and_defaults_labels():
    p = Prompt(points=[[1, 2], [3, 4]])
    assert p.points.shape == (2, 2) and p.point_labels.tolist() == [1, 1]


@pytest.mark.parametrize("kwargs, match", [
    ({"points": [[1, 2]], "point_labels": [1, 0]}, "1 points but 2 point labels"),
    ({"points": [[np.nan, 2]]}, "NaN"),
    ({"box": [5, 5, 5, 9]}, "empty"),
    ({"box": [1, 2, 3]}, "4 finite numbers"),
    ({"point_labels": [1]}, "without points"),
])
def test_bad_prompts(kwargs, match):
    with pytest.raises(InputError, match=match):
        Prompt(**kwargs)


def test_sample_mask_lookup():
    s = Sample("a", np.zeros((4, 4), np.uint8), {"heart": np.ones((4, 4), bool), "lung": np.zeros((4, 4), bool)})
    assert s.mask("heart").all()
    with pytest.raises(InputError, match="has structures"):
        s.mask()
    with pytest.raises(InputError, match="no structure 'liver'"):
        s.mask("liver")


def test_frame_round_trip_and_shapes():
    frame = Frame((100, 200), 256)
    assert frame.resized_hw == (128, 256)
    pts = np.array([[10.0, 20.0], [199.0, 99.0]])
    np.testing.assert_allclose(frame.points_to_original(frame.points_to_model(pts)), pts)
    np.testing.assert_allclose(frame.box_to_model([0, 0, 200, 100]), [0, 0, 256, 128])
    import torch

    logits = torch.zeros(1, 1, 256, 256)
    logits[..., :64, :128] = 5  # top-left quarter of the content (content is 128 x 256)
    orig = frame.logits_to_original(logits)[0, 0].numpy() > 0
    assert orig.shape == (100, 200)
    assert orig[:50, :100].mean() > 0.95 and orig[50:, 100:].mean() < 0.05


def test_box_from_mask_pads_and_clips():
    mask = np.zeros((50, 40), bool)
    mask[10:20, 5:25] = True
    np.testing.assert_allclose(box_from_mask(mask), [5, 10, 25, 20])
    np.testing.assert_allclose(box_from_mask(mask, 0.5), [0, 5, 35, 25])
    with pytest.raises(InputError, match="empty mask"):
        box_from_mask(np.zeros((4, 4), bool))


def test_component_boxes_one_per_piece_and_drop_specks():
    from roiprompt.prompts import component_boxes

    mask = np.zeros((40, 60), bool)
    mask[5:15, 5:25] = True     # 200 px
    mask[20:30, 40:50] = True   # 100 px
    mask[38, 0] = True          # 1 px speck (< 5 % of the area): dropped
    boxes = component_boxes(mask)
    np.testing.assert_allclose(boxes, [[5, 5, 25, 15], [40, 20, 50, 30]])
