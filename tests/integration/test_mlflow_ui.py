"""What the MLflow UI shows for a grid, read the way the UI reads it: the tracking server's REST API.

raygrid writes through a real `mlflow server` on 127.0.0.1 (as on a cluster); the test then fetches
the endpoints the UI's experiment and run pages call and checks what they would display. No Ray.
The browser itself is checked by hand (README, "What MLflow shows").
"""
from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest

from raygrid.report.publish import log_to_parent
from raygrid.spec.config import CellConfig
from raygrid.tracking.grid_summary import Counts
from raygrid.tracking.runs import GridTracker
from tests.integration.local_cluster import MlflowServer

pytestmark = pytest.mark.integration


def _get(server: MlflowServer, endpoint: str, **query) -> bytes:
    with urllib.request.urlopen(f"{server.uri}{endpoint}?{urllib.parse.urlencode(query)}", timeout=60) as response:
        return response.read()


def _post(server: MlflowServer, endpoint: str, body: dict) -> dict:
    request = urllib.request.Request(f"{server.uri}{endpoint}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _pairs(items: list[dict]) -> dict[str, str]:
    return {item["key"]: item["value"] for item in items}


@pytest.fixture(scope="module")
def served(mlflow_server, tmp_path_factory):
    """A grid of two scored cells and a failed one, recorded through the server, with summary and report."""
    root = tmp_path_factory.mktemp("ui")
    server = mlflow_server  # the session's (tests/integration/conftest.py): this test's experiment is "ui"
    grid_file = root / "ui.yaml"
    grid_file.write_text("name: ui\n")
    tracker = GridTracker(server.uri, "ui")
    tracker.log_grid(grid_file.read_text(), str(grid_file), 3, "pooling on a sample, CPU")
    for pooling, val, test in (("cls", 0.8, 0.7), ("mean", 0.6, 0.9)):
        config = CellConfig.model_validate({"data": {"dataset": "hyperpartisan"}, "model": {
            "checkpoint": "/ck", "pooling": pooling}}).model_dump(mode="json")
        run = tracker.start_cell(f"pooling={pooling}", {"model.pooling": pooling}, config)
        for epoch in (0, 1):
            tracker.log_metrics(run, {"val_f1_macro": val - 0.1 + 0.1 * epoch, "train_loss": 1 - 0.2 * epoch}, epoch)
        tracker.log_metrics(run, {"best_val_f1_macro": val, "test_f1_macro": test}, 0)
        tracker.end_cell(run)
    failed = tracker.start_cell("pooling=max", {}, config)
    tracker.end_cell(failed, error="ValueError: boom")
    tracker.log_summary(Counts(3, 2, 1, 0))
    log_to_parent(server.uri, "ui")
    tracker.end_grid(failed=True)
    return server, tracker


def test_the_experiment_page_shows_the_grid_description_and_every_run(served):
    server, tracker = served
    experiment = json.loads(_get(server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="ui"))["experiment"]
    assert _pairs(experiment["tags"])["mlflow.note.content"].startswith("pooling on a sample, CPU")
    runs = _post(server, "/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    names = {run["info"]["run_name"]: run for run in runs}
    assert set(names) == {"ui", "pooling=cls", "pooling=mean", "pooling=max"}
    for run in runs:  # the Source and User columns
        tags = _pairs(run["data"]["tags"])
        assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"].endswith("ui.yaml")
        assert tags["mlflow.user"]
        assert "None" not in _pairs(run["data"].get("params", [])).values()
    cell = names["pooling=cls"]
    assert _pairs(cell["data"]["params"])["model.pooling"] == "cls"
    assert not [p for p in cell["data"]["params"] if p["key"].startswith("mlm.")]


def test_the_parent_run_page_shows_summary_description_and_report(served):
    server, tracker = served
    run = json.loads(_get(server, "/api/2.0/mlflow/runs/get", run_id=tracker.parent_id))["run"]
    tags, metrics = _pairs(run["data"]["tags"]), {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert run["info"]["status"] == "FAILED"
    assert tags["raygrid.best_cell"] == "pooling=cls"  # chosen on validation, not on test
    assert metrics["cells_finished"] == 2 and metrics["cells_failed"] == 1 and metrics["best_cell.test_f1_macro"] == 0.7
    assert "3 cells: 2 finished, 1 failed, 0 skipped" in tags["mlflow.note.content"]
    assert _pairs(run["data"]["params"]) == {"grid.name": "ui", "grid.file": tags["raygrid.grid_file"], "grid.cells": "3"}
    listed = json.loads(_get(server, "/api/2.0/mlflow/artifacts/list", run_id=tracker.parent_id, path="report"))
    assert "report/ui.md" in {f["path"] for f in listed["files"]}
    # what the artifact viewer displays when the file is clicked
    markdown = _get(server, "/get-artifact", path="report/ui.md", run_uuid=tracker.parent_id).decode()
    assert "pooling=cls" in markdown and "### test F1-macro" in markdown
    png = _get(server, "/get-artifact", path="plots/ui.f1.png", run_uuid=tracker.parent_id)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_cell_run_page_shows_its_config_and_curves(served):
    server, tracker = served
    (cell,) = tracker.cell_runs("pooling=mean")
    config = _get(server, "/get-artifact", path="config.yaml", run_uuid=cell.info.run_id).decode()
    assert "pooling: mean" in config and "mlm:" in config  # complete, unset values included
    history = json.loads(_get(server, "/api/2.0/mlflow/metrics/get-history", run_id=cell.info.run_id,
                              metric_key="val_f1_macro"))["metrics"]
    assert sorted(m["step"] for m in history) == [0, 1]
