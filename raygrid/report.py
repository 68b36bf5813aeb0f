"""The study's tables from a DataFrame of cell runs (as raygrid.tracking.fetch_runs returns it).

Pure pandas: testable on a hand-made DataFrame, no MLflow needed.
  cells      one row per cell: status, scores, time and memory
  f1_table   test F1-macro, rows pooling x N_freeze x P_drop (x other axes), one column per dataset
  best_table per dataset, the cell chosen on validation F1-macro and its test score
With several seeds per cell, scores are `mean ± std` over seeds.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

POOLING, FREEZE, DROP, DATASET, SEED = "model.pooling", "model.n_freeze", "model.p_drop", "data.dataset", "seed"
HPARAMS = (POOLING, FREEZE, DROP)
CELL_COLUMNS = {"metrics.val_f1_macro": "val_f1", "metrics.best_val_f1_macro": "best_val_f1",
                "metrics.test_f1_macro": "test_f1", "metrics.test_accuracy": "test_acc",
                "metrics.train_time_s": "train_s", "metrics.epoch_time_s": "epoch_s",
                "metrics.tokens_per_s": "tokens/s", "metrics.peak_gpu_mem_mb": "gpu_MiB",
                "metrics.peak_host_mem_mb": "host_MiB"}


def _param(runs: pd.DataFrame, key: str) -> pd.Series:
    column = f"params.{key}"
    return runs[column] if column in runs else pd.Series("", index=runs.index)


def _axis_keys(runs: pd.DataFrame) -> list[str]:
    return [c[len("params.axis."):] for c in runs.columns if c.startswith("params.axis.")]


def cells_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every cell run: name, status, scores, cost; failed cells show their reason."""
    table = pd.DataFrame({"cell": runs["cell"], "status": runs["status"]})
    for column, label in CELL_COLUMNS.items():
        if column in runs:
            table[label] = runs[column]
    if "error" in runs and runs["error"].astype(bool).any():
        table["error"] = runs["error"]
    return table.sort_values("cell").reset_index(drop=True)


def _row_keys(runs: pd.DataFrame) -> list[str]:
    """Pooling, N_freeze, P_drop, then any other axis that varies within a dataset (not seed)."""
    extra = []
    for key in _axis_keys(runs):
        if key in (*HPARAMS, DATASET, SEED) or key.startswith("data"):
            continue
        per_dataset = pd.DataFrame({"d": _param(runs, DATASET), "v": _param(runs, f"axis.{key}")})
        if per_dataset.groupby("d")["v"].nunique().max() > 1:  # e.g. attention; not a per-dataset bundle
            extra.append(f"axis.{key}")
    return list(HPARAMS) + extra


def _finished(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[(runs["status"] == "FINISHED") & runs.get("metrics.test_f1_macro", pd.Series(dtype=float)).notna()]


BASELINE = "TF-IDF+LR"


def _keyed(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({k: _param(runs, k).values for k in keys + [DATASET]}, index=runs.index)
    baseline = (_param(runs, "kind") == "tfidf").values
    # The baseline has no pooling/freeze/dropout: one labelled row, sorted first ('T' < 'c', 'm').
    frame.loc[baseline, keys] = ""
    frame.loc[baseline, POOLING] = BASELINE
    frame["test_f1"] = runs["metrics.test_f1_macro"].astype(float)
    frame["val_f1"] = runs["metrics.best_val_f1_macro"].astype(float)
    return frame


def mean_std(values: pd.Series) -> str:
    values = values.dropna()
    if len(values) == 0:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def f1_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Test F1-macro: one row per hyperparameter combination, one column per dataset."""
    finished = _finished(runs)
    if finished.empty:
        return pd.DataFrame()
    keys = _row_keys(runs)
    frame = _keyed(finished, keys)
    table = frame.groupby(keys + [DATASET], sort=True)["test_f1"].agg(mean_std).unstack(DATASET)
    table.columns.name = None
    return table.reset_index().rename(columns={POOLING: "pooling", FREEZE: "N_freeze", DROP: "P_drop"})


def best_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: the hyperparameters with the best validation F1-macro (mean over seeds)."""
    finished = _finished(runs)
    finished = finished[_param(finished, "kind") != "tfidf"]  # selection is among fine-tuned cells
    if finished.empty:
        return pd.DataFrame()
    keys = _row_keys(runs)
    frame = _keyed(finished, keys)
    grouped = frame.groupby([DATASET] + keys, sort=True).agg(val_f1=("val_f1", "mean"), test_f1=("test_f1", "mean"),
                                                           seeds=("test_f1", "size")).reset_index()
    best = grouped.loc[grouped.groupby(DATASET)["val_f1"].idxmax()].reset_index(drop=True)
    return best.rename(columns={DATASET: "dataset", POOLING: "pooling", FREEZE: "N_freeze", DROP: "P_drop"})


def attention_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Attention variants per dataset: test F1-macro, time per epoch, peak GPU memory (means over cells)."""
    finished = _finished(runs)
    # cells outside the attention block (no axis value) are labelled by their kind, e.g. softmax
    label = _param(finished, "axis.attention").fillna(_param(finished, "attention.kind"))
    if finished.empty or label.nunique() < 2:
        return pd.DataFrame()
    frame = pd.DataFrame({"attention": label.values, "dataset": _param(finished, DATASET).values,
                          "test_f1": finished["metrics.test_f1_macro"].astype(float).values,
                          "epoch_s": finished.get("metrics.epoch_time_s", pd.Series(np.nan, finished.index)).values,
                          "gpu_MiB": finished.get("metrics.peak_gpu_mem_mb", pd.Series(np.nan, finished.index)).values})
    table = frame.groupby(["attention", "dataset"]).agg(test_f1=("test_f1", mean_std), epoch_s=("epoch_s", "mean"),
                                                        gpu_MiB=("gpu_MiB", "mean"), cells=("test_f1", "size"))
    return table.reset_index()


def all_tables(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    tables = {"cells": cells_table(runs), "test F1-macro": f1_table(runs),
              "best hyperparameters (chosen on validation F1-macro)": best_table(runs)}
    attention = attention_table(runs)
    if not attention.empty:
        tables["attention variants"] = attention
    return tables


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no `tabulate` dependency)."""
    if table.empty:
        return "_(no finished cells)_\n"
    cells = [[_fmt(v) for v in row] for row in table.itertuples(index=False)]
    header = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return ""
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value).replace("|", "\\|")


def render(tables: dict[str, pd.DataFrame], fmt: str = "md") -> str:
    """All tables as one Markdown document or as CSV blocks headed by `# <title>`."""
    out = io.StringIO()
    for title, table in tables.items():
        if fmt == "md":
            out.write(f"### {title}\n\n{to_markdown(table)}\n")
        else:
            out.write(f"# {title}\n{table.to_csv(index=False)}\n")
    return out.getvalue()
