"""Fault injection for integration tests: a `raygrid run` in its own process, killing Ray Train workers,
and reading MLflow's final state. Reusable by later cluster tests (autoscaling, node loss).

`start_run` joins the Ray cluster of the test process (RAY_ADDRESS), as `ray job submit` would on a
cluster: no second cluster on a 2-core machine, and the driver's death frees its trials as it would there.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from mlflow.tracking import MlflowClient

from tests.conftest import REPO


def start_run(args: list[str], logs: Path) -> subprocess.Popen:
    """`raygrid run ARGS` in a new process attached to this process's Ray cluster; output in logs/*.txt."""
    import ray

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "PYTHONPATH": str(REPO)}
    logs.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "raygrid.cli", "run", *args], cwd=REPO, env=env,
                            stdout=open(logs / "stdout.txt", "w"), stderr=open(logs / "stderr.txt", "w"))


def wait_for(condition, timeout: float, what: str, every: float = 0.5):
    """Poll until condition() is truthy (returned), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def train_worker_pids() -> list[int]:
    """Ray Train worker processes of the Ray cluster this process started (its raylet's children).

    Only descendants of this process: on a shared machine other users' Train workers look the same.
    """
    pids = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if " ".join(proc.cmdline()).startswith("ray::RayTrainWorker"):
                pids.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # ended while we looked
            continue
    return pids


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    os.kill(pid, sig)


class Runs:
    """MLflow's view of one grid: its parent run and cell runs (every run, superseded ones too)."""

    def __init__(self, uri: str, grid_name: str):
        """Create the store's tables now: build this before `start_run`, as MLflow's SQLite schema setup is
        not safe against a second process doing it at the same moment (CircularDependencyError)."""
        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.client, self.grid_name = MlflowClient(uri), grid_name
        self.client.search_experiments(max_results=1)

    def _search(self, role: str) -> list:
        experiment = self.client.get_experiment_by_name(self.grid_name)
        if experiment is None:
            return []
        return self.client.search_runs([experiment.experiment_id], f"tags.`raygrid.role` = '{role}'")

    def cells(self) -> list:
        return self._search("cell")

    def parent(self):
        parents = self._search("parent")
        return parents[0] if parents else None

    def by_status(self) -> dict[str, list[str]]:
        """status -> cell names (one entry per run)."""
        found: dict[str, list[str]] = {}
        for run in self.cells():
            found.setdefault(run.info.status, []).append(run.data.tags["raygrid.cell"])
        return {status: sorted(names) for status, names in found.items()}

    def epochs_logged(self, run) -> int:
        return len(self.client.get_metric_history(run.info.run_id, "val_loss"))
