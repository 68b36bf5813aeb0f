"""`select:` end to end: refused before experiment 1 ran, then takes its best cell, recorded on the run; --compare."""
from __future__ import annotations

import contextlib
import io

import pytest
from mlflow.tracking import MlflowClient

from raygrid.cli import main
from tests.conftest import tiny_grid_yaml

pytestmark = pytest.mark.integration

SELECT = "select: {grid: exp1.yaml, by: best_val_f1_macro, keys: [model.pooling, model.p_drop]}\n"


@pytest.fixture(scope="module")
def runs(ray_local, tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("select")
    exp1 = root / "exp1.yaml"  # experiment 1 in small: 2 poolings, 1 epoch each, dropout 0.2 for both
    exp1.write_text(tiny_grid_yaml(tiny_checkpoint, name="exp1", axes="  model.pooling: [cls, mean]\n")
                    .replace("epochs: 2", "epochs: 1").replace("p_drop: 0.1", "p_drop: 0.2"))
    exp2 = root / "exp2.yaml"  # experiment 2 in small: one cell (its own base says p_drop 0.1), values selected
    exp2.write_text(tiny_grid_yaml(tiny_checkpoint, name="exp2", axes="  seed: [3]\n", extra=SELECT)
                    .replace("epochs: 2", "epochs: 1"))
    common = ["--out", str(root / "out"), "--cache-dir", str(root / "cache")]
    uri = f"sqlite:///{(root / 'out' / 'mlflow.db').resolve()}"
    with contextlib.redirect_stderr(io.StringIO()) as err:
        early = main(["run", str(exp2), *common])  # before experiment 1 ran: refused, nothing launched
    early_experiment = MlflowClient(uri).get_experiment_by_name("exp2")
    codes = [main(["run", str(exp1), *common]), main(["run", str(exp2), *common])]
    return {"root": root, "exp1": exp1, "exp2": exp2, "common": common, "codes": codes, "uri": uri,
            "early": (early, err.getvalue(), early_experiment)}


def cell_runs(client: MlflowClient, grid: str):
    experiment = client.get_experiment_by_name(grid)
    return client.search_runs([experiment.experiment_id], "tags.`raygrid.role` = 'cell'") if experiment else []


def test_selecting_grid_is_refused_until_its_source_finished(runs):
    code, message, experiment = runs["early"]
    assert code == 2 and experiment is None  # refused before anything was recorded
    (line,) = [line for line in message.splitlines() if line.startswith("raygrid: error:")]
    assert f"{runs['exp2']}: select: grid exp1 has not finished cell pooling=cls" in line  # one line, naming select


def test_the_selecting_cell_takes_the_best_validation_cell_and_records_it(runs):
    assert runs["codes"] == [0, 0]
    client = MlflowClient(runs["uri"])
    source = cell_runs(client, "exp1")
    assert len(source) == 2
    order = ["pooling=cls", "pooling=mean"]
    by_cell = {r.data.tags["raygrid.cell"]: r for r in source}
    best = max(order, key=lambda name: by_cell[name].data.metrics["best_val_f1_macro"])  # first of equals
    winner = by_cell[best]
    (cell,) = cell_runs(client, "exp2")
    assert cell.info.status == "FINISHED"
    assert cell.data.params["model.pooling"] == winner.data.params["model.pooling"]
    assert cell.data.params["model.p_drop"] == winner.data.params["model.p_drop"] == "0.2"
    tags = cell.data.tags
    assert tags["raygrid.select_run_id"] == winner.info.run_id and tags["raygrid.select_cell"] == best
    assert tags["raygrid.select_grid"] == "exp1"
    assert tags["raygrid.select_by"] == f"best_val_f1_macro={winner.data.metrics['best_val_f1_macro']:.6g}"
    assert tags["raygrid.select.model.pooling"] == winner.data.params["model.pooling"]


def test_plan_shows_the_selected_values(runs, capsys):
    capsys.readouterr()
    assert main(["plan", str(runs["exp2"]), "--no-cost", "--out", runs["common"][1]]) == 0
    out = capsys.readouterr().out
    chosen = [line for line in out.splitlines() if line.startswith("select   model.pooling=")]
    assert len(chosen) == 1 and "<- pooling=" in chosen[0] and "best_val_f1_macro=" in chosen[0]


def test_report_compare_prints_published_values_and_differences(runs, capsys):
    reference = runs["root"] / "reference.csv"
    reference.write_text("dataset,model,variant,metric,value,source\n"
                         "hyperpartisan,tiny,softmax,test_f1_macro_pct,50.0,made up for this test\n")
    capsys.readouterr()
    assert main(["report", str(runs["exp1"]), "--out", runs["common"][1], "--compare", str(reference)]) == 0
    out = capsys.readouterr().out
    assert "hyperpartisan published (%)" in out and "hyperpartisan Δ (pp)" in out and "50.00" in out  # F1 in percent
    assert "### published reference" in out and "made up for this test" in out
