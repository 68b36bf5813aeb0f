"""What the figures draw, from the runs: one point or bar per cell with its seeds pooled (mean, sd, n).

  bars_frame    per cell: test and best-validation F1-macro, mean and sd over seeds
  pareto_frame  per (stage, label, dataset): test F1-macro mean and sd, mean time per epoch and peak memory
A label is the attention variant when variants differ, else the cell name without its seed.
"""
from __future__ import annotations

import re

import pandas as pd

from raygrid.report.tables import COSTS, SD, _cost_frame, _metric, _param, _stage, finished_cells
from raygrid.training import metric_names as M


def without_seed(cell: str) -> str:
    """A cell name without its seed part: the name shared by the repeats of one cell over seeds."""
    return re.sub(r"(^|,)seed=[^,]*", "", cell).strip(",") or cell


def bars_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell (its seeds pooled): label, test F1 mean and sd, best validation F1 mean and sd, n."""
    finished = finished_cells(runs)
    if finished.empty:
        return pd.DataFrame(columns=["label", "test_f1", f"test_f1{SD}", "val_f1", f"val_f1{SD}", "n"])
    stage = _stage(finished)
    label = [f"{s}/{without_seed(c)}" if s else without_seed(c) for s, c in zip(stage, finished["cell"].astype(str))]
    frame = pd.DataFrame({"label": label, "test_f1": finished["metrics.test_f1_macro"].astype(float),
                          "val_f1": _metric(finished, M.BEST_VAL_F1_MACRO)}, index=finished.index)
    grouped = frame.groupby("label", sort=False)
    table = pd.DataFrame({"test_f1": grouped["test_f1"].mean(), f"test_f1{SD}": grouped["test_f1"].std(),
                          "val_f1": grouped["val_f1"].mean(), f"val_f1{SD}": grouped["val_f1"].std(),
                          "n": grouped.size()})
    return table.reset_index()


def pareto_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished fine-tuned cells, seeds pooled: stage, label, dataset, test F1 mean and sd, mean costs, n.

    The label is the attention variant when variants differ (several cells may share one), else the cell.
    """
    finished = finished_cells(runs)
    finished = finished[_param(finished, "kind") != "tfidf"]
    frame = _cost_frame(finished).rename(columns={"attention": "label", "score": "test_f1"})
    frame["cell"] = finished["cell"].astype(str).map(without_seed)
    if frame["label"].nunique() < 2:
        frame["label"] = frame["cell"]
    grouped = frame.groupby(["stage", "dataset", "cell", "label"], sort=True)
    table = grouped[["test_f1", *COSTS]].mean()
    table.insert(1, f"test_f1{SD}", grouped["test_f1"].std())
    table = table.assign(n=grouped.size()).reset_index().drop(columns="cell")
    return table[["stage", "label", "dataset", "test_f1", f"test_f1{SD}", *COSTS, "n"]]
