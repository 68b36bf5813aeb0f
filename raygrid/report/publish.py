"""Everything `raygrid report` publishes for one grid, rebuilt from MLflow alone.

The tables of raygrid.report.tables as Markdown, CSV or LaTeX (written by raygrid.report.render); with a save
folder also <grid>.md, <grid>.tex, one <grid>.<table>.csv per table (the cells CSV with every column
raygrid.report.cells.cells_table knows, the printed one with what fits a terminal), and the PNG figures
of raygrid.report.plots, which are also logged to the grid's parent run (artifact folder `plots`).
Runs are read with today's cell names and in grid order (raygrid.report.cells.prepared).
`log_to_parent` (called at the end of every `raygrid run`) logs the tables (folder `report`) and
the figures to the parent run without a save folder.
"""
from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from raygrid.attention.registry import records
from raygrid.report import compare, plots, render
from raygrid.report import tables as report
from raygrid.report.cells import cells_table, prepared
from raygrid.report.columns import param_column
from raygrid.report.plot_frames import Curve, pareto_frame, without_seed
from raygrid.tracking.runs import GridTracker, fetch_runs, metric_history
from raygrid.training import metric_names as M

History = Callable[[str, str], Curve]  # (run id, metric) -> its (step, value) curve


@dataclass
class Published:
    """What `publish` produced: the tables as text (headed by the grid name), the tables, the files written."""

    text: str
    tables: dict[str, pd.DataFrame]
    files: list[Path] = field(default_factory=list)


def publish(uri: str, grid_name: str, fmt: str = "md", save: str | Path | None = None,
            reference: pd.DataFrame | None = None, order: list[str] | None = None) -> Published:
    """The grid's tables in `fmt` (md, csv, tex); with `save`, every table and figure written into that folder.

    `reference`: published figures (raygrid.report.compare.load_reference) set beside ours in the F1 and attention
    tables. `order`: the grid's cell names, when the caller has the grid (rows then follow it).
    """
    runs = prepared(fetch_runs(uri, grid_name), order)
    tables = report.all_tables(runs)
    if reference is not None:
        tables = compare.add_published(tables, runs, reference)
    heading = {"md": f"\n## grid {grid_name}\n\n", "tex": f"% grid {grid_name}\n"}.get(fmt, "")
    text = heading + render.render(tables, fmt)
    files = []
    if save:
        folder = Path(save)
        csv = {**tables, "cells": cells_table(runs)}  # the CSV keeps every column
        files = save_tables(tables, grid_name, folder, csv) + save_plots(uri, grid_name, runs, folder)
    return Published(text, tables, files)


def log_to_parent(uri: str, grid_name: str, order: list[str] | None = None) -> list[str]:
    """Write the grid's tables and figures to a temporary folder and log them to its parent run.

    Tables go under `report/` (<grid>.md, <grid>.tex, one CSV per table), figures under `plots/`
    (by save_plots). Returns the artifact paths logged.
    """
    tracker = GridTracker(uri, grid_name, create=False)
    with tempfile.TemporaryDirectory(prefix="raygrid-report-") as folder:
        files = publish(uri, grid_name, save=folder, order=order).files
        tables = [path for path in files if path.suffix != ".png"]  # the PNGs were logged by save_plots
        for path in tables:
            tracker.log_artifact(str(path), "report")
    return [f"report/{p.name}" for p in tables] + [f"plots/{p.name}" for p in files if p.suffix == ".png"]


def save_tables(tables: dict[str, pd.DataFrame], grid_name: str, folder: Path,
                csv: dict[str, pd.DataFrame] | None = None) -> list[Path]:
    """<grid>.<table>.csv per table (from `csv` where it has the title), then <grid>.md and <grid>.tex holding all."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for title, table in (csv or tables).items():
        written.append(folder / f"{grid_name}.{render.table_stem(title)}.csv")
        table.to_csv(written[-1], index=False)
    for fmt in ("md", "tex"):
        written.append(folder / f"{grid_name}.{fmt}")
        written[-1].write_text(render.render(tables, fmt))
    return written


def save_plots(uri: str, grid_name: str, runs: pd.DataFrame, folder: Path) -> list[Path]:
    """F1 bars, per-epoch curves, each variant's ablation curves (LSH mask) and Pareto plots as PNG, logged."""
    if runs.empty:
        return []
    history = functools.cache(functools.partial(metric_history, uri))  # one MLflow query per run and metric
    mlm = param_column(runs, "kind") == "mlm"
    written = [plots.plot_test_f1(runs, folder / f"{grid_name}.f1.png")]
    for metric, rows in ((M.VAL_F1_MACRO, runs[~mlm]), (M.TRAIN_LOSS, runs), (M.VAL_LOSS, runs[mlm])):
        curves = _histories(history, rows, metric)
        written.append(plots.plot_curves(curves, metric, folder / f"{grid_name}.{metric}.png"))
    for record in records():  # e.g. LSH with and without masking within chunks
        for ablation in record.ablations:
            written.append(plots.plot_ablation(ablation_histories(history, runs, record.kind, ablation.param),
                                               ablation.param, ablation.title, folder / f"{grid_name}.{ablation.stem}.png"))
    frame = pareto_frame(runs)
    for cost, stem in (("epoch_s_mean", "pareto_time"), ("gpu_MiB", "pareto_memory")):
        written.append(plots.plot_pareto(frame, cost, folder / f"{grid_name}.{stem}.png"))
    written = [p for p in written if p is not None]
    tracker = GridTracker(uri, grid_name, create=False)
    for png in written:
        tracker.log_artifact(str(png), "plots")
    return written


def _histories(history: History, runs: pd.DataFrame, metric: str) -> dict[str, list[Curve]]:
    """Curves of `metric` per cell without its seed (one per seed), in the runs' order; a cell name carries its stage."""
    curves: dict[str, list[Curve]] = {}
    for cell, run_id in zip(runs["cell"].astype(str), runs["run_id"]):
        curve = history(run_id, metric)
        if curve:
            curves.setdefault(without_seed(cell), []).append(curve)
    return curves


def ablation_histories(history: History, runs: pd.DataFrame, kind: str, param: str) -> dict[str, dict[str, Curve]]:
    """Finished MLM cells of attention `kind` by the value of `attention.<param>`: mean train/val loss per group."""
    chosen = runs[(runs["status"] == "FINISHED") & (param_column(runs, "kind") == "mlm")
                  & (param_column(runs, "attention.kind") == kind)]
    groups = {}
    for value, group in chosen.groupby(param_column(chosen, f"attention.{param}").fillna(""), sort=True):
        groups[str(value)] = {metric: mean_curve([history(run_id, metric) for run_id in group["run_id"]])
                              for metric in (M.VAL_LOSS, M.TRAIN_LOSS)}
    return groups


def mean_curve(curves: list[Curve]) -> Curve:
    """Mean of several (step, value) curves at each step, over the curves that have that step."""
    points = pd.DataFrame([point for curve in curves for point in curve], columns=["step", "value"])
    means = points.groupby("step")["value"].mean()
    return [(int(step), float(value)) for step, value in means.items()]
