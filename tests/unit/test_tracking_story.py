"""What MLflow shows for a grid, against a real (temporary) SQLite store: params per kind, config
artifacts, descriptions, context tags, the parent's summary and report."""
import subprocess

import pytest
import yaml
from mlflow.tracking import MlflowClient

from raygrid.spec.config import CellConfig
from raygrid.tracking.grid_summary import Counts
from raygrid.tracking.runs import GridTracker

GRID = "story"


def cell(kind="finetune", attention=None, dataset="hyperpartisan", **model):
    raw = {"kind": kind, "data": {"dataset": dataset, "path": "/data/x"}, "attention": attention or {"kind": "softmax"}}
    if kind != "tfidf":
        raw["model"] = {"checkpoint": "/ck", **model}
    return CellConfig.model_validate(raw).model_dump(mode="json")


def scored(tracker, name, config, val, test, axis=None):
    run = tracker.start_cell(name, axis or {}, config)
    tracker.log_metrics(run, {"best_val_f1_macro": val, "test_f1_macro": test}, step=0)
    tracker.end_cell(run)
    return run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A grid file inside a git repository; cells of each kind; one summary."""
    root = tmp_path_factory.mktemp("story")
    repo = root / "repo"
    repo.mkdir()
    grid_file = repo / "g.yaml"
    grid_file.write_text("name: story\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "g.yaml"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "grid"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracker = GridTracker(uri, GRID)
    tracker.log_grid("name: story\n", str(grid_file), 6, "pooling on a sample, CPU",
                     {"mlm": "task MLM", "ft": ""})
    runs = {
        # the best on test, not on validation: never chosen
        "a": scored(tracker, "a", cell(attention={"kind": "favor", "nb_features": 8}), val=0.70, test=0.90,
                    axis={"attention": "favor"}),
        "b": scored(tracker, "b", cell(pooling="mean"), val=0.80, test=0.75),
        "tfidf": scored(tracker, "tfidf", cell("tfidf"), val=0.95, test=0.95),  # a reference row, not a choice
        "mlm": tracker.start_cell("mlm", {}, cell("mlm", {"kind": "lsh", "num_hashes": 2})),
    }
    failed = tracker.start_cell("c", {}, cell())
    tracker.end_cell(failed, error="boom")
    tracker.end_cell(runs["mlm"])
    tracker.log_summary(Counts(total=6, finished=3, failed=1, skipped=2))
    return {"uri": uri, "tracker": tracker, "runs": runs, "failed": failed, "commit": commit, "grid_file": grid_file,
            "client": MlflowClient(uri)}


def params(store, name):
    return store["client"].get_run(store["runs"][name]).data.params


def test_each_cell_logs_only_the_params_of_its_kind_and_no_none(store):
    finetune, mlm, tfidf = params(store, "a"), params(store, "mlm"), params(store, "tfidf")
    assert not [k for k in finetune if k.startswith("mlm.")]
    assert finetune["model.pooling"] == "cls" and finetune["attention.nb_features"] == "8"
    assert finetune["axis.attention"] == "favor"
    assert not {"attention.num_hashes", "attention.implementation"} & set(finetune)  # other variants' fields
    assert {"model.pooling", "model.p_drop", "model.n_freeze"}.isdisjoint(mlm)
    assert mlm["mlm.mask_prob"] == "0.15" and mlm["attention.num_hashes"] == "2" and "attention.nb_features" not in mlm
    assert tfidf["kind"] == "tfidf" and tfidf["data.dataset"] == "hyperpartisan"
    assert not [k for k in tfidf if k.split(".")[0] in ("model", "attention", "optim", "mlm")]
    for name in store["runs"]:
        assert "None" not in params(store, name).values(), name
    # unset values are left out, not written as "None" (data.subset, model.tokenizer, optim.eval_batch_size, ...)
    assert {"data.subset", "model.tokenizer", "optim.eval_batch_size", "data.limit.train"}.isdisjoint(finetune)


def test_each_cell_run_holds_its_resolved_config_which_loads_back(store):
    client = store["client"]
    for name, run_id in store["runs"].items():
        assert "config.yaml" in {a.path for a in client.list_artifacts(run_id)}
        text = client.download_artifacts(run_id, "config.yaml")
        with open(text) as handle:
            config = yaml.safe_load(handle)
        assert config == CellConfig.model_validate(config).model_dump(mode="json")
        assert config["kind"] == params(store, name)["kind"]
    with open(client.download_artifacts(store["runs"]["a"], "config.yaml")) as handle:
        assert yaml.safe_load(handle)["attention"] == cell(attention={"kind": "favor", "nb_features": 8})["attention"]


def test_experiment_and_parent_run_carry_the_grid_description(store):
    client, tracker = store["client"], store["tracker"]
    note = client.get_experiment(tracker.experiment_id).tags["mlflow.note.content"]
    assert note.startswith("pooling on a sample, CPU")
    assert "- `mlm`: task MLM" in note and "- `ft`" in note and str(store["grid_file"]) in note
    parent = client.get_run(tracker.parent_id).data.tags["mlflow.note.content"]
    # the grid's description first, then the summary, then the rest of the experiment's note
    assert parent.startswith("pooling on a sample, CPU\n\n**Last `raygrid run`**: 6 cells")
    assert note.partition("\n\n")[2] in parent
    cell = client.get_run(store["runs"]["a"]).data.tags["mlflow.note.content"]
    assert cell.startswith("Cell of grid `story` (finetune): `attention` = favor.")
    failed = client.get_run(store["failed"]).data.tags["mlflow.note.content"]
    assert failed.startswith("**Failed**: boom\n\nCell of grid `story`")


def test_every_run_has_the_context_tags_with_the_grid_files_commit(store):
    client, tracker = store["client"], store["tracker"]
    for run_id in [tracker.parent_id, *store["runs"].values()]:
        tags = client.get_run(run_id).data.tags
        assert tags["mlflow.source.name"] == str(store["grid_file"].resolve())
        assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.user"]
        assert tags["mlflow.source.git.commit"] == store["commit"] and tags["raygrid.git_dirty"] == "false"


def test_a_grid_outside_a_repository_has_no_commit(tmp_path):
    tracker = GridTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "g")
    tracker.log_grid("name: g\n", str(tmp_path / "g.yaml"), 1)
    tags = tracker.client.get_run(tracker.parent_id).data.tags
    assert tags["mlflow.source.name"] == str(tmp_path / "g.yaml") and "mlflow.source.git.commit" not in tags
    # a grid edited between runs: the first params stay (MLflow never changes one), tags follow the file
    tracker.log_grid("name: g\n", str(tmp_path / "g.yaml"), 4)
    run = tracker.client.get_run(tracker.parent_id)
    assert run.data.params["grid.cells"] == "1" and run.data.tags["raygrid.cells"] == "4"


def test_parent_run_has_params_summary_and_the_cell_chosen_on_validation(store):
    client, tracker = store["client"], store["tracker"]
    parent = client.get_run(tracker.parent_id)
    assert parent.data.params == {"grid.name": GRID, "grid.file": str(store["grid_file"]), "grid.cells": "6",
                                  "grid.stages": "mlm,ft"}
    assert {k: parent.data.metrics[k] for k in ("cells_total", "cells_finished", "cells_failed", "cells_skipped")} == \
        {"cells_total": 6, "cells_finished": 3, "cells_failed": 1, "cells_skipped": 2}
    # b wins on validation F1 (a has the better test score, the TF-IDF baseline is not a candidate)
    assert parent.data.tags["raygrid.best_cell"] == "b"
    assert parent.data.metrics["best_cell.best_val_f1_macro"] == pytest.approx(0.80)
    assert parent.data.metrics["best_cell.test_f1_macro"] == pytest.approx(0.75)
    note = parent.data.tags["mlflow.note.content"]
    assert "6 cells: 3 finished, 1 failed, 2 skipped" in note
    assert f"[b](#/experiments/{tracker.experiment_id}/runs/{store['runs']['b']})" in note
    assert "grid.yaml" in {a.path for a in client.list_artifacts(tracker.parent_id)}


def test_a_grid_over_several_datasets_has_a_best_cell_per_dataset_and_reruns_step_the_summary(tmp_path):
    tracker = GridTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "g")
    tracker.log_grid("name: g\n", str(tmp_path / "g.yaml"), 4)
    scored(tracker, "imdb-a", cell(dataset="imdb"), 0.6, 0.6)
    scored(tracker, "imdb-b", cell(dataset="imdb"), 0.7, 0.5)
    scored(tracker, "hp-a", cell(), 0.9, 0.8)
    tracker.log_summary(Counts(4, 3, 0, 0))
    tracker.log_summary(Counts(4, 0, 0, 3))  # the same grid run again: everything skipped
    parent = tracker.client.get_run(tracker.parent_id)
    assert parent.data.tags["raygrid.best_cell.imdb"] == "imdb-b"
    assert parent.data.tags["raygrid.best_cell.hyperpartisan"] == "hp-a" and "raygrid.best_cell" not in parent.data.tags
    assert parent.data.metrics["best_cell.imdb.test_f1_macro"] == pytest.approx(0.5)
    history = tracker.client.get_metric_history(tracker.parent_id, "cells_skipped")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.0), (1, 3.0)]
