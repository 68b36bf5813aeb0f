"""raygrid on real multi-node Ray, on this one machine: an autoscaling cluster (Ray's fake multi-node
provider), and a Ray Job submitted exactly as the README says to a token-protected two-node cluster,
passing stage weights through shared storage and logging to an MLflow tracking server over HTTP.

Each test starts and stops its own Ray processes (tests/integration/local_cluster.py).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from raygrid.cli import main
from tests.conftest import REPO, tiny_grid_yaml
from tests.integration.local_cluster import BIN, RayHead, auth_env

pytestmark = pytest.mark.integration

EPOCH_METRICS = {"train_loss", "val_loss", "val_f1_macro", "val_accuracy", "epoch_time_s", "lr"}
CELL_METRICS = {"test_f1_macro", "test_accuracy", "best_val_f1_macro", "train_time_s", "tokens_per_s",
                "peak_gpu_mem_mb", "peak_host_mem_mb"}
SECRET = "raygrid-dummy-secret-7f3a"


def cell_runs(uri: str, grid: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(grid)
    return [] if experiment is None else client.search_runs([experiment.experiment_id], "tags.`raygrid.role` = 'cell'")


def most_at_once(runs) -> int:
    """The largest number of runs that were running at the same moment."""
    events = sorted([(r.info.start_time, 1) for r in runs] + [(r.info.end_time, -1) for r in runs])
    now = best = 0
    for _, change in events:
        now += change
        best = max(best, now)
    return best


def own_lines(output: str) -> str:
    """What raygrid itself printed: Ray prefixes its actors' and workers' lines with `(… pid=…)`."""
    return "\n".join(line for line in output.splitlines() if "pid=" not in line and line.strip())[-3000:]


def raygrid(args: list[str], head: RayHead, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """`RAY_ADDRESS=<head> raygrid ...` in its own process, as a user runs it on a cluster node (and
    no Ray client state is shared with the other tests of this process)."""
    env = {**os.environ, **auth_env(head.token), "RAY_ADDRESS": head.address, **(extra_env or {})}
    if head.config_path:
        env["RAYGRID_AUTOSCALING_CONFIG"] = str(head.config_path)
    return subprocess.run([sys.executable, "-m", "raygrid.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1800)


def test_autoscaling_cluster_runs_trials_side_by_side_and_refuses_what_no_node_holds(tiny_checkpoint, tmp_path):
    # The head has no CPU for workers; nodes of 1 CPU are added on demand, at most two.
    head = RayHead(tmp_path / "head", cpus=0, autoscaling={
        "head": {"CPU": 0}, "worker_types": {"cpu1": {"resources": {"CPU": 1}, "min_workers": 0, "max_workers": 2}},
        "idle_timeout_minutes": 0.25})
    try:
        grid = tmp_path / "auto.yaml"
        out, cache = tmp_path / "out", tmp_path / "cache"
        run = ["run", str(grid), "--out", str(out), "--cache-dir", str(cache)]
        # More CPU per worker than any node type has (the refusal of `use_gpu` without GPU nodes: test_placement).
        grid.write_text(tiny_grid_yaml(tiny_checkpoint, name="auto").replace("cpus_per_worker: 0.8", "cpus_per_worker: 4"))
        refused = raygrid(run, head)
        assert refused.returncode == 2 and "auto.yaml: resources.cpus_per_worker: " in refused.stderr
        assert cell_runs(f"sqlite:///{out / 'mlflow.db'}", "auto") == []  # refused before anything was recorded

        axes = "  model.pooling: [cls, mean]\n  seed: [0, 1]\n"
        grid.write_text(tiny_grid_yaml(tiny_checkpoint, axes=axes, name="auto").replace("epochs: 2", "epochs: 1"))
        done = raygrid(run, head)
        assert done.returncode == 0, own_lines(done.stderr)
        # The grid has drained: nothing holds the added nodes, and the autoscaler removes them.
        drained = head.wait_for_worker_nodes(0, timeout=120)
    finally:
        head.stop()
    runs = cell_runs(f"sqlite:///{out / 'mlflow.db'}", "auto")
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    concurrency = most_at_once(runs)
    print(f"autoscaling: 4 cells, at most {concurrency} at once, on {len({r.data.tags['raygrid.node'] for r in runs})} "
          f"nodes, {(max(r.info.end_time for r in runs) - min(r.info.start_time for r in runs)) / 1000:.0f} s")
    assert concurrency >= 2
    assert len({r.data.tags["raygrid.node"] for r in runs}) >= 2  # autoscaled nodes (several) took the trials
    assert drained == 0, f"{drained} worker nodes still up 2 min after the grid finished"


CHAIN = """
name: chain2
base:
  data: {{dataset: hyperpartisan, path: {sample}, max_len: 64, limit: {{train: 24, validation: 8, test: 8}}}}
  model: {{checkpoint: {checkpoint}, pooling: cls}}
  optim: {{lr: 1.0e-3, epochs: 1, batch_size: 8}}
stages:
  - {{name: tapt, base: {{kind: mlm}}}}
  - {{name: ft, init: tapt, axes: {{model.pooling: [cls, mean]}}}}
resources: {{cpus_per_worker: 1.5}}
"""


def test_a_ray_job_on_two_nodes_chains_stages_through_shared_storage_and_logs_to_a_tracking_server(
        tiny_checkpoint, mlflow_server, tmp_path):
    """The README's `ray job submit ... -- raygrid run ... --storage ...` on a two-node cluster with token
    auth: stage weights pass through shared storage, MLflow is a server over HTTP, no secret leaks."""
    from tests.conftest import SAMPLE

    server = mlflow_server
    token = "raygrid-test-token-" + os.urandom(8).hex()
    head = RayHead(tmp_path / "head", cpus=2, dashboard=True, token=token)
    try:
        head.add_worker(cpus=2)
        deadline = time.time() + 300
        while "Ray runtime started" not in (tmp_path / "head" / "worker0.log").read_text():
            assert time.time() < deadline, "the second node never joined"
            time.sleep(1)
        project = tmp_path / "project"  # the job's --working-dir: the user's folder with grids/
        (project / "grids").mkdir(parents=True)
        (project / "grids" / "chain2.yaml").write_text(CHAIN.format(sample=SAMPLE, checkpoint=tiny_checkpoint))
        shared = tmp_path / "shared"  # stands for storage every node mounts (here: the same disk), or s3://
        run = ["run", "grids/chain2.yaml", "--out", str(shared / "runs"), "--cache-dir", str(shared / "cache")]
        env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "MLFLOW_TRACKING_URI": server.uri,
               "AWS_SECRET_ACCESS_KEY": SECRET}
        env.pop("RAY_ADDRESS", None)
        submit = [str(BIN / "ray"), "job", "submit", "--address", head.dashboard_url, "--working-dir", str(project),
                  "--runtime-env-json", f'{{"env_vars": {{"MLFLOW_TRACKING_URI": "{server.uri}"}}}}', "--",
                  "raygrid", *run, "--storage", str(shared / "storage")]
        stranger = subprocess.run(submit, env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "wrong-token"},
                                  capture_output=True, text=True, timeout=300)
        assert stranger.returncode != 0 and not shared.exists()  # without the cluster's token: no job
        # Two nodes, stages, no --storage: refused before anything starts or is recorded.
        refused = subprocess.run([sys.executable, "-m", "raygrid.cli", *run], cwd=project, capture_output=True,
                                 text=True, timeout=600, env={**env, **auth_env(token), "RAY_ADDRESS": head.address})
        assert refused.returncode == 2 and "2 Ray nodes but no shared storage" in refused.stderr, refused.stderr[-2000:]
        assert cell_runs(server.uri, "chain2") == []
        job = subprocess.run(submit, env={**env, **auth_env(token)}, capture_output=True, text=True, timeout=900)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        runs = {r.data.tags["raygrid.cell"]: r for r in cell_runs(server.uri, "chain2")}
        assert {cell: r.info.status for cell, r in runs.items()} == \
            {"tapt/base": "FINISHED", "ft/pooling=cls": "FINISHED", "ft/pooling=mean": "FINISHED"}
        client = MlflowClient(server.uri)
        tapt, fine_tuned = runs["tapt/base"], [runs["ft/pooling=cls"], runs["ft/pooling=mean"]]
        for run_ in fine_tuned:  # every metric of every epoch arrived over HTTP, from trials running side by side
            assert CELL_METRICS | EPOCH_METRICS <= set(run_.data.metrics)
            assert [m.step for m in client.get_metric_history(run_.info.run_id, "val_f1_macro")] == [0]
        parent = client.get_run(tapt.data.tags["mlflow.parentRunId"])
        assert "grid.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}
        os.environ["MLFLOW_TRACKING_URI"] = server.uri
        try:
            assert main(["report", str(shared / "runs")]) == 0
        finally:
            del os.environ["MLFLOW_TRACKING_URI"]
    finally:
        head.stop()
    exported = Path(tapt.data.tags["raygrid.checkpoint"])
    assert exported.is_relative_to(shared / "storage") and (exported / "config.json").is_file()
    assert all(r.data.tags["raygrid.weights_in"] == tapt.data.tags["raygrid.weights_out"] for r in fine_tuned)
    # Both nodes trained (a 2-CPU node holds one 1.5-CPU worker), so one of them read the
    # tokenized cache and the parent's weights that the other node (or the driver) wrote.
    assert len({r.data.tags["raygrid.node"] for r in fine_tuned}) == 2
    # raygrid records no environment: the dummy secret is nowhere in MLflow or the run folders.
    for path in [*server.root.rglob("*"), *shared.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
