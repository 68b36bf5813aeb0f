"""The columns of a run table (mlflow.search_runs' frame): a param, a metric or the stage of every run.

A column a grid never logged reads as empty ("" for params and stages, NaN for metrics), so every
table, plot and comparison handles grids of every age and shape alike.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def param_column(runs: pd.DataFrame, key: str) -> pd.Series:
    """params.<key> of every run ("" where the grid never logged it)."""
    column = f"params.{key}"
    return runs[column] if column in runs else pd.Series("", index=runs.index)


def metric_column(runs: pd.DataFrame, name: str) -> pd.Series:
    """metrics.<name> of every run as floats (NaN where the grid never logged it)."""
    column = f"metrics.{name}"
    return runs[column].astype(float) if column in runs else pd.Series(np.nan, index=runs.index)


def stage_column(runs: pd.DataFrame) -> pd.Series:
    """Stage name per run ("" for single-stage grids, or when fetch_runs has no stage column)."""
    return runs["stage"].fillna("").astype(str) if "stage" in runs else pd.Series("", index=runs.index)
