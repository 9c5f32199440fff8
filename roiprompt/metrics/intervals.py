"""Confidence intervals: percentile bootstrap over items (per-image values, or jointly resampled test items for
set-level metrics) and t-intervals over seeds."""

from __future__ import annotations

import math
from typing import Any, Callable, Literal

import numpy as np
from scipy import stats

from ..errors import InputError


def _check_level(level: float, n_resamples: int | None = None) -> None:
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), e.g. 0.95, got {level}")
    if n_resamples is not None and (int(n_resamples) != n_resamples or n_resamples < 1):
        raise InputError(f"n_resamples must be a positive integer, got {n_resamples}")


def _values(values: Any) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise InputError(f"values must be a non-empty 1-D array (one value per image or seed), got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise InputError(f"values hold {int((~np.isfinite(v)).sum())} nan/inf entries; a CI needs finite values")
    return v


def _percentiles(stats_: np.ndarray, level: float) -> tuple[float, float]:
    stats_ = stats_[np.isfinite(stats_)]  # e.g. AUROC of a resample with a single class
    if stats_.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(stats_, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def bootstrap_ci(values: Any, statistic: Callable[..., Any] = np.mean, n_resamples: int = 1000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over items (e.g. per-image Dice), deterministic given ``seed``.

    Args:
        values: (N,) finite per-item values.
        statistic: reduces (..., N) to (...); called with ``axis=-1`` when it accepts it, else once per resample.
        n_resamples: bootstrap resamples (methods.md §6.4: 1000).
        level: confidence level in (0, 1).
        seed: seed of ``np.random.default_rng``.

    Returns:
        (lo, hi); ``(v, v)`` when N = 1.

    Raises:
        InputError: empty or non-finite values, level outside (0, 1), n_resamples < 1.
    """
    _check_level(level, n_resamples)
    v = _values(values)
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    chunk = max(1, 1_000_000 // v.size)  # bound memory at ~8 MB of resampled values
    out = []
    for start in range(0, n_resamples, chunk):
        sample = v[rng.integers(0, v.size, size=(min(chunk, n_resamples - start), v.size))]  # (R, N)
        try:
            out.append(np.asarray(statistic(sample, axis=-1), dtype=float))
        except TypeError:  # a statistic without an axis argument
            out.append(np.array([statistic(row) for row in sample], dtype=float))
    return _percentiles(np.concatenate(out), level)


def bootstrap_ci_paired(y_true: Any, y_pred: Any, metric_fn: Callable[[np.ndarray, np.ndarray], float],
                        n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of a set-level metric (accuracy, AUROC...) resampling test items jointly.

    Each resample draws N item indices with replacement and evaluates ``metric_fn(y_true[idx], y_pred[idx])``.
    Resamples where the metric is nan (e.g. AUROC of a single-class resample) are dropped.

    Args:
        y_true: (N,) labels.
        y_pred: (N,) predicted labels or (N, C) scores, row i for item i.
        metric_fn: e.g. :func:`accuracy` or ``functools.partial(auroc, classes=classes)``.
        n_resamples: bootstrap resamples.
        level: confidence level in (0, 1).
        seed: seed of ``np.random.default_rng``.

    Returns:
        (lo, hi); ``(m, m)`` with m the metric when N = 1; (nan, nan) when every resample is nan.
    """
    _check_level(level, n_resamples)
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or t.size == 0 or p.shape[:1] != t.shape:
        raise InputError(f"y_true {t.shape} and y_pred {p.shape} must have the same non-zero number of items N")
    if t.size == 1:
        m = float(metric_fn(t, p))
        return m, m
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, t.size, size=(n_resamples, t.size))  # (R, N)
    return _percentiles(np.array([metric_fn(t[i], p[i]) for i in idx], dtype=float), level)


def t_interval(values: Any, level: float = 0.95) -> tuple[float, float]:
    """Student-t CI of the mean over a few seeds: mean ± t_{(1+level)/2, n-1} · s / sqrt(n), s with ddof=1.

    Args:
        values: (n,) finite per-seed values (e.g. the per-seed mean Dice).
        level: confidence level in (0, 1).

    Returns:
        (lo, hi); (nan, nan) when n = 1 (no spread to estimate from one seed).
    """
    _check_level(level)
    v = _values(values)
    if v.size == 1:
        return float("nan"), float("nan")
    half = stats.t.ppf((1 + level) / 2, df=v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean() - half), float(v.mean() + half)


def summarize(values: Any, ci: Literal["bootstrap", "t"] = "bootstrap", n_resamples: int = 1000,
              seed: int = 0) -> dict[str, Any]:
    """Mean, 95 % CI and count of per-item (bootstrap) or per-seed (t) values, as benchmark records store them.

    nan entries (e.g. an undefined AUROC) are left out and counted in ``n_nan``, never silently; inf raises.

    Args:
        values: (N,) values.
        ci: "bootstrap" over items (single-run settings) or "t" over seeds (methods.md §6.4).
        n_resamples: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        ``{"mean": float, "ci95": [lo, hi], "n": int, "sd": float, "n_nan": int}``: n counts the values used;
        sd has ddof=1 (nan when n = 1); everything but the counts is nan when no value is left.

    Example:
        >>> summarize([0.5, 0.7, float("nan")])["n"]
        2
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1:
        raise InputError(f"values must be a 1-D array (one value per image or seed), got shape {v.shape}")
    if ci not in ("bootstrap", "t"):
        raise InputError(f"ci must be 'bootstrap' or 't', got {ci!r}")
    kept = v[~np.isnan(v)]
    nan = float("nan")
    if kept.size == 0:
        return {"mean": nan, "ci95": [nan, nan], "n": 0, "sd": nan, "n_nan": int(v.size)}
    if ci == "bootstrap":
        lo, hi = bootstrap_ci(kept, np.mean, n_resamples=n_resamples, level=0.95, seed=seed)
    else:
        lo, hi = t_interval(kept, level=0.95)
    sd = float(kept.std(ddof=1)) if kept.size > 1 else nan
    return {"mean": float(kept.mean()), "ci95": [lo, hi], "n": int(kept.size), "sd": sd,
            "n_nan": int(v.size - kept.size)}
