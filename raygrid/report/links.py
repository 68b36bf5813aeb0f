"""Direct links into the MLflow UI, printed after `raygrid run` and `raygrid report`.

MLflow 3 opens an experiment in its GenAI view, which lists no training runs; its pages honour
`workflowType=machine_learning` in the address. Two links per grid:
  cells       the grid's current cell runs (not the parent, not superseded runs) as a flat table in
              the machine-learning view, best first (test_f1_macro; MLM-only grids: final_val_loss),
              with the columns a researcher compares first: test F1-macro, best validation score,
              mean time per epoch, peak memory, then the axes (the parent's bookkeeping metrics and
              the 90-odd other columns stay behind MLflow's "Columns" menu)
  compare     MLflow's compare page over the finished cells (one link per stage): their params,
              metrics and parallel-coordinates / scatter plots side by side
The cells table is an MLflow *shared view*: `raygrid run` stores it as the experiment tag
`mlflow.sharedViewState.raygrid-cells` (search filter, sort and columns as JSON; `save_view`) and the
link names it (`viewStateShareKey`). A store without that tag gets the filter and sort in the address.
For a local SQLite store the UI is not running: the command that serves it on 127.0.0.1 comes first.
Pages, parameters and the shared-view format are MLflow's own (checked against MLflow 3.17's UI with
headless Chromium: README "What MLflow shows", docs/).
"""
from __future__ import annotations

import json
from urllib.parse import quote, urlencode

import pandas as pd

from raygrid.report.cells import prepared
from raygrid.tracking.runs import TAG_ROLE, TAG_SUPERSEDED, GridTracker, fetch_runs
from raygrid.training import metric_names as M

LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default (bound to loopback, as raygrid prints it)
ML_VIEW = {"workflowType": "machine_learning"}
CURRENT_CELLS = f"tags.`{TAG_ROLE}` = 'cell' and tags.`{TAG_SUPERSEDED}` IS NULL"
VIEW_KEY = "raygrid-cells"
RUN_NAME = "attributes.`Run Name`"  # the runs table's id of its run-name column
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"  # where MLflow's UI looks up a shared view's state


def ui_base(uri: str) -> tuple[str | None, str | None]:
    """(the UI's address, the command that serves it or None when it is a server already) for a tracking URI."""
    if uri.startswith("sqlite:///"):
        host, port = LOCAL_UI.removeprefix("http://").split(":")
        return LOCAL_UI, f"mlflow ui --backend-store-uri {uri} --host {host} --port {port}"
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/"), None
    return None, None  # databricks, a file store: no address raygrid can know


def experiment_url(base: str, experiment_id: str, order_by: str, ascending: bool, shared: bool = False) -> str:
    """The experiment's current cell runs in the machine-learning view: the shared view, else filter and sort."""
    query = {**ML_VIEW, "viewStateShareKey": VIEW_KEY} if shared else {
        **ML_VIEW, "searchFilter": CURRENT_CELLS, "orderByKey": _column("metrics", order_by),
        "orderByAsc": str(ascending).lower()}
    # the runs tab itself: the experiment's root address drops these parameters on its way there
    return f"{base}/#/experiments/{experiment_id}/runs?{urlencode(query, quote_via=quote)}"


def _column(kind: str, key: str) -> str:
    """MLflow UI's key of a table column (its makeCanonicalSortKey): metrics.`test_f1_macro`."""
    return f"{kind}.`{key}`"


def view_state(runs: pd.DataFrame) -> dict:
    """The shared view of the cells: filter, sort, and the columns in the order they are compared."""
    metric, ascending = _ranking(runs)
    gpu = f"metrics.{M.PEAK_GPU_MEM_MB}" in runs and bool((runs[f"metrics.{M.PEAK_GPU_MEM_MB}"].fillna(0) > 0).any())
    metrics = [M.TEST_F1_MACRO, M.BEST_VAL_F1_MACRO, M.FINAL_VAL_LOSS, M.EPOCH_TIME_MEAN_S,
               M.PEAK_GPU_MEM_MB if gpu else M.PEAK_HOST_MEM_MB]
    columns = [_column("metrics", m) for m in metrics if f"metrics.{m}" in runs]
    columns += [_column("params", c.removeprefix("params.")) for c in runs.columns if c.startswith("params.axis.")]
    longest = int(runs["cell"].astype(str).str.len().max()) if "cell" in runs and not runs.empty else 20
    # the table keeps the columns in `columnOrder` (MLflow's ids of its name, date and duration columns) and
    # sizes them from `columnWidths`: the run name wide enough for a cell name, up to a point
    return {"searchFilter": CURRENT_CELLS, "orderByKey": _column("metrics", metric), "orderByAsc": ascending,
            "selectedColumns": columns, "columnOrder": [RUN_NAME, *columns, "runDateAndNestInfo", "duration"],
            "columnWidths": {RUN_NAME: min(480, max(200, 7 * longest + 40))}}


def save_view(uri: str, grid_name: str) -> None:
    """Store the cells' shared view on the grid's experiment (a `raygrid run` does, at its end)."""
    tracker = GridTracker(uri, grid_name, create=False)
    state = view_state(fetch_runs(uri, grid_name))
    tracker.client.set_experiment_tag(tracker.experiment_id, VIEW_TAG, json.dumps(state))


def compare_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    """MLflow's compare page over `run_ids` (JSON lists in the query, percent-encoded so a terminal keeps them whole)."""
    query = {"runs": json.dumps(run_ids, separators=(",", ":")),
             "experiments": json.dumps([experiment_id], separators=(",", ":")), **ML_VIEW}
    return f"{base}/#/compare-runs?{urlencode(query, quote_via=quote)}"


def link_lines(uri: str, grid_name: str, order: list[str] | None = None) -> list[str]:
    """The lines raygrid prints: how to open the UI, the experiment link, a compare link per stage ([] if unknown)."""
    base, command = ui_base(uri)
    if base is None:
        return []
    try:
        tracker = GridTracker(uri, grid_name, create=False)
        runs = prepared(fetch_runs(uri, grid_name), order)
    except LookupError:  # the grid never ran here
        return []
    experiment_id = tracker.experiment_id
    shared = VIEW_TAG in tracker.client.get_experiment(experiment_id).tags
    lines = [f"  open the UI:      {command}"] if command else []
    metric, ascending = _ranking(runs)
    lines.append(f"  cells, best first: {experiment_url(base, experiment_id, metric, ascending, shared)}")
    done = runs[runs["status"] == "FINISHED"] if not runs.empty else runs
    for stage, group in (done.groupby("stage", sort=False) if not done.empty else []):
        label = f"cells compared ({stage})" if stage else "cells compared"
        lines.append(f"  {label}: {compare_url(base, experiment_id, list(group['run_id']))}")
    return lines


def _ranking(runs: pd.DataFrame) -> tuple[str, bool]:
    """Test F1-macro, highest first; for a grid of MLM cells only, the final validation loss, lowest first."""
    if f"metrics.{M.TEST_F1_MACRO}" in runs or runs.empty:
        return M.TEST_F1_MACRO, False
    return M.FINAL_VAL_LOSS, True
