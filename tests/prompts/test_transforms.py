"""Frame: original pixels <-> the square, zero-padded model frame (points, boxes, images, masks, logits), and the
boxes taken from masks. Non-square images both ways (portrait and landscape), because a transform that swaps x
and y or uses one scale for both axes only shows there."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from roiprompt.errors import InputError
from roiprompt.prompts import Frame, box_from_mask, component_boxes

S = 256
SHAPES = [(327, 384), (600, 250), (256, 256), (1000, 3)]  # Kvasir-like, portrait, square, a sliver


def disc(hw: tuple[int, int], cx: float, cy: float, r: float) -> np.ndarray:
    ys, xs = np.mgrid[: hw[0], : hw[1]]
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r ** 2


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.mark.parametrize("hw", SHAPES)
def test_resized_hw_is_segment_anything_resize_longest_side(hw):
    h, w = hw
    frame = Frame(hw, S)
    # segment-anything's ResizeLongestSide.get_preprocess_shape: scale = S / max(h, w), int(x * scale + 0.5)
    scale = S / max(h, w)
    assert frame.resized_hw == (max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5)))
    assert max(frame.resized_hw) == S
    assert frame.valid_region(S) == frame.resized_hw


def test_points_scale_each_axis_in_xy_order():
    frame = Frame((327, 384), S)  # landscape: content 218 x 256, padding below
    rh, rw = frame.resized_hw
    assert (rh, rw) == (218, 256)
    corners = np.array([[0, 0], [384, 0], [0, 327], [384, 327]], float)  # (x, y)
    np.testing.assert_allclose(frame.points_to_model(corners), [[0, 0], [rw, 0], [0, rh], [rw, rh]])
    portrait = Frame((600, 250), S)  # content 256 x 107, padding on the right
    np.testing.assert_allclose(portrait.points_to_model([[250, 600]]), [[portrait.resized_hw[1], S]])
    # a single (2,) point is accepted and comes back as (1, 2)
    assert frame.points_to_model(np.array([10.0, 20.0])).shape == (1, 2)


@pytest.mark.parametrize("hw", SHAPES)
def test_points_and_boxes_round_trip(hw):
    frame = Frame(hw, S)
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, (50, 2)) * [hw[1], hw[0]]
    model = frame.points_to_model(pts)
    rh, rw = frame.resized_hw
    assert (model >= 0).all() and (model[:, 0] <= rw).all() and (model[:, 1] <= rh).all()  # inside the content
    np.testing.assert_allclose(frame.points_to_original(model), pts, rtol=1e-12, atol=1e-9)
    box = np.array([0.1 * hw[1], 0.2 * hw[0], 0.7 * hw[1], 0.9 * hw[0]])
    box_model = frame.box_to_model(box)
    assert box_model.shape == (4,)
    np.testing.assert_allclose(box_model, frame.points_to_model(box.reshape(2, 2)).reshape(4))
    np.testing.assert_allclose(frame.points_to_original(box_model.reshape(2, 2)).reshape(4), box, atol=1e-9)
    assert frame.points_to_model(pts) is not pts and pts.shape == (50, 2)  # inputs are never modified in place


@pytest.mark.parametrize("hw", [(327, 384), (600, 250)])
def test_resize_image_pads_bottom_right_with_zeros(hw):
    frame = Frame(hw, S)
    rh, rw = frame.resized_hw
    out = frame.resize_image(torch.ones(2, 3, *hw))
    assert out.shape == (2, 3, S, S)
    assert torch.all(out[..., rh:, :] == 0) and torch.all(out[..., :, rw:] == 0)  # the padding
    torch.testing.assert_close(out[..., :rh, :rw], torch.ones(2, 3, rh, rw))       # content, top-left


@pytest.mark.parametrize("hw", [(327, 384), (600, 250)])
@pytest.mark.parametrize("size", [S, 64])
def test_mask_to_model_lands_where_the_box_does(hw, size):
    frame = Frame(hw, S)
    mask = np.zeros(hw, bool)
    mask[int(0.3 * hw[0]): int(0.6 * hw[0]), int(0.5 * hw[1]): int(0.9 * hw[1])] = True
    m = frame.mask_to_model(mask, size)
    assert m.shape == (1, 1, size, size) and m.dtype == torch.float32
    vh, vw = frame.valid_region(size)
    assert torch.all(m[..., vh:, :] == 0) and torch.all(m[..., :, vw:] == 0)
    got = box_from_mask(m[0, 0].numpy() > 0.5)
    want = frame.box_to_model(box_from_mask(mask)) * size / S
    np.testing.assert_allclose(got, want, atol=1.0)  # within one cell of the frame's grid


@pytest.mark.parametrize("hw", SHAPES[:3])
def test_mask_logits_round_trip(hw):
    """original mask -> low-res logits in the padded frame -> original resolution: the same mask back."""
    frame = Frame(hw, S)
    mask = disc(hw, 0.4 * hw[1], 0.55 * hw[0], 0.25 * min(hw))
    logits = 20 * frame.mask_to_model(mask, size=S) - 10  # (1, 1, 256, 256), > 0 inside
    back = frame.logits_to_original(logits.repeat(1, 3, 1, 1))
    assert back.shape == (1, 3, *hw)
    assert dice(back[0, 0].numpy() > 0, mask) > 0.97


@pytest.mark.parametrize("hw", [(327, 384), (600, 250)])
def test_padding_never_reaches_the_original_image(hw):
    frame = Frame(hw, S)
    vh, vw = frame.valid_region(S)
    logits = torch.full((1, 1, S, S), -10.0)
    logits[..., vh + 2:, :] = 10.0  # positive only in the padding (two rows of margin for the bilinear kernel)
    logits[..., :, vw + 2:] = 10.0
    assert (frame.logits_to_original(logits) < 0).all()


def test_box_from_mask():
    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:20] = True  # rows 5-8, columns 10-19
    np.testing.assert_array_equal(box_from_mask(mask), [10, 5, 20, 9])  # x1, y1 exclusive
    np.testing.assert_allclose(box_from_mask(mask, 0.1), [9, 4.6, 21, 9.4])  # 10 % of width / height per side
    np.testing.assert_array_equal(box_from_mask(mask, 5.0), [0, 0, 30, 20])  # clipped to the image
    with pytest.raises(InputError, match="empty"):
        box_from_mask(np.zeros((4, 4), bool))


def test_component_boxes_largest_first_speckle_dropped():
    mask = np.zeros((40, 40), bool)
    mask[2:6, 2:6] = True       # 16 px
    mask[20:35, 10:30] = True   # 300 px: first
    mask[0, 39] = True          # 1 px speckle: < 5 % of the area, dropped
    boxes = component_boxes(mask)
    np.testing.assert_array_equal(boxes, [[10, 20, 30, 35], [2, 2, 6, 6]])
    assert component_boxes(mask, min_fraction=0.9).shape == (1, 4)  # the largest is always kept
    with pytest.raises(InputError):
        component_boxes(np.zeros((4, 4), bool))
