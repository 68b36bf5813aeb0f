"""The statistics of the report: intervals for few seeds, the paired test, the Pareto frontier (numpy/scipy)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95


def t_interval(values, level: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t interval of the mean, mean ± t(n-1) * sd / sqrt(n); (NaN, NaN) below 2 values.

    Why not the bootstrap: with 3 seeds a percentile bootstrap interval is about min-max of the
    values and covers the mean far less often than `level`; the t interval is exact for normal
    scores and honest (wide) for few seeds. Zero spread gives a zero-width interval: the values agree.
    """
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return np.nan, np.nan
    half = stats.t.ppf((1 + level) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def paired_p(variant: pd.Series, reference: pd.Series) -> float:
    """Two-sided paired t-test p-value; NaN below 2 pairs (and when every difference is exactly 0)."""
    if len(variant) < 2:
        return np.nan
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # zero-variance differences
        return float(stats.ttest_rel(variant.to_numpy(float), reference.to_numpy(float)).pvalue)


def pareto_front(cost, score) -> np.ndarray:
    """True for points no other point dominates (cost <= and score >=, one strictly); NaN points never count."""
    cost, score = np.asarray(cost, dtype=float), np.asarray(score, dtype=float)
    # [i, j]: does point j dominate point i?  (n, n)
    no_worse = (cost[None, :] <= cost[:, None]) & (score[None, :] >= score[:, None])
    better = (cost[None, :] < cost[:, None]) | (score[None, :] > score[:, None])
    return ~(no_worse & better).any(axis=1) & ~np.isnan(cost) & ~np.isnan(score)
