"""Segmentation metrics against cases small enough to compute by hand, the empty-mask rules, the unhappy paths."""

from __future__ import annotations


import numpy as np
import pytest
from scipy import ndimage

from roiprompt import metrics
from roiprompt.errors import InputError



def square(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m



def test_dice_iou_by_hand():
    p = square(4, 4, 0, 1, 0, 3)  # 3 pixels: (0,0) (0,1) (0,2)
    t = square(4, 4, 0, 1, 1, 4)  # 3 pixels: (0,1) (0,2) (0,3) -> overlap 2, union 4
    assert metrics.dice(p, t) == pytest.approx(2 * 2 / (3 + 3))
    assert metrics.iou(p, t) == pytest.approx(2 / 4)
    assert metrics.dice(p.astype(np.uint8), t.astype(float)) == pytest.approx(2 / 3)  # {0, 1} of any dtype
    inner, outer = square(5, 5, 1, 3, 1, 3), square(5, 5, 1, 4, 1, 4)  # 4 pixels inside 9
    assert metrics.dice(inner, outer) == pytest.approx(2 * 4 / (4 + 9))
    assert metrics.iou(inner, outer) == pytest.approx(4 / 9)
    assert metrics.dice(t, t) == 1.0 and metrics.iou(t, t) == 1.0


def test_hd95_by_hand():
    a = square(20, 20, 5, 10, 5, 10)
    assert metrics.hd95(a, a) == 0.0
    assert metrics.hd95(a, np.roll(a, 1, axis=1)) == pytest.approx(1.0)  # one-pixel shift
    # two 2x2 squares, columns {0,1} and {5,6}: directed distances {5, 5, 4, 4} each way -> q95 = 5
    left, right = square(4, 10, 0, 2, 0, 2), square(4, 10, 0, 2, 5, 7)
    assert metrics.hd95(left, right) == pytest.approx(5.0)
    assert metrics.hd95(right, left) == pytest.approx(5.0)
    assert metrics.hd95(left, right, spacing=(2.0, 0.5)) == pytest.approx(2.5)  # 5 columns of 0.5 mm
    assert metrics.hd95(left, right, spacing=2.0) == pytest.approx(10.0)  # square pixels of 2 mm
    # single pixels at (0, 0) and (3, 4): a 3-4-5 triangle
    assert metrics.hd95(square(5, 5, 0, 1, 0, 1), square(5, 5, 3, 4, 4, 5)) == pytest.approx(5.0)


def test_hd95_boundary_convention():
    # inner contour: a filled 3x3 square and its 8-pixel ring share the same boundary, so HD95 = 0 though Dice < 1
    filled = square(7, 7, 2, 5, 2, 5)
    ring = filled.copy()
    ring[3, 3] = False
    assert metrics.hd95(filled, ring) == 0.0
    assert metrics.dice(filled, ring) == pytest.approx(2 * 8 / 17)
    # the image border is boundary: a full mask vs the same minus its last column -> 1 px
    full = np.ones((5, 5), bool)
    assert metrics.hd95(full, square(5, 5, 0, 5, 0, 4)) == pytest.approx(1.0)
    # a 95th percentile ignores one far outlier pixel among 36 exact boundary pixels (max HD would be 20)
    target = square(30, 30, 0, 10, 0, 10)
    pred = target.copy()
    pred[0, 29] = True
    assert metrics.hd95(pred, target) == pytest.approx(0.0)


def _hd95_reference(p: np.ndarray, t: np.ndarray) -> float:
    """The documented convention written out: inner contours, max of the two directed 95th percentiles."""
    ep, et = np.argwhere(p ^ ndimage.binary_erosion(p)), np.argwhere(t ^ ndimage.binary_erosion(t))
    d = np.sqrt(((ep[:, None, :] - et[None, :, :]) ** 2).sum(-1))  # (|ep|, |et|)
    return max(np.quantile(d.min(1), 0.95), np.quantile(d.min(0), 0.95))


def test_hd95_matches_documented_convention_on_random_blobs():
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = ndimage.binary_opening(rng.random((24, 24)) > 0.45)
        t = ndimage.binary_opening(rng.random((24, 24)) > 0.45)
        p[1, 1] = t[2, 2] = True  # never empty
        p[0, :] = t[:, 0] = False  # keep off the border, where padding conventions could differ
        p[-1, :] = t[:, -1] = False
        p[:, 0] = t[0, :] = p[:, -1] = t[-1, :] = False
        assert metrics.hd95(p, t) == pytest.approx(_hd95_reference(p, t), rel=1e-5)


def test_empty_mask_rules():
    e = np.zeros((3, 4), bool)
    f = square(3, 4, 0, 1, 0, 1)
    assert metrics.segmentation_scores(e, e) == {"dice": 1.0, "iou": 1.0, "hd95": 0.0}
    for pred, target in ((f, e), (e, f)):
        s = metrics.segmentation_scores(pred, target)
        assert s == {"dice": 0.0, "iou": 0.0, "hd95": pytest.approx(5.0)}  # diagonal of 3x4 = 5
        assert metrics.dice(pred, target) == 0.0 and metrics.iou(pred, target) == 0.0
        assert metrics.hd95(pred, target, spacing=(2.0, 2.0)) == pytest.approx(10.0)  # 6 mm x 8 mm image
    assert metrics.dice(e, e) == 1.0 and metrics.iou(e, e) == 1.0 and metrics.hd95(e, e) == 0.0
    assert [metrics.empty_mask_case(*pair) for pair in ((f, f), (e, f), (f, e), (e, e))] == [
        "none", "pred", "target", "both"]


def test_segmentation_scores_agree_with_single_metrics():
    rng = np.random.default_rng(3)
    p, t = ndimage.binary_opening(rng.random((32, 40)) > 0.4), ndimage.binary_opening(rng.random((32, 40)) > 0.4)
    s = metrics.segmentation_scores(p, t, spacing=(1.0, 0.7))
    assert s == {"dice": metrics.dice(p, t), "iou": metrics.iou(p, t), "hd95": metrics.hd95(p, t, (1.0, 0.7))}
    assert s["dice"] == pytest.approx(2 * (p & t).sum() / (p.sum() + t.sum()))
    assert s["iou"] == pytest.approx((p & t).sum() / (p | t).sum())


def test_segmentation_input_errors():
    with pytest.raises(InputError, match="same shape"):
        metrics.dice(np.zeros((3, 3), bool), np.zeros((3, 4), bool))
    with pytest.raises(InputError, match="same shape"):
        metrics.segmentation_scores(np.zeros((3, 3), bool), np.zeros((4, 3), bool))
    with pytest.raises(InputError, match="pred is not binary"):
        metrics.dice(np.full((3, 3), 7), np.zeros((3, 3), bool))
    with pytest.raises(InputError, match="target is not binary"):
        metrics.hd95(np.zeros((3, 3), bool), np.full((3, 3), 0.3))
    with pytest.raises(InputError, match="not binary"):
        metrics.iou(np.full((3, 3), np.nan), np.zeros((3, 3), bool))
    with pytest.raises(InputError, match="HxW"):
        metrics.iou(np.zeros((3,), bool), np.zeros((3,), bool))
    with pytest.raises(InputError, match="spacing"):
        metrics.hd95(np.ones((3, 3), bool), np.ones((3, 3), bool), spacing=(1.0, -1.0))
