"""Each metric against a case small enough to compute by hand, the empty-mask rules, and the unhappy paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from roiprompt import metrics
from roiprompt.errors import InputError


def square(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


# -- segmentation ---------------------------------------------------------------------------------------------
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


# -- classification -------------------------------------------------------------------------------------------
def test_classification_by_hand():
    y = ["a", "a", "a", "b"]
    p = ["a", "a", "b", "b"]
    assert metrics.accuracy(y, p) == 0.75
    assert metrics.balanced_accuracy(y, p) == pytest.approx((2 / 3 + 1) / 2)  # recall(a) = 2/3, recall(b) = 1
    # F1(a) = 2*2/(2*2+0+1) = 0.8 ; F1(b) = 2*1/(2*1+1+0) = 2/3
    assert metrics.macro_f1(y, p) == pytest.approx((0.8 + 2 / 3) / 2)
    np.testing.assert_array_equal(metrics.confusion_matrix(y, p, ["a", "b"]), [[2, 1], [0, 1]])
    np.testing.assert_array_equal(metrics.confusion_matrix(y, p, ["b", "a"]), [[1, 0], [1, 2]])
    scores = metrics.classification_scores(y, p, [0.1, 0.2, 0.7, 0.9], classes=["a", "b"])
    assert scores == pytest.approx({"accuracy": 0.75, "balanced_accuracy": 5 / 6, "macro_f1": 11 / 15, "auroc": 1.0})


def test_three_class_by_hand():
    y = [0, 0, 1, 1, 2, 2]
    p = [0, 1, 1, 1, 0, 2]
    assert metrics.balanced_accuracy(y, p) == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    # F1: class 0 tp1 fp1 fn1 -> 1/2; class 1 tp2 fp1 fn0 -> 4/5; class 2 tp1 fp0 fn1 -> 2/3
    assert metrics.macro_f1(y, p) == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert metrics.macro_f1(y, p, classes=[0, 1, 2, 3]) == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)  # 3 unseen
    assert metrics.confusion_matrix(y, p, classes=[0, 1, 2, 3]).shape == (4, 4)


def test_classification_input_errors():
    with pytest.raises(InputError, match="same length"):
        metrics.accuracy(["a"], ["a", "b"])
    with pytest.raises(InputError, match="not in classes"):
        metrics.macro_f1(["a", "c"], ["a", "a"], classes=["a", "b"])
    with pytest.raises(InputError, match="1-D"):
        metrics.accuracy([], [])


def test_auroc_by_hand():
    y = [0, 0, 1, 1]
    s = [0.1, 0.4, 0.35, 0.8]  # positive/negative pairs ranked right: 3 of 4
    assert metrics.auroc(y, s) == pytest.approx(0.75)
    probs = np.stack([1 - np.array(s), s], axis=1)
    assert metrics.auroc(y, probs) == pytest.approx(0.75)
    names = ["benign", "benign", "malignant", "malignant"]
    assert metrics.auroc(names, s, classes=["benign", "malignant"]) == pytest.approx(0.75)
    assert metrics.auroc(names, 1 - np.array(s), classes=["malignant", "benign"]) == pytest.approx(0.75)
    assert math.isnan(metrics.auroc([1, 1], [0.2, 0.3]))  # one class: undefined, not a crash
    assert math.isnan(metrics.auroc([1, 1], [0.2, 0.3], classes=[0, 1]))
    assert metrics.auroc(["x", "y", "z"], np.eye(3), classes=["x", "y", "z"]) == 1.0


def test_auroc_multiclass_matches_sklearn_ovr():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    logits = rng.normal(size=(60, 3)) + 1.5 * np.eye(3)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert metrics.auroc(y, probs) == pytest.approx(expected)
    assert metrics.auroc(y, probs, classes=[0, 1, 2]) == pytest.approx(expected)
    # a class missing from y_true is left out of the macro mean
    present = y != 2
    two = np.mean([roc_auc_score(y[present] == c, probs[present, c]) for c in (0, 1)])
    assert metrics.auroc(y[present], probs[present], classes=[0, 1, 2]) == pytest.approx(two)


def test_auroc_input_errors():
    with pytest.raises(InputError, match="columns"):
        metrics.auroc([0, 1, 2], np.ones((3, 4)), classes=[0, 1, 2])
    with pytest.raises(InputError, match="N = len"):
        metrics.auroc([0, 1], [0.2, 0.3, 0.4])
    with pytest.raises(InputError, match="non-finite"):
        metrics.auroc([0, 1], [0.2, np.nan])
    with pytest.raises(InputError, match="2 classes"):
        metrics.auroc([0, 1, 2], [0.2, 0.3, 0.4])


def test_flag_auroc_sign():
    quality = [0.9, 0.8, 0.2, 0.3]
    dice = [0.95, 0.9, 0.1, 0.4]  # low quality <-> failure: a perfect flag
    assert metrics.flag_auroc(quality, dice) == 1.0
    assert metrics.flag_auroc(-np.array(quality), dice) == 0.0
    # failures (Dice < 0.5) have quality {0.1, 0.4}, successes {0.35, 0.8}: 3 of 4 pairs ranked right
    assert metrics.flag_auroc([0.1, 0.4, 0.35, 0.8], [0.2, 0.3, 0.9, 0.5]) == pytest.approx(0.75)
    assert math.isnan(metrics.flag_auroc([0.1, 0.2], [0.9, 0.8]))  # no failure to detect
    with pytest.raises(InputError, match="finite"):
        metrics.flag_auroc([0.1, np.nan], [0.2, 0.9])


# -- confidence intervals -------------------------------------------------------------------------------------
def test_bootstrap_ci():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.8, 0.1, 20), rng.normal(0.8, 0.1, 2000)
    lo, hi = metrics.bootstrap_ci(small)
    assert lo <= small.mean() <= hi
    assert metrics.bootstrap_ci(small) == metrics.bootstrap_ci(small)  # seeded
    assert metrics.bootstrap_ci(small, seed=1) != metrics.bootstrap_ci(small)
    lo2, hi2 = metrics.bootstrap_ci(large)
    assert hi2 - lo2 < (hi - lo) / 3  # ~ 1/sqrt(100) as wide
    lo90, hi90 = metrics.bootstrap_ci(small, level=0.90)
    assert lo <= lo90 and hi90 <= hi
    assert metrics.bootstrap_ci([0.5]) == (0.5, 0.5)
    assert metrics.bootstrap_ci([0.3] * 5) == pytest.approx((0.3, 0.3))
    # [0, 1]: resample means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4 -> 95 % percentile CI = (0, 1)
    assert metrics.bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    # a statistic without an axis argument takes the per-resample path and sees the same resamples
    assert metrics.bootstrap_ci(small, lambda v: v.mean()) == pytest.approx(metrics.bootstrap_ci(small))


def test_bootstrap_errors():
    with pytest.raises(InputError, match="level"):
        metrics.bootstrap_ci([0.1, 0.2], level=95)
    with pytest.raises(InputError, match="nan/inf"):
        metrics.bootstrap_ci([0.1, np.nan])
    with pytest.raises(InputError, match="n_resamples"):
        metrics.bootstrap_ci([0.1, 0.2], n_resamples=0)


def test_bootstrap_ci_paired():
    y, p = ["a"] * 10 + ["b"] * 10, ["a"] * 15 + ["b"] * 5
    lo, hi = metrics.bootstrap_ci_paired(y, p, metrics.accuracy, n_resamples=300)
    assert lo <= 0.75 <= hi and hi - lo > 0
    assert metrics.bootstrap_ci_paired(y, p, metrics.accuracy, n_resamples=300) == (lo, hi)
    assert metrics.bootstrap_ci_paired(["a"], ["b"], metrics.accuracy) == (0.0, 0.0)
    # AUROC over jointly resampled (label, score) rows; single-class resamples (nan) are dropped
    rng = np.random.default_rng(2)
    labels = np.array([0, 1] * 4)
    scores = labels + rng.normal(0, 0.8, 8)
    lo, hi = metrics.bootstrap_ci_paired(labels, scores, metrics.auroc, n_resamples=100)
    assert 0 <= lo <= metrics.auroc(labels, scores) <= hi <= 1
    with pytest.raises(InputError, match="same non-zero number"):
        metrics.bootstrap_ci_paired([0, 1], [0.5], metrics.auroc)


def test_t_interval_by_hand():
    # [1, 2, 3]: mean 2, s = 1, t(0.975, df=2) = 4.302653 -> 2 ± 4.302653 / sqrt(3)
    lo, hi = metrics.t_interval([1, 2, 3])
    half = 4.302653 / math.sqrt(3)
    assert (lo, hi) == pytest.approx((2 - half, 2 + half), rel=1e-6)
    assert metrics.t_interval([0.7] * 5) == pytest.approx((0.7, 0.7))
    assert all(math.isnan(v) for v in metrics.t_interval([0.7]))  # one seed: no spread to estimate


def test_summarize():
    s = metrics.summarize([0.5, 0.7, np.nan])
    assert s["n"] == 2 and s["n_nan"] == 1 and s["mean"] == pytest.approx(0.6)
    assert s["ci95"][0] <= 0.6 <= s["ci95"][1] and s["sd"] == pytest.approx(math.sqrt(0.02))
    t = metrics.summarize([1, 2, 3], ci="t")
    assert t["ci95"] == pytest.approx(list(metrics.t_interval([1, 2, 3])))
    empty = metrics.summarize([np.nan])
    assert empty["n"] == 0 and math.isnan(empty["mean"])
    with pytest.raises(InputError, match="ci must be"):
        metrics.summarize([0.5], ci="normal")
