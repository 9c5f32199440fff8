"""Classification metrics and the flag AUROC against hand-computed cases and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from roiprompt import metrics
from roiprompt.errors import InputError



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
