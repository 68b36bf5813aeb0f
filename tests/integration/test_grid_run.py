"""A real tiny grid through local Ray (2 CPUs), Ray Train V2, Ray Data and MLflow on SQLite."""
from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from raygrid.cli import main
from tests.conftest import tiny_grid_yaml

pytestmark = pytest.mark.integration

EPOCH_METRICS = {"train_loss", "val_f1_macro", "val_accuracy", "epoch_time_s"}
CELL_METRICS = {"test_f1_macro", "test_accuracy", "best_val_f1_macro", "train_time_s", "tokens_per_s",
                "peak_gpu_mem_mb", "peak_host_mem_mb", "epoch_time_mean_s", "padded_tokens_per_s", "padding_ratio",
                "eval_time_s", "checkpoint_time_s", "model_load_s", "data_load_s", "worker_start_s",
                "final_train_loss", "skipped_steps"}


@pytest.fixture(scope="module")
def grid_run(ray_local, tiny_checkpoint, tmp_path_factory):
    """Run 3 fine-tuning cells (1 fails on purpose: lr 1e30 diverges, its loss turns nan) + the baseline."""
    root = tmp_path_factory.mktemp("grid")
    grid = root / "tiny.yaml"
    axes = "  - model.pooling: [cls, mean]\n  - optim.lr: [1.0e+30]\n  - kind: [tfidf]\n"
    grid.write_text(tiny_grid_yaml(tiny_checkpoint, axes=axes))
    out = root / "out"
    args = ["run", str(grid), "--out", str(out), "--cache-dir", str(root / "cache")]
    printed = io.StringIO()
    # A progress line at every step (the default is one per ~30 s of training, longer than these cells)
    with _environment(RAYGRID_PROGRESS_S="0.01"), contextlib.redirect_stdout(printed):
        code = main(args)
    print(printed.getvalue())
    return {"grid": grid, "out": out, "args": args, "code": code, "printed": printed.getvalue(),
            "uri": f"sqlite:///{(out / 'mlflow.db').resolve()}"}


@contextlib.contextmanager
def _environment(**values):
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def cell_runs(uri):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id], "tags.`raygrid.role` = 'cell'")
    return client, runs


def test_one_child_run_per_cell_with_contract_metrics(grid_run):
    assert grid_run["code"] == 1  # a cell failed, the grid went on
    client, runs = cell_runs(grid_run["uri"])
    assert len(runs) == 4
    parent = client.search_runs([runs[0].info.experiment_id], "tags.`raygrid.role` = 'parent'")[0]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    # MLflow holds the results; Tune writes no per-trial copies of them (CSV, JSON, TensorBoard)
    tune_dir = grid_run["out"] / "ray"
    assert tune_dir.is_dir() and not [p for p in tune_dir.rglob("*")
                                      if p.name in ("progress.csv", "result.json") or "tfevents" in p.name]
    assert "grid.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    finished = {r.data.tags["raygrid.cell"]: r for r in runs if r.info.status == "FINISHED"}
    assert set(finished) == {"pooling=cls", "pooling=mean", "kind=tfidf"}
    baseline = finished.pop("kind=tfidf")
    assert {"test_f1_macro", "val_f1_macro", "train_time_s"} <= set(baseline.data.metrics)
    for run in finished.values():
        assert CELL_METRICS | EPOCH_METRICS <= set(run.data.metrics)
        assert run.data.params["model.pooling"] == run.data.params["axis.model.pooling"] in ("cls", "mean")
        assert run.data.params["optim.lr"] == "0.001"
        history = client.get_metric_history(run.info.run_id, "val_f1_macro")
        assert sorted(m.step for m in history) == [0, 1]  # one value per epoch
        assert run.data.metrics["peak_gpu_mem_mb"] == 0.0 and run.data.metrics["tokens_per_s"] > 0
        epoch_times = [m.value for m in client.get_metric_history(run.info.run_id, "epoch_time_s")]
        assert run.data.metrics["epoch_time_mean_s"] == pytest.approx(sum(epoch_times) / len(epoch_times))
        assert run.data.metrics["padding_ratio"] >= 1.0
        assert run.data.tags["raygrid.precision"] == "fp32"  # what ran on CPU, whatever optim.precision asked
    failed = [r for r in runs if r.info.status == "FAILED"]
    # diverged: stopped in the first epoch with the reason, no nan epoch logged (the grid went on)
    assert len(failed) == 1 and failed[0].data.params["axis.optim.lr"] == "1e+30"
    for run in failed:
        assert re.match(r"NonFiniteLossError: loss is (nan|inf) at epoch 0, step \d+", run.data.tags["raygrid.error"])
        assert client.get_metric_history(run.info.run_id, "val_f1_macro") == []


def test_running_cells_print_their_progress_and_log_it_as_step_metrics(grid_run):
    """Between `started` and the epochs' lines, each fine-tuning cell says its steps, tokens/s and ETA, and
    MLflow holds the same figures as step metrics (the report's tables leave them out)."""
    steps = 2 * 32 // 8  # 2 epochs of 32 rows in batches of 8
    for cell in ("pooling=cls", "pooling=mean"):
        lines = [line for line in grid_run["printed"].splitlines() if re.match(rf"\[\d/4\] {cell}: ", line)]
        progress = [line for line in lines if ": step " in line]
        assert progress, lines
        assert re.fullmatch(rf"\[\d/4\] {cell}: epoch [12]/2: step [1-4]/4, cell \d+/{steps} \(\d+%\): \d+ tokens/s, "
                            r"ETA \d+s", progress[0])
        assert lines.index(progress[0]) > 0 and lines[0].endswith(": started")  # printed while it ran
    client, runs = cell_runs(grid_run["uri"])
    for run in runs:
        if run.data.tags["raygrid.cell"] not in ("pooling=cls", "pooling=mean"):
            continue
        history = client.get_metric_history(run.info.run_id, "progress_step")
        assert history and all(m.step == m.value for m in history) and max(m.step for m in history) <= steps
        assert [m.value for m in client.get_metric_history(run.info.run_id, "progress_steps_total")][0] == steps
        assert all(m.value > 0 for m in client.get_metric_history(run.info.run_id, "progress_tokens_per_s"))
        assert client.get_metric_history(run.info.run_id, "progress_eta_s")


def test_the_parent_run_tells_the_story_of_the_grid(grid_run):
    """Summary, report and descriptions land in MLflow at the end of `run`, with no `report --save`."""
    client, runs = cell_runs(grid_run["uri"])
    experiment = client.get_experiment_by_name("tiny")
    parent = client.get_run(runs[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FAILED"  # a cell diverged: the grid ran on, the run exits 1
    assert {k: parent.data.metrics[k] for k in ("cells_total", "cells_finished", "cells_failed", "cells_skipped")} == \
        {"cells_total": 4, "cells_finished": 3, "cells_failed": 1, "cells_skipped": 0}
    finished = {r.data.tags["raygrid.cell"]: r for r in runs if r.info.status == "FINISHED"}
    best = parent.data.tags["raygrid.best_cell"]  # chosen on validation among the fine-tuned cells
    assert best in ("pooling=cls", "pooling=mean")
    assert parent.data.metrics["best_cell.best_val_f1_macro"] == \
        max(finished[c].data.metrics["best_val_f1_macro"] for c in finished if c != "kind=tfidf")
    assert parent.data.metrics["best_cell.test_f1_macro"] == finished[best].data.metrics["test_f1_macro"]
    assert parent.data.params["grid.name"] == "tiny" and parent.data.params["grid.cells"] == "4"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")} | \
        {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"report/tiny.md", "report/tiny.cells.csv", "plots/tiny.f1.png"} <= artifacts
    assert "Grid file:" in experiment.tags["mlflow.note.content"]
    assert "4 cells: 3 finished, 1 failed, 0 skipped" in parent.data.tags["mlflow.note.content"]
    for run in [parent, *runs]:
        assert run.data.tags["mlflow.source.name"] == str(grid_run["grid"].resolve())
        assert "None" not in run.data.params.values()
    for run in runs:
        assert "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
        assert not [k for k in run.data.params if k.startswith("mlm.")]


def test_report_rebuilds_tables_from_mlflow_alone(grid_run, capsys):
    capsys.readouterr()
    assert main(["report", str(grid_run["out"]), "--format", "md"]) == 0
    text = capsys.readouterr().out
    for cell in ("pooling=cls", "pooling=mean", "lr=1e+30", "kind=tfidf"):
        assert cell in text
    assert "| TF-IDF+LR |" in text
    assert "### test F1-macro" in text and "### best hyperparameters" in text
    save = grid_run["out"] / "tables"
    assert main(["report", str(grid_run["grid"]), "--out", str(grid_run["out"]), "--format", "csv",
                 "--save", str(save)]) == 0
    assert "# cells\ncell,status" in capsys.readouterr().out
    assert {"tiny.f1.png", "tiny.val_f1_macro.png", "tiny.train_loss.png", "tiny.cells.csv"} <= \
        {p.name for p in save.iterdir()}
    client, runs = cell_runs(grid_run["uri"])
    parent = runs[0].data.tags["mlflow.parentRunId"]
    assert {a.path for a in client.list_artifacts(parent, "plots")} >= {"plots/tiny.f1.png"}


def test_rerun_skips_finished_cells_and_keeps_history(grid_run, capsys):
    capsys.readouterr()
    main(grid_run["args"])
    assert "skipping 3 of 4 cells already finished" in capsys.readouterr().out
    client, runs = cell_runs(grid_run["uri"])
    finished = [r.data.tags["raygrid.cell"] for r in runs if r.info.status == "FINISHED"]
    assert sorted(finished) == ["kind=tfidf", "pooling=cls", "pooling=mean"]  # no duplicates
    # the failed cell was retried: its old run kept (tagged superseded), one current run
    retried = [r for r in runs if r.data.tags["raygrid.cell"] == "lr=1e+30"]
    assert len(retried) == 2
    assert [r.data.tags.get("raygrid.superseded") for r in retried].count("true") == 1


def test_two_workers_per_trial_fine_tune_with_frozen_layers_and_train_an_mlm_cell(ray_local, tiny_checkpoint, tmp_path):
    """DDP across 2 Train workers: N_freeze leaves layers without gradients for the first epoch; the
    masked-LM wrapper (tuple outputs, head on masked positions only) trains and exports its weights;
    accumulation over 2 micro-batches (the first under no_sync), and progress sent by rank 0 alone
    (no rank waits on it)."""
    grid = tmp_path / "ddp.yaml"
    grid.write_text(tiny_grid_yaml(tiny_checkpoint, axes="  - model.n_freeze: [1]\n  - kind: [mlm]\n", name="ddp")
                    # 2 cells x 2 workers x 0.45 CPU: both trials at once on the 2 cores
                    .replace("resources: {cpus_per_worker: 0.8}", "resources: {cpus_per_worker: 0.45, workers_per_trial: 2}")
                    .replace("batch_size: 8}", "batch_size: 8, grad_accum: 2}"))
    with _environment(RAYGRID_PROGRESS_S="0.01"):
        assert main(["run", str(grid), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]) == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ddp").experiment_id], "tags.`raygrid.role` = 'cell'")
    runs = {r.data.tags["raygrid.cell"]: r for r in runs}
    assert {name: r.info.status for name, r in runs.items()} == {"n_freeze=1": "FINISHED", "kind=mlm": "FINISHED"}
    assert CELL_METRICS <= set(runs["n_freeze=1"].data.metrics)
    mlm = runs["kind=mlm"]
    assert {"final_val_loss", "best_val_loss", "tokens_per_s"} <= set(mlm.data.metrics)
    exported = mlm.data.tags["raygrid.checkpoint"]
    # the exported weights stay; their resume state went when the cell finished (resources.keep_checkpoints)
    assert (Path(exported) / "config.json").is_file() and not (Path(exported) / "state.pt").exists()
    assert mlm.data.tags["raygrid.weights_in"] != mlm.data.tags["raygrid.weights_out"]
    for run in runs.values():
        assert client.get_metric_history(run.info.run_id, "progress_step")


def test_ray_data_tokenization_writes_the_same_cache(ray_local, tiny_checkpoint, tmp_path, capsys):
    """`raygrid data prepare --ray` (actor pool) and the in-process path write the same files, byte for byte:
    classification documents, and an MLM corpus under the study's rule (document layout, short first rows).

    One actor: each split of the sample is one block, so a second actor would start (and load the
    tokenizer) for no work."""
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from raygrid.data.mlm_data import prepare_mlm
    from raygrid.orchestration.tokenize_pool import ray_tokenize
    from raygrid.spec.config import DataConfig

    def digests(folder):
        return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(Path(folder).glob("*.parquet"))}

    grid = tmp_path / "g.yaml"
    grid.write_text(tiny_grid_yaml(tiny_checkpoint))
    assert main(["data", "prepare", str(grid), "--cache-dir", str(tmp_path / "local")]) == 0
    assert main(["data", "prepare", str(grid), "--ray", "--actors", "1", "--cache-dir", str(tmp_path / "ray")]) == 0
    local, remote = capsys.readouterr().out.split()[-2:]
    assert local != remote and local.split("/")[-1] == remote.split("/")[-1]  # same key, two roots
    assert len(digests(local)) == 3 and digests(local) == digests(remote)
    corpus = tmp_path / "wiki"
    corpus.mkdir()
    for shard in range(2):
        texts = [f"doc {shard}-{i} " + ("the government said the election and the law " * (5 + i % 40) if i % 3
                                        else "the news of the day " * 20) for i in range(200)]
        pq.write_table(pa.table({"text": texts}), corpus / f"wiki_{shard}.parquet")
    cfg = DataConfig(dataset="wikipedia", path=str(corpus), corpus_rule="study", mlm_layout="document",
                     limit={"train": 250}, val_fraction=0, short_rows=150, short_len=16, max_len=64)
    here = prepare_mlm(cfg, str(tiny_checkpoint), tmp_path / "local", progress=False)
    there = prepare_mlm(cfg, str(tiny_checkpoint), tmp_path / "ray", progress=False, tokenize=ray_tokenize(1))
    assert here.meta["splits"]["train"]["rows"] == 250 and here.meta["source_shards_read"] == 2
    assert digests(here.folder) == digests(there.folder) and there.meta["source_rows_read"] == \
        here.meta["source_rows_read"]


def test_the_workers_of_a_local_ray_know_its_address(ray_local):
    """Ray's State API in a worker (Train's placement-group cleaner) asks $RAY_ADDRESS, else the last
    `ray start` cluster of the machine: raygrid's local Ray hands its workers its own address."""
    import os

    import ray

    @ray.remote(num_cpus=0)
    def address_seen_by_a_worker():
        return os.environ.get("RAY_ADDRESS")

    port = ray.get_runtime_context().gcs_address.rsplit(":", 1)[1]
    assert ray.get(address_seen_by_a_worker.remote()) == f"127.0.0.1:{port}"
    # the driver's own environment is left as it was
    assert os.environ.get("RAY_ADDRESS") != f"127.0.0.1:{port}" and os.environ.get("RAY_GCS_SERVER_PORT") != port
