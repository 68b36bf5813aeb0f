"""raygrid on an autoscaling Ray cluster, on this one machine (Ray's fake multi-node provider).

The README's Ray Job on a token-protected two-node cluster, with stage weights through shared storage
and an MLflow tracking server: tests/integration/test_stage_chain.py. Each test starts and stops its
own Ray processes (tests/integration/local_cluster.py).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, tiny_grid_yaml
from tests.integration.local_cluster import RayHead, auth_env

pytestmark = pytest.mark.integration


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
