"""The MLflow links raygrid prints: the machine-learning view of the current cells (a shared view whose columns
start with test F1, time and memory) and MLflow's compare page per stage (checked in a browser: docs/)."""
import json
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd

from raygrid.report.links import (CURRENT_CELLS, VIEW_TAG, compare_url, experiment_url, link_lines, save_view,
                                  ui_base, view_state)
from raygrid.tracking.runs import TAG_STAGE, GridTracker


def query(url: str) -> dict:
    """The parameters of a hash-routed MLflow address (`.../#/route?a=1`), decoded."""
    fragment = urlsplit(url).fragment
    return {key: values[0] for key, values in parse_qs(fragment.split("?", 1)[1]).items()}


def test_where_the_ui_is():
    assert ui_base("sqlite:////x/mlflow.db") == (
        "http://127.0.0.1:5000", "mlflow ui --backend-store-uri sqlite:////x/mlflow.db --host 127.0.0.1 --port 5000")
    assert ui_base("http://127.0.0.1:5000/") == ("http://127.0.0.1:5000", None)
    assert ui_base("databricks") == (None, None)


def test_the_cells_link_opens_the_machine_learning_view_of_the_current_cells():
    url = experiment_url("http://h:5000", "7", "test_f1_macro", False)
    assert url.startswith("http://h:5000/#/experiments/7/runs?")  # the runs tab: the root drops the parameters
    assert query(url) == {"workflowType": "machine_learning", "searchFilter": CURRENT_CELLS,
                          "orderByKey": "metrics.`test_f1_macro`", "orderByAsc": "false"}
    assert "'" not in url and " " not in url and "`" not in url  # a terminal keeps it whole
    shared = experiment_url("http://h:5000", "7", "test_f1_macro", False, shared=True)
    assert query(shared) == {"workflowType": "machine_learning", "viewStateShareKey": "raygrid-cells"}


def test_the_compare_link_lists_the_runs_as_mlflow_reads_them():
    url = compare_url("http://h:5000", "7", ["a1", "b2"])
    assert url.startswith("http://h:5000/#/compare-runs?")
    params = query(url)
    assert json.loads(params["runs"]) == ["a1", "b2"] and json.loads(params["experiments"]) == ["7"]
    assert "[" not in url and '"' not in url


def test_the_shared_view_puts_score_time_and_memory_first_then_the_axes():
    runs = pd.DataFrame({"cell": ["a", "bb"], "params.axis.attention": ["softmax", "lsh"], "params.model.lr": ["1", "2"],
                         "metrics.epoch_time_mean_s": [1.0, 2.0], "metrics.test_f1_macro": [0.8, 0.7],
                         "metrics.peak_gpu_mem_mb": [0.0, 0.0], "metrics.peak_host_mem_mb": [9.0, 9.0],
                         "metrics.cells_total": [None, None]})
    state = view_state(runs)
    assert state["selectedColumns"] == ["metrics.`test_f1_macro`", "metrics.`epoch_time_mean_s`",
                                        "metrics.`peak_host_mem_mb`", "params.`axis.attention`"]  # CPU: host memory
    assert state["columnOrder"][1:5] == state["selectedColumns"] and state["searchFilter"] == CURRENT_CELLS
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`test_f1_macro`", False)
    mlm = view_state(runs.drop(columns="metrics.test_f1_macro").assign(**{"metrics.final_val_loss": [3.0, 2.0]}))
    assert (mlm["orderByKey"], mlm["orderByAsc"]) == ("metrics.`final_val_loss`", True)


def test_link_lines_per_stage_and_the_shared_view_once_saved(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = GridTracker(uri, "g")
    ids = {}
    for name, stage, status in (("mlm/a=1", "mlm", None), ("ft/a=1", "ft", None), ("ft/a=2", "ft", "boom")):
        ids[name] = tracker.start_cell(name, {"a": name[-1]}, {"kind": "finetune"}, {TAG_STAGE: stage})
        tracker.log_metrics(ids[name], {"test_f1_macro": 0.5}, step=0)
        tracker.end_cell(ids[name], error=status)
    lines = link_lines(uri, "g", order=["mlm/a=1", "ft/a=1", "ft/a=2"])
    assert lines[0] == f"  open the UI:      mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"
    assert "searchFilter=" in lines[1] and "/#/experiments/1/runs?" in lines[1]
    assert [line.split(":")[0].strip() for line in lines[2:]] == ["cells compared (mlm)", "cells compared (ft)"]
    assert json.loads(query(lines[3].split(": ", 1)[1])["runs"]) == [ids["ft/a=1"]]  # finished cells only
    save_view(uri, "g")
    state = json.loads(tracker.client.get_experiment(tracker.experiment_id).tags[VIEW_TAG])
    assert state["selectedColumns"][0] == "metrics.`test_f1_macro`" and "params.`axis.a`" in state["selectedColumns"]
    assert "viewStateShareKey=raygrid-cells" in unquote(link_lines(uri, "g")[1])
    assert link_lines(uri, "never-ran") == [] and link_lines("databricks", "g") == []
