"""Faults injected into real grids (local Ray, MLflow on SQLite), judged by MLflow's final state.

Each test leaves no run RUNNING and no cell trained twice. Helpers: tests/integration/faults.py.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raygrid.cli import main
from raygrid.orchestration.interrupts import INTERRUPTED, ORPHANED
from tests.conftest import tiny_grid_yaml
from tests.integration.faults import Runs, kill, start_run, train_worker_pids, wait_for

pytestmark = pytest.mark.integration
RESOURCES = "resources: {cpus_per_worker: 0.8}"


def write_grid(folder: Path, checkpoint: Path, name: str, axes: str, resources: str = "", epochs: int = 2,
               train_rows: int = 32) -> Path:
    text = tiny_grid_yaml(checkpoint, axes=axes, name=name).replace("epochs: 2", f"epochs: {epochs}")
    text = text.replace("limit: {train: 32", f"limit: {{train: {train_rows}")
    grid = folder / f"{name}.yaml"
    grid.write_text(text.replace(RESOURCES, f"resources: {{cpus_per_worker: 0.8{resources}}}"))
    return grid


def run_args(grid: Path, folder: Path) -> list[str]:
    return [str(grid), "--out", str(folder / "out"), "--cache-dir", str(folder / "cache")]


def uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'out' / 'mlflow.db'}"


def checkpoints(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / "out" / "ray" / "train").glob("cell-*/checkpoint_*") if p.is_dir())


def test_a_killed_train_worker_resumes_from_its_checkpoint(ray_local, tiny_checkpoint, tmp_path):
    """SIGKILL of the Train worker after its first checkpoint; max_failures: 2 restarts it from there."""
    grid = write_grid(tmp_path, tiny_checkpoint, "worker-kill", "  seed: [0]\n", ", max_failures: 2", epochs=4,
                      train_rows=96)
    killed = []

    def kill_a_worker():
        for pid in train_worker_pids():
            try:
                kill(pid)
                return pid
            except ProcessLookupError:  # ended between the listing and the kill
                continue
        return None

    def killer():
        wait_for(lambda: checkpoints(tmp_path), 600, "the first epoch's checkpoint", every=0.05)
        killed.append(wait_for(kill_a_worker, 30, "a Train worker process to kill", every=0.05))

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    assert main(["run", *run_args(grid, tmp_path)]) == 0
    thread.join(timeout=5)
    assert killed, "the worker was never killed"
    runs = Runs(uri(tmp_path), "worker-kill")
    assert runs.by_status() == {"FINISHED": ["seed=0"]}  # one run, resumed, not a second one
    run = runs.cells()[0]
    steps = sorted({m.step for m in runs.client.get_metric_history(run.info.run_id, "val_loss")})
    assert steps == [0, 1, 2, 3] and "test_f1_macro" in run.data.metrics
    assert checkpoints(tmp_path) == []  # finished: resume state deleted (resources.keep_checkpoints: false)


def test_a_killed_run_is_closed_and_completed_by_the_same_command(ray_local, tiny_checkpoint, tmp_path, capsys):
    """SIGKILL of `raygrid run` mid-grid; a damaged cache entry on top; then the same command again."""
    grid = write_grid(tmp_path, tiny_checkpoint, "run-kill", "  seed: [0, 1]\n", ", max_concurrent_trials: 1")
    runs = Runs(uri(tmp_path), "run-kill")  # first: the store exists before the run starts
    proc = start_run(run_args(grid, tmp_path), tmp_path / "logs")
    try:
        wait_for(lambda: "FINISHED" in runs.by_status() and "RUNNING" in runs.by_status(), 600,
                 "one cell finished and the next running")
    finally:
        proc.kill()
        proc.wait()
    before = runs.by_status()
    first_done = {r.data.tags["raygrid.cell"]: r.info.run_id for r in runs.cells() if r.info.status == "FINISHED"}
    assert before["RUNNING"] and runs.parent().info.status == "RUNNING"  # what a kill leaves behind
    # The cache damaged while nobody ran: the rerun must notice and rebuild it.
    train_file = next((tmp_path / "cache" / "tokenized").glob("*/train.parquet"))
    train_file.write_bytes(train_file.read_bytes()[:200])

    with pytest.warns(UserWarning, match="damaged cache entry"):
        assert main(["run", *run_args(grid, tmp_path)]) == 0
    after = runs.by_status()
    assert after["FINISHED"] == ["seed=0", "seed=1"] and "RUNNING" not in after  # each cell finished once
    # The cell the kill cut short resumed in its own run when Train had checkpointed it (test_store_faults
    # checks that path in detail); killed before its first checkpoint, it was closed and run anew.
    if after.get("KILLED"):
        assert after["KILLED"] == before["RUNNING"]
        assert next(r for r in runs.cells() if r.info.status == "KILLED").data.tags["raygrid.error"] == ORPHANED
    for name, run_id in first_done.items():  # finished before the kill: skipped, not retrained
        assert [r.info.run_id for r in runs.cells() if r.data.tags["raygrid.cell"] == name] == [run_id]
    assert runs.parent().info.status == "FINISHED"
    assert not (tmp_path / "out" / ".locks" / "run-kill.lock").exists()
    assert checkpoints(tmp_path) == []
    capsys.readouterr()
    assert main(["report", str(grid), "--out", str(tmp_path / "out"), "--format", "csv"]) == 0
    rows = capsys.readouterr().out.split("# cells\n", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    assert sorted(row.split(",")[:2] for row in rows) == [["seed=0", "FINISHED"], ["seed=1", "FINISHED"]]


def test_ctrl_c_stops_within_seconds_and_records_the_interruption(ray_local, tiny_checkpoint, tmp_path):
    grid = write_grid(tmp_path, tiny_checkpoint, "ctrl-c", "  seed: [0, 1]\n", ", max_concurrent_trials: 1",
                      epochs=50)
    runs = Runs(uri(tmp_path), "ctrl-c")  # first: the store exists before the run starts
    proc = start_run(run_args(grid, tmp_path), tmp_path / "logs")
    try:
        wait_for(lambda: any(runs.epochs_logged(r) for r in runs.cells()), 600, "a cell's first epoch")
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        stopped_in = time.monotonic() - start
    finally:
        proc.kill()
    stderr = (tmp_path / "logs" / "stderr.txt").read_text()
    assert code == 130 and stopped_in < 30
    assert "Rerun the same command to continue" in stderr and "Tuner.restore" not in stderr
    assert runs.by_status() == {"KILLED": ["seed=0"]}  # seed=1 never started: nothing recorded for it
    assert runs.cells()[0].data.tags["raygrid.error"] == INTERRUPTED
    assert runs.parent().info.status == "KILLED"
    assert not (tmp_path / "out" / ".locks" / "ctrl-c.lock").exists()


def write_one_class_data(folder: Path) -> Path:
    folder.mkdir()
    for split in ("train", "validation", "test"):
        pq.write_table(pa.table({"text": [f"document {i}" for i in range(8)], "label": [0] * 8}),
                       folder / f"{split}.parquet")
    return folder


def test_refusals_before_launch_record_and_start_nothing(ray_local, tiny_checkpoint, tmp_path, capsys):
    """A busy grid (lock held by a live process), one-class training data, n_freeze beyond the layers."""
    one_class = write_one_class_data(tmp_path / "one-class")
    (tmp_path / "classes.yaml").write_text(tiny_grid_yaml(tiny_checkpoint, data_path=one_class, name="classes"))
    write_grid(tmp_path, tiny_checkpoint, "freeze", "  model.n_freeze: [0, 3]\n")
    write_grid(tmp_path, tiny_checkpoint, "busy", "  seed: [0]\n")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    lock = tmp_path / "out" / ".locks" / "busy.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "since": "2026-11-29 23:00:00"}))
    expected = {
        "busy": f"grid is already running under this --out (pid {holder.pid} on {socket.gethostname()}",
        "classes": f"{one_class / 'train.parquet'}: column 'label': the training split holds 1 class(es)",
        "freeze": "model.n_freeze: 3 is more than the checkpoint's 2 layers (cell n_freeze=3)",
    }
    try:
        for name, message in expected.items():
            capsys.readouterr()
            assert main(["run", *run_args(tmp_path / f"{name}.yaml", tmp_path)]) == 2, name
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and str(tmp_path / f"{name}.yaml") in err and message in err, err
            assert Runs(uri(tmp_path), name).parent() is None  # nothing recorded
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "out" / "ray").exists()  # no trial started
