"""The runs of a grid as the report reads them, and the per-cell table.

  prepared          fetch_runs' frame with today's cell names and axis labels, in grid order
  one_class_level   the test F1-macro of a model whose correct predictions all fall in one class
  majority_flags    which finished cells score at that level (a model that collapsed to one class)
  cells_table       every column the report knows per cell (the CSV `--save` writes)
  cells_view        what a researcher reads in a terminal: per kind its score, time per epoch, memory

The majority-class rule, from what every classification cell records (test F1-macro and accuracy):
with two classes a model whose correct predictions all belong to one class (e.g. it always predicts
the majority class: accuracy = the majority share a) has F1-macro a / (1 + a) exactly, and every other
model scores above that (F1 of each class >= 2·TP_k / (2·TP_k + errors), a concave function of TP_k, so
the sum over classes is at least 2a / (1 + a)). With K classes such a model scores 2a / ((1 + a)·K), at
most that level. A cell is flagged when its test F1-macro is within MAJORITY_MARGIN of a / (1 + a).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from raygrid.report.columns import metric_column
from raygrid.spec.names import modern_label, modern_name
from raygrid.training import metric_names as M

MAJORITY_MARGIN = 0.005  # F1-macro within 0.5 percentage points of the one-class level: one or two lucky hits
MAJORITY = "majority class"  # the flag's text in tables
ERROR_WIDTH = 40  # characters of a failure's reason in the terminal table (CSV and the end of `run` print it whole)
FULL_COLUMNS = {"metrics.val_f1_macro": "val_f1", "metrics.best_val_f1_macro": "best_val_f1",
                "metrics.test_f1_macro": "test_f1", "metrics.test_accuracy": "test_acc",
                "metrics.final_val_loss": M.FINAL_VAL_LOSS, "metrics.best_val_loss": M.BEST_VAL_LOSS,
                "metrics.train_time_s": "train_s", "metrics.epoch_time_mean_s": "epoch_s_mean",
                "metrics.tokens_per_s": "tokens/s", "metrics.peak_gpu_mem_mb": "gpu_MiB",
                "metrics.peak_host_mem_mb": "host_MiB"}


def prepared(runs: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """The runs with today's names (raygrid.spec.names.modern_name) and axis labels, in grid order.

    `order` is the grid's cell names (when the caller has the grid): cells in that order, others
    after them. Without it, the order the cells were first recorded in (Tune starts a grid's trials
    in grid order; fetch_runs lists the newest run first).
    """
    if runs.empty or "cell" not in runs:
        return runs
    runs = runs.iloc[::-1].copy()  # oldest first
    runs["cell"] = runs["cell"].astype(str).map(modern_name)
    for column in [c for c in runs.columns if c.startswith("params.axis.")]:
        runs[column] = runs[column].map(lambda v: modern_label(v) if isinstance(v, str) else v)
    if order:
        position = {name: i for i, name in enumerate(order)}
        rank = runs["cell"].map(lambda name: position.get(name, len(position)))
        runs = runs.assign(_rank=rank.values).sort_values("_rank", kind="stable").drop(columns="_rank")
    return runs.reset_index(drop=True)


def one_class_level(accuracy):
    """Test F1-macro of a two-class model whose correct predictions all fall in one class, at this accuracy."""
    return accuracy / (1 + accuracy)


def majority_flags(runs: pd.DataFrame) -> pd.Series:
    """True for finished cells whose test F1-macro is at the one-class level (see the module docstring)."""
    f1, accuracy = metric_column(runs, M.TEST_F1_MACRO), metric_column(runs, M.TEST_ACCURACY)
    finished = runs["status"] == "FINISHED" if "status" in runs else pd.Series(False, index=runs.index)
    return (finished & (f1 <= one_class_level(accuracy) + MAJORITY_MARGIN)).fillna(False).astype(bool)


def cells_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every cell run: name, status, every score and cost recorded, the flag, the whole failure reason."""
    if "cell" not in runs:
        return pd.DataFrame()
    table = pd.DataFrame({"cell": runs["cell"], "status": runs["status"]})
    for column, label in FULL_COLUMNS.items():
        if column in runs:
            table[label] = runs[column]
    flags = majority_flags(runs)
    if flags.any():
        table["flag"] = np.where(flags, MAJORITY, "")
    if "error" in runs and runs["error"].fillna("").astype(bool).any():
        table["error"] = runs["error"]
    return table.reset_index(drop=True)


def cells_view(runs: pd.DataFrame) -> pd.DataFrame:
    """The cells for a terminal: name (its stage first), status, the scores its kind has, time per epoch, memory.

    Classification cells: test F1-macro and best validation F1-macro; MLM cells: final validation
    loss; then mean time per epoch and the peak memory that applies (GPU when any cell used one,
    else host). Columns no cell fills are left out; the rest stays in the CSV and in MLflow.
    """
    full = cells_table(runs)
    if full.empty:
        return full
    gpu = "gpu_MiB" in full and (full["gpu_MiB"].fillna(0) > 0).any()
    wanted = {"cell": "cell", "status": "status", "test_f1": "test_f1", "best_val_f1": "val_f1",
              M.FINAL_VAL_LOSS: M.FINAL_VAL_LOSS, "epoch_s_mean": "epoch_s",
              "gpu_MiB" if gpu else "host_MiB": "gpu_MiB" if gpu else "host_MiB", "flag": "flag", "error": "error"}
    view = full[[c for c in wanted if c in full and full[c].notna().any()]].rename(columns=wanted)
    if "error" in view:
        view["error"] = view["error"].fillna("").astype(str).map(_clip)
    return view


def _clip(text: str) -> str:
    text = " ".join(text.split())  # one line
    return text if len(text) <= ERROR_WIDTH else text[:ERROR_WIDTH - 1] + "…"
