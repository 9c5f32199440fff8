"""Each metric against a case small enough to compute by hand."""

from __future__ import annotations

import numpy as np
import pytest

from roiprompt import metrics
from roiprompt.errors import InputError


def square(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_dice_iou_by_hand():
    p = square(4, 4, 0, 1, 0, 3)   # 3 pixels: (0,0) (0,1) (0,2)
    t = square(4, 4, 0, 1, 1, 4)   # 3 pixels: (0,1) (0,2) (0,3) -> overlap 2
    assert metrics.dice(p, t) == pytest.approx(2 * 2 / (3 + 3))
    assert metrics.iou(p, t) == pytest.approx(2 / 4)
    assert metrics.dice(p.astype(np.uint8), t) == pytest.approx(2 / 3)


def test_hd95_by_hand():
    a = square(20, 20, 5, 10, 5, 10)
    assert metrics.hd95(a, a) == 0.0
    assert metrics.hd95(a, np.roll(a, 1, axis=1)) == pytest.approx(1.0)  # one-pixel shift
    b = square(20, 20, 5, 10, 12, 17)  # same square 7 px to the right: every boundary point moves 7 px
    assert metrics.hd95(a, b) == pytest.approx(7.0)
    assert metrics.hd95(a, b, spacing=(1.0, 0.5)) == pytest.approx(3.5)  # mm with 0.5 mm columns


def test_empty_mask_rules():
    e = np.zeros((3, 4), bool)
    f = square(3, 4, 0, 1, 0, 1)
    assert metrics.segmentation_scores(e, e) == {"dice": 1.0, "iou": 1.0, "hd95": 0.0}
    s = metrics.segmentation_scores(f, e)
    assert s["dice"] == 0.0 and s["iou"] == 0.0 and s["hd95"] == pytest.approx(5.0)  # diagonal of 3x4


def test_segmentation_input_errors():
    with pytest.raises(InputError, match="same shape"):
        metrics.dice(np.zeros((3, 3), bool), np.zeros((3, 4), bool))
    with pytest.raises(InputError, match="not binary"):
        metrics.dice(np.full((3, 3), 7), np.zeros((3, 3), bool))
    with pytest.raises(InputError, match="HxW"):
        metrics.iou(np.zeros((3,), bool), np.zeros((3,), bool))


def test_classification_by_hand():
    y = ["a", "a", "a", "b"]
    p = ["a", "a", "b", "b"]
    assert metrics.accuracy(y, p) == 0.75
    assert metrics.balanced_accuracy(y, p) == pytest.approx((2 / 3 + 1) / 2)
    # F1(a) = 2*2/(2*2+0+1) = 0.8 ; F1(b) = 2*1/(2*1+1+0) = 2/3
    assert metrics.macro_f1(y, p) == pytest.approx((0.8 + 2 / 3) / 2)
    np.testing.assert_array_equal(metrics.confusion_matrix(y, p, ["a", "b"]), [[2, 1], [0, 1]])
    with pytest.raises(InputError, match="same length"):
        metrics.accuracy(["a"], ["a", "b"])


def test_auroc_by_hand():
    y = [0, 0, 1, 1]
    s = [0.1, 0.4, 0.35, 0.8]  # positive/negative pairs ranked right: 3 of 4
    assert metrics.auroc(y, s) == pytest.approx(0.75)
    probs = np.stack([1 - np.array(s), s], axis=1)
    assert metrics.auroc(y, probs) == pytest.approx(0.75)
    assert np.isnan(metrics.auroc([1, 1], [0.2, 0.3]))
    y3 = ["x", "y", "z"]
    assert metrics.auroc(y3, np.eye(3), classes=["x", "y", "z"]) == 1.0


def test_flag_auroc_sign():
    quality = [0.9, 0.8, 0.2, 0.3]
    dice = [0.95, 0.9, 0.1, 0.4]  # low quality <-> failure: perfect flag
    assert metrics.flag_auroc(quality, dice) == 1.0


def test_bootstrap_and_t_interval():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.8, 0.1, 20), rng.normal(0.8, 0.1, 2000)
    lo, hi = metrics.bootstrap_ci(small)
    assert lo <= small.mean() <= hi
    assert metrics.bootstrap_ci(small) == metrics.bootstrap_ci(small)  # seeded
    lo2, hi2 = metrics.bootstrap_ci(large)
    assert hi2 - lo2 < hi - lo
    assert metrics.bootstrap_ci([0.5]) == (0.5, 0.5)
    # t-interval of [1, 2, 3]: mean 2, s = 1, t(0.975, 2) = 4.302653 -> half width 4.302653 / sqrt(3)
    lo, hi = metrics.t_interval([1, 2, 3])
    assert (hi - lo) / 2 == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    acc_lo, acc_hi = metrics.bootstrap_ci_paired(["a"] * 10 + ["b"] * 10, ["a"] * 15 + ["b"] * 5, metrics.accuracy)
    assert acc_lo <= 0.75 <= acc_hi
    s = metrics.summarize([0.5, 0.7, np.nan])
    assert s["n"] == 2 and s["mean"] == pytest.approx(0.6)
