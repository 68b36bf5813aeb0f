"""The study's tables from a DataFrame of cell runs (as raygrid.tracking.runs.fetch_runs returns it).

Pure pandas/numpy/scipy: testable on a hand-made DataFrame, no MLflow needed; raygrid.report.render
writes the tables out as Markdown, CSV or LaTeX.
  cells      one row per cell: status, its kind's scores, time and memory (raygrid.report.cells.cells_view)
  f1_table   test F1-macro, rows (stage x) pooling x N_freeze x P_drop (x other axes), one column per dataset
             (mean over seeds) and `<dataset> sd` beside it when a cell ran several seeds
  best_table per dataset, the cell chosen on validation F1-macro and its test score
  seeds_table     per cell over seeds: n, mean, std and a Student-t 95 % interval of the mean
  attention_table per (stage x) attention variant x dataset: score, time per epoch, peak memory
  paired_table    each attention variant minus softmax on the same stage, dataset, seed and hyperparameters:
                  mean difference, its Student-t 95 % interval, paired t-test p-value, cost ratios
A cell's score is its test F1-macro, or for MLM cells (kind: mlm) its final validation loss (without a
validation split, as the study's Wikipedia stage: its final training loss). Every number
stays a number (F1 a 0..1 fraction); raygrid.report.formats and render decide how it is printed.
Rows keep the order of the runs given (raygrid.report.cells.prepared puts them in grid order), the
TF-IDF baseline first; dataset columns in the order the datasets first appear.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from raygrid.attention.registry import reference_kind
from raygrid.report import statistics
from raygrid.report.cells import cells_view
from raygrid.report.formats import F1_TITLE
from raygrid.report.formats import SD_SUFFIX as SD  # `<column> sd`: rendered beside its mean as `mean ± sd`
from raygrid.report.columns import metric_column, param_column, stage_column
from raygrid.training import metric_names as M

POOLING, FREEZE, DROP, DATASET, SEED = "model.pooling", "model.n_freeze", "model.p_drop", "data.dataset", "seed"
HPARAMS = (POOLING, FREEZE, DROP)
RENAME = {POOLING: "pooling", FREEZE: "N_freeze", DROP: "P_drop", DATASET: "dataset"}
BASELINE = "TF-IDF+LR"
# epoch_s_mean: the mean training time per epoch of a cell (its last epoch alone can mislead: N_freeze
# epochs are faster); peaks are over the whole cell, evaluation included.
COSTS = {"epoch_s_mean": M.EPOCH_TIME_MEAN_S, "gpu_MiB": M.PEAK_GPU_MEM_MB, "host_MiB": M.PEAK_HOST_MEM_MB}  # column: metric


def _staged(runs: pd.DataFrame) -> bool:
    return bool(stage_column(runs).astype(bool).any())


def _axis_keys(runs: pd.DataFrame) -> list[str]:
    return [c[len("params.axis."):] for c in runs.columns if c.startswith("params.axis.")]


def row_keys(runs: pd.DataFrame) -> list[str]:
    """(Stage,) pooling, N_freeze, P_drop, then any other axis that varies within a dataset (not seed)."""
    extra = []
    for key in _axis_keys(runs):
        if key in (*HPARAMS, DATASET, SEED) or key.startswith("data"):
            continue
        per_dataset = pd.DataFrame({"d": param_column(runs, DATASET), "v": param_column(runs, f"axis.{key}")})
        if per_dataset.groupby("d")["v"].nunique().max() > 1:  # e.g. attention; not a per-dataset bundle
            extra.append(f"axis.{key}")
    return (["stage"] if _staged(runs) else []) + list(HPARAMS) + extra


def scored_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished cells with `score` and `metric`: test F1-macro, or for MLM cells final_val_loss
    (final_train_loss when the cell had no validation split)."""
    mlm = param_column(runs, "kind") == "mlm"
    val_loss = metric_column(runs, M.FINAL_VAL_LOSS)
    mlm_metric = np.where(val_loss.notna(), M.FINAL_VAL_LOSS, M.FINAL_TRAIN_LOSS)
    score = metric_column(runs, M.TEST_F1_MACRO).where(~mlm, val_loss.fillna(metric_column(runs, M.FINAL_TRAIN_LOSS)))
    scored = runs.assign(score=score, metric=np.where(mlm, mlm_metric, "test_f1"))
    finished = runs["status"] == "FINISHED" if "status" in runs else False  # no status: no runs fetched
    return scored[finished & scored["score"].notna()]


def attention_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Scored cells that have an attention variant: every model cell, not the TF-IDF baseline."""
    scored = scored_cells(runs)
    return scored[param_column(scored, "kind") != "tfidf"]


def finished_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished cells with a test F1-macro: classifiers and the baseline (MLM cells have none)."""
    scored = scored_cells(runs)
    return scored[scored["metric"] == "test_f1"]


def keyed(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    values = {k: (stage_column(runs) if k == "stage" else param_column(runs, k)).values for k in keys + [DATASET]}
    frame = pd.DataFrame(values, index=runs.index).fillna("")  # a cell outside an axis' block: ""
    baseline = (param_column(runs, "kind") == "tfidf").values
    # The baseline has no pooling/freeze/dropout: one labelled row, the first.
    frame.loc[baseline, keys] = ""
    frame.loc[baseline, POOLING] = BASELINE
    frame["test_f1"] = runs["metrics.test_f1_macro"].astype(float)
    frame["val_f1"] = metric_column(runs, M.BEST_VAL_F1_MACRO)
    return pd.concat([frame[baseline], frame[~baseline]])


def _rows_in_order(frame: pd.DataFrame, keys: list[str]) -> pd.Index:
    """The distinct `keys` of `frame` in the order they first appear (an Index, or a MultiIndex for several)."""
    rows = frame[keys].drop_duplicates()
    return pd.Index(rows[keys[0]]) if len(keys) == 1 else pd.MultiIndex.from_frame(rows)


def column_name(column: str) -> str:
    """Column name for a key: model.pooling -> pooling, axis.attention -> attention."""
    return RENAME.get(column, column.removeprefix("axis."))


def f1_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Test F1-macro: one row per hyperparameter combination, one column per dataset (mean over seeds).

    With repeated seeds each dataset column is followed by `<dataset> sd` (sample std; NaN for one seed).
    """
    finished = finished_cells(runs)
    if finished.empty:
        return pd.DataFrame()
    keys = row_keys(finished)
    frame = keyed(finished, keys)
    stats_ = frame.groupby(keys + [DATASET], sort=False)["test_f1"].agg(["mean", "std", "size"])
    rows, datasets = _rows_in_order(frame, keys), list(dict.fromkeys(frame[DATASET]))
    mean = stats_["mean"].unstack(DATASET).reindex(index=rows, columns=datasets)
    sd = stats_["std"].unstack(DATASET).reindex(index=rows, columns=datasets)
    columns = {}
    for dataset in mean.columns:
        columns[dataset] = mean[dataset]
        if stats_["size"].max() > 1:
            columns[f"{dataset}{SD}"] = sd[dataset]
    table = pd.DataFrame(columns)
    return table.reset_index().rename(columns=column_name)


def best_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: the hyperparameters with the best validation F1-macro (mean over seeds)."""
    finished = finished_cells(runs)
    finished = finished[param_column(finished, "kind") != "tfidf"]  # selection is among fine-tuned cells
    if finished.empty:
        return pd.DataFrame()
    keys = row_keys(finished)
    frame = keyed(finished, keys)
    grouped = frame.groupby([DATASET] + keys, sort=False).agg(val_f1=("val_f1", "mean"), test_f1=("test_f1", "mean"),
                                                            seeds=("test_f1", "size")).reset_index()
    grouped = grouped[grouped["val_f1"].notna()]  # a cell without a validation score is no candidate
    if grouped.empty:
        return pd.DataFrame()
    best = grouped.loc[grouped.groupby(DATASET, sort=False)["val_f1"].idxmax()].reset_index(drop=True)
    return best.rename(columns=column_name)


def _identity(runs: pd.DataFrame, drop: tuple[str, ...] = (SEED,)) -> pd.DataFrame:
    """What makes a cell, minus the `drop` axes: stage, dataset and every other axis.

    A plain axis (model.pooling) is compared by its config value, which every run has, so cells
    of different axis blocks still match; a bundle or dict axis (task, attention) by its label.
    """
    columns = {"stage": stage_column(runs), "dataset": param_column(runs, DATASET)}
    for key in _axis_keys(runs):
        if key not in drop and key != DATASET:
            columns[key] = runs[f"params.{key}" if f"params.{key}" in runs else f"params.axis.{key}"]
    return pd.DataFrame(columns, index=runs.index).fillna("").astype(str)


def _tidy(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Drop key columns that say nothing (constant, or a copy of the dataset) and use short names."""
    def useless(key: str) -> bool:
        if key == "stage":
            return not table[key].astype(bool).any()
        return key != "dataset" and (table[key].nunique() < 2 or table[key].equals(table["dataset"]))

    return table.drop(columns=[k for k in keys if useless(k)]).rename(columns=RENAME)


def seeds_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell over its seeds: n, mean, std, Student-t 95 % CI of the mean (empty without repeated seeds)."""
    scored = scored_cells(runs)
    if scored.empty:
        return pd.DataFrame()
    identity = _identity(scored)
    keys = list(identity.columns)
    frame = identity.assign(metric=scored["metric"], score=scored["score"])
    rows = []
    for key, group in frame.groupby(keys + ["metric"], sort=False):
        values = group["score"].to_numpy(float)
        interval = statistics.t_interval(values)  # (NaN, NaN) for one seed: no interval, not a zero-width one
        rows.append((*key, len(values), values.mean(), group["score"].std(), *interval))  # std: NaN for 1
    table = pd.DataFrame(rows, columns=keys + ["metric", "seeds", "mean", "std", "ci95_low", "ci95_high"])
    return _tidy(table, keys) if table["seeds"].max() >= 2 else pd.DataFrame()


def attention_label(runs: pd.DataFrame) -> pd.Series:
    """The attention axis label, else the kind with any attention.* axis values, as a cell name writes a dict
    value (lsh(mask_within_chunks=True))."""
    label = param_column(runs, "axis.attention").fillna("").astype(str)
    settings = pd.Series([[] for _ in range(len(runs))], index=runs.index)
    for key in _axis_keys(runs):
        if key.startswith("attention."):
            value = param_column(runs, f"axis.{key}").fillna("").astype(str)
            settings = settings + value.map(lambda v, name=key[len("attention."):]: [f"{name}={v}"] if v else [])
    kind = param_column(runs, "attention.kind").fillna("").astype(str)
    fallback = [f"{k}({','.join(s)})" if s else k for k, s in zip(kind, settings)]
    return label.where(label != "", pd.Series(fallback, index=runs.index))


def cost_frame(scored: pd.DataFrame) -> pd.DataFrame:
    """Per scored cell: stage, attention label, dataset, metric, score, time per epoch, peak memory."""
    return pd.DataFrame({"stage": stage_column(scored), "attention": attention_label(scored),
                         "dataset": param_column(scored, DATASET).fillna(""), "metric": scored["metric"],
                         "score": scored["score"], **{column: metric_column(scored, name) for column, name in COSTS.items()}})


def attention_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Attention variants per (stage and) dataset: test F1-macro or MLM final_val_loss (final_train_loss
    without validation), time per epoch, peak memory."""
    scored = attention_cells(runs)
    frame = cost_frame(scored)
    if frame.empty or frame["attention"].nunique() < 2:
        return pd.DataFrame()
    frame["test_f1"] = frame["score"].where(frame["metric"] == "test_f1")
    losses = (M.FINAL_VAL_LOSS, M.FINAL_TRAIN_LOSS)
    for loss in losses:
        frame[loss] = frame["score"].where(frame["metric"] == loss)
    keys = (["stage"] if _staged(runs) else []) + ["attention", "dataset"]
    table = frame.groupby(keys, sort=False).agg(
        test_f1=("test_f1", "mean"), **{f"test_f1{SD}": ("test_f1", "std")},
        **{loss: (loss, "mean") for loss in losses}, **{column: (column, "mean") for column in COSTS},
        cells=("score", "size")).reset_index()
    unused = [] if table["cells"].max() > 1 else [f"test_f1{SD}"]
    unused += [loss for loss in losses if not frame[loss].notna().any()]
    return table.drop(columns=unused)


def _ratio(variant: pd.Series, reference: pd.Series) -> float:
    return variant.mean() / reference.mean() if reference.mean() > 0 else np.nan


def paired_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Each attention variant minus the reference (softmax), paired on stage, dataset, seed and the other axes.

    Empty if there are no pairs. The reference is the attention record marked `reference`.
    """
    scored = attention_cells(runs)
    frame = cost_frame(scored)
    is_reference = (param_column(scored, "attention.kind") == reference_kind()).values
    if frame["attention"].nunique() < 2 or not is_reference.any():
        return pd.DataFrame()
    drop = tuple(k for k in _axis_keys(runs) if k in (SEED, "attention") or k.startswith("attention."))
    ids = _identity(scored, drop).assign(seed=param_column(scored, SEED).astype(str).values).add_prefix("id.")
    pair_keys = list(ids.columns) + ["metric"]
    frame = pd.concat([frame, ids], axis=1)
    reference = frame[is_reference].groupby(pair_keys, as_index=False)[["score", *COSTS]].mean()
    pairs = frame[~is_reference].merge(reference, on=pair_keys, suffixes=("", "_ref"))
    if pairs.empty:
        return pd.DataFrame()
    keys = (["stage"] if _staged(runs) else []) + ["dataset", "attention", "metric"]
    rows = []
    for key, group in pairs.groupby(keys, sort=False):
        diff = (group["score"] - group["score_ref"]).to_numpy(float)
        p_value = statistics.paired_p(group["score"], group["score_ref"])
        rows.append((*key, len(diff), diff.mean(), *statistics.t_interval(diff), p_value,
                     *(_ratio(group[column], group[f"{column}_ref"]) for column in COSTS)))
    return pd.DataFrame(rows, columns=keys + ["pairs", "mean_diff", "ci95_low", "ci95_high", "p_value",
                                              "epoch_time_ratio", "gpu_mem_ratio", "host_mem_ratio"])


SEEDS_TITLE = "seeds (mean over seeds, Student-t 95 % CI of the mean)"
PAIRED_TITLE = "attention vs softmax (paired on stage, dataset, seed and other axes; Student-t 95 % CI, paired t-test)"


def all_tables(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every table the study publishes, by title; optional ones only when they have rows."""
    tables = {"cells": cells_view(runs), F1_TITLE: f1_table(runs),
              "best hyperparameters (chosen on validation F1-macro)": best_table(runs)}
    optional = {SEEDS_TITLE: seeds_table, "attention variants": attention_table, PAIRED_TITLE: paired_table}
    for title, build in optional.items():
        table = build(runs)
        if not table.empty:
            tables[title] = table
    return tables
