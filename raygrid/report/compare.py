"""Published numbers beside ours: `raygrid report <grid> --compare <reference file>`.

A reference file (CSV, `#` comment lines; e.g. grids/reference/study_published.csv) holds one
published figure per row: dataset, model, variant, metric, value, source.
- dataset: `imdb`, or `hyperpartisan/bypublisher`: with a subset it applies only when every run of
  that dataset used that subset (by-article scores are never set beside by-publisher ones).
- metric: test_f1_macro (a fraction, as our tables) or test_f1_macro_pct (percent, divided by 100).
- variant: the row of ours it stands beside, per dataset (and per stage in a staged grid):
    tfidf         the TF-IDF+LR row;
    softmax       the softmax row; among several (experiment 1's cells) the one best on validation
                  F1-macro, i.e. the setting the study selected and reported;
    best:<kind>   the row of that attention kind (lsh, favor) with the highest mean test F1-macro
                  (the study published its best variant);
    anything else the row whose attention label is exactly that (e.g. lsh(num_hashes=2,chunk_size=64); a label
                  in the format of raygrid < 0.2, lsh-num_hashes=2-chunk_size=64, is read as today's).
The F1 table gains `<dataset> published` and `<dataset> Δ` (ours − published) per dataset, the
attention table `published` and `Δ`; a `published reference` table lists the rows used. All are
fractions in the tables; the rendered text prints them in % and percentage points (raygrid.report.formats).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from raygrid.attention.registry import reference_kind
from raygrid.report import tables as report
from raygrid.spec.names import modern_label
from raygrid.training import metric_names as M

COLUMNS = ("dataset", "model", "variant", "metric", "value", "source")
SCALE = {M.TEST_F1_MACRO: 1.0, "test_f1_macro_pct": 0.01}  # metric -> factor to our 0..1 scale
F1_TITLE, ATTENTION_TITLE = report.F1_TITLE, "attention variants"  # titles in report.all_tables
REFERENCE_TITLE = "published reference"


def load_reference(path: str | Path) -> pd.DataFrame:
    """The reference rows with `published` on our scale; ValueError naming the file and row."""
    path = Path(path)
    try:
        table = pd.read_csv(path, comment="#", dtype=str, skipinitialspace=True).fillna("")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: cannot read the reference table ({str(err).splitlines()[0]})") from None
    missing = [column for column in COLUMNS if column not in table]
    if missing:
        raise ValueError(f"{path}: column {missing[0]} is missing (columns: {', '.join(COLUMNS)})")
    published = []
    for row, (metric, value) in enumerate(zip(table["metric"], table["value"]), start=1):
        if metric not in SCALE:
            raise ValueError(f"{path}: row {row}: metric {metric!r} is not one of {', '.join(SCALE)}")
        try:
            published.append(float(value) * SCALE[metric])
        except ValueError:
            raise ValueError(f"{path}: row {row}: value {value!r} is not a number") from None
    return table.assign(published=published)


def add_published(tables: dict[str, pd.DataFrame], runs: pd.DataFrame, reference: pd.DataFrame) -> dict:
    """`tables` with the published values and differences added (see the module docstring)."""
    tables = dict(tables)
    subsets = _subsets(runs)
    used = pd.Series(False, index=reference.index)
    if not tables.get(F1_TITLE, pd.DataFrame()).empty:
        tables[F1_TITLE], hit = _f1_with_published(tables[F1_TITLE], runs, reference, subsets)
        used |= hit
    if not tables.get(ATTENTION_TITLE, pd.DataFrame()).empty:
        tables[ATTENTION_TITLE], hit = _attention_with_published(tables[ATTENTION_TITLE], runs, reference, subsets)
        used |= hit
    tables[REFERENCE_TITLE] = reference.loc[used, list(COLUMNS)].reset_index(drop=True)
    return tables


def _f1_with_published(table, runs, reference, subsets):
    finished = report.finished_cells(runs)
    keys = report.row_keys(finished)
    frame = report.keyed(finished, keys).assign(kind=_kinds(finished), label=report.attention_label(finished))
    rows = frame.groupby(keys + [report.DATASET], sort=True).agg(
        test=("test_f1", "mean"), val=("val_f1", "mean"), kind=("kind", "first"), label=("label", "first"))
    rows = rows.reset_index().rename(columns={report.DATASET: "dataset"})
    rows["published"], used = _match(rows, reference, subsets, ["stage"] if "stage" in keys else [])
    short = [report.column_name(key) for key in keys]
    rows = rows.rename(columns=dict(zip(keys, short)))
    for dataset in [d for d in table.columns if d in set(rows.loc[rows["published"].notna(), "dataset"])]:
        mine = rows[rows["dataset"] == dataset]
        extra = pd.DataFrame({**{k: mine[k] for k in short}, f"{dataset} published": mine["published"],
                              f"{dataset} Δ": mine["test"] - mine["published"]})
        table = table.merge(extra, on=short, how="left")
        order = [c for c in table.columns if c not in extra.columns[-2:]]
        at = order.index(f"{dataset}{report.SD}" if f"{dataset}{report.SD}" in order else dataset) + 1
        table = table[order[:at] + list(extra.columns[-2:]) + order[at:]]
    return table, used


def _attention_with_published(table, runs, reference, subsets):
    scored = report.scored_cells(runs)
    frame = report.cost_frame(scored).assign(kind=_kinds(scored).values,
                                             val=report.metric_column(scored, M.BEST_VAL_F1_MACRO))
    frame = frame[frame["metric"] == "test_f1"]
    keys = [key for key in ("stage", "attention", "dataset") if key in table.columns]
    rows = frame.groupby(keys, sort=True).agg(test=("score", "mean"), val=("val", "mean"), kind=("kind", "first"))
    rows = rows.reset_index()
    rows["label"] = rows["attention"]
    rows["published"], used = _match(rows, reference, subsets, ["stage"] if "stage" in keys else [])
    rows["Δ"] = rows["test"] - rows["published"]
    table = table.merge(rows[keys + ["published", "Δ"]], on=keys, how="left")
    return table, used


def _match(rows: pd.DataFrame, reference: pd.DataFrame, subsets: dict[str, str | None],
           within: list[str]) -> tuple[pd.Series, pd.Series]:
    """Published value per row of ours (NaN where none applies), and which reference rows found a row."""
    published = pd.Series(np.nan, index=rows.index)
    used = pd.Series(False, index=reference.index)
    for index, ref in reference.iterrows():
        name, _, subset = ref["dataset"].partition("/")
        if subset and subsets.get(name) != subset:
            continue
        mine = rows[rows["dataset"] == name]
        groups = mine.groupby(within, sort=False) if within else [(None, mine)]
        for _, group in groups:
            hit = _pick(group, ref["variant"])
            if hit is not None:
                published[hit], used[index] = ref["published"], True
    return published, used


def _pick(group: pd.DataFrame, variant: str):
    """Index of the row `variant` stands beside in one dataset (and stage), or None."""
    if variant == reference_kind():  # the study reports the reference at the setting chosen on validation
        pool, by = group[group["kind"] == variant], "val"
    elif variant.startswith("best:"):
        pool, by = group[group["kind"] == variant.removeprefix("best:")], "test"
    elif variant == "tfidf":
        pool, by = group[group["kind"] == "tfidf"], "test"
    else:
        pool, by = group[group["label"] == modern_label(variant)], "test"
    pool = pool[pool[by].notna()]
    return None if pool.empty else pool[by].idxmax()  # idxmax: the first of equal scores


def _kinds(runs: pd.DataFrame) -> pd.Series:
    """Attention kind per run, `tfidf` for baseline runs."""
    kind = report.param_column(runs, "attention.kind").fillna("").astype(str)
    return kind.where(report.param_column(runs, "kind") != "tfidf", "tfidf")


def _subsets(runs: pd.DataFrame) -> dict[str, str | None]:
    """dataset -> the one data.subset all its runs used (None when mixed or unset)."""
    frame = pd.DataFrame({"dataset": report.param_column(runs, report.DATASET), "subset": report.param_column(runs, "data.subset")})
    frame = frame.fillna("").astype(str)
    return {name: (group["subset"].iloc[0] if group["subset"].nunique() == 1 else None)
            for name, group in frame.groupby("dataset")}
