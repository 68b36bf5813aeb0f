"""What the figures draw, from the runs: one point, bar or curve per cell with its seeds pooled (mean, sd, n).

  bars_frame    per cell: test and best-validation F1-macro, mean and sd over seeds, seeds at the majority-class level
  pareto_frame  per (stage, label, dataset): test F1-macro, time per epoch and peak memory, each mean and sd
  curve_frame   per cell and epoch (1-based, as the console counts): mean and sd of a metric over seeds
A label is the attention variant when variants differ, else the cell name without its seed; a cell
name starts with its stage in a staged grid, so labels carry the stage once.
"""
from __future__ import annotations

import pandas as pd

from raygrid.report.cells import majority_flags
from raygrid.report.columns import metric_column, param_column
from raygrid.report.tables import COSTS, SD, cost_frame, finished_cells
from raygrid.spec.names import top_level_parts
from raygrid.training import metric_names as M

Curve = list[tuple[int, float]]  # (MLflow step = 0-based epoch, value)


def without_seed(cell: str) -> str:
    """A cell name without its seed part: the name shared by the repeats of one cell over seeds."""
    stage, slash, name = cell.rpartition("/")  # values hold no `/` (raygrid.spec.names): only a stage does
    kept = [part for part in top_level_parts(name) if not part.startswith("seed=")]
    return f"{stage}{slash}{','.join(kept)}" if kept else cell


def bars_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell (its seeds pooled): label, test F1 mean and sd, best validation F1 mean and sd, n, majority."""
    finished = finished_cells(runs)
    columns = ["label", "test_f1", f"test_f1{SD}", "val_f1", f"val_f1{SD}", "n", "majority"]
    if finished.empty:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame({"label": finished["cell"].astype(str).map(without_seed),
                          "test_f1": finished["metrics.test_f1_macro"].astype(float),
                          "val_f1": metric_column(finished, M.BEST_VAL_F1_MACRO),
                          "majority": majority_flags(finished)}, index=finished.index)
    grouped = frame.groupby("label", sort=False)
    table = pd.DataFrame({"test_f1": grouped["test_f1"].mean(), f"test_f1{SD}": grouped["test_f1"].std(),
                          "val_f1": grouped["val_f1"].mean(), f"val_f1{SD}": grouped["val_f1"].std(),
                          "n": grouped.size(), "majority": grouped["majority"].sum().astype(int)})
    return table.reset_index()[columns]


def pareto_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished fine-tuned cells, seeds pooled: stage, label, dataset, test F1 and each cost as mean and sd, n, majority.

    The label is the attention variant when variants differ (several cells may share one), else the cell.
    """
    finished = finished_cells(runs)
    finished = finished[param_column(finished, "kind") != "tfidf"]
    frame = cost_frame(finished).rename(columns={"attention": "label", "score": "test_f1"})
    frame["cell"] = finished["cell"].astype(str).map(without_seed)
    frame["majority"] = majority_flags(finished)
    if frame["label"].nunique() < 2:
        frame["label"] = frame["cell"]
    grouped = frame.groupby(["stage", "dataset", "cell", "label"], sort=False)
    measured = ["test_f1", *COSTS]
    table = grouped[measured].mean()
    for column in measured:  # the spread over seeds of the score and of each cost
        table[f"{column}{SD}"] = grouped[column].std()
    table = table.assign(n=grouped.size(), majority=grouped["majority"].sum().astype(int)).reset_index()
    return table[["stage", "label", "dataset", *(c for m in measured for c in (m, f"{m}{SD}")), "n", "majority"]]


def curve_frame(groups: dict[str, list[Curve]]) -> pd.DataFrame:
    """label, epoch (1-based), mean, sd (NaN for one curve) and n, from each label's curves (one per seed)."""
    rows = [(label, step + 1, value) for label, curves in groups.items() for curve in curves for step, value in curve]
    points = pd.DataFrame(rows, columns=["label", "epoch", "value"])
    if points.empty:
        return pd.DataFrame(columns=["label", "epoch", "mean", "sd", "n"])
    stats = points.groupby(["label", "epoch"], sort=False)["value"].agg(mean="mean", sd="std", n="size")
    return stats.reset_index().sort_values(["label", "epoch"], key=_in_order(groups), kind="stable")


def _in_order(groups: dict):
    """Sort key keeping labels in the order given (grid order) and epochs ascending."""
    position = {label: i for i, label in enumerate(groups)}
    return lambda column: column.map(position) if column.name == "label" else column
