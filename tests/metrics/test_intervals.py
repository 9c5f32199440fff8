"""Bootstrap and t confidence intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from roiprompt import metrics
from roiprompt.errors import InputError



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
