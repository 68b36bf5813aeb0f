"""One tracking store, faults around it: two runs sharing it, a store locked past the back-off, a dead
tracking server, a `raygrid run` SIGKILLed mid-epoch and rerun. Helpers: tests/integration/faults.py.
"""
from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path

import pytest

from raygrid.cli import main
from tests.integration.faults import Runs, start_run, wait_for
from tests.integration.test_faults import checkpoints, run_args, uri, write_grid

pytestmark = pytest.mark.integration


def val_loss_steps(runs: Runs, run) -> list[int]:
    """Every val_loss entry's step, duplicates kept: an epoch trained twice shows twice."""
    return sorted(m.step for m in runs.client.get_metric_history(run.info.run_id, "val_loss"))


def resume_state_files(folder: Path) -> list[Path]:
    return sorted((folder / "out" / "ray").rglob("state.pt"))


def test_a_run_killed_mid_epoch_resumes_its_cell_from_the_checkpoint(ray_local, tiny_checkpoint, tmp_path, capsys):
    grid = write_grid(tmp_path, tiny_checkpoint, "resume", "  seed: [0]\n", epochs=4, train_rows=96)
    runs = Runs(uri(tmp_path), "resume")
    proc = start_run(run_args(grid, tmp_path), tmp_path / "logs")
    try:
        wait_for(lambda: checkpoints(tmp_path) and any(runs.epochs_logged(r) for r in runs.cells()), 600,
                 "the first epoch's checkpoint and metrics")
    finally:
        proc.kill()  # SIGKILL: nothing is closed, the trial dies with its driver
        proc.wait()
    killed = runs.cells()[0]
    done_before = val_loss_steps(runs, killed)
    assert killed.info.status == "RUNNING" and done_before and max(done_before) < 3
    capsys.readouterr()
    assert main(["run", *run_args(grid, tmp_path)]) == 0
    assert "resuming 1 cell(s)" in capsys.readouterr().out
    [run] = runs.cells()  # the same run, reopened: one cell, one history
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert val_loss_steps(runs, run) == [0, 1, 2, 3]  # no epoch trained (or logged) twice
    assert "raygrid.error" not in run.data.tags and "test_f1_macro" in run.data.metrics
    # disk as a clean run leaves it: the resume state is gone, one Train run folder for the one cell
    assert checkpoints(tmp_path) == [] and resume_state_files(tmp_path) == []
    assert len(list((tmp_path / "out" / "ray" / "train").iterdir())) == 1
    tune = tmp_path / "out" / "ray" / "resume"  # Tune's folder: the rerun's trial only, not the killed one's too
    assert len([p for p in tune.iterdir() if p.is_dir()]) == 1 and len(list(tune.glob("experiment_state-*"))) == 1


def test_two_runs_sharing_one_store_train_each_cell_once(ray_local, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    """A second `raygrid run` of the same grid, another --out, the same store: it leaves the first's cells alone."""
    grid = write_grid(tmp_path, tiny_checkpoint, "shared", "  seed: [0, 1]\n", ", max_concurrent_trials: 1")
    store = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    runs = Runs(store, "shared")
    first = start_run(run_args(grid, tmp_path), tmp_path / "logs")
    try:
        wait_for(lambda: "RUNNING" in runs.by_status(), 600, "the first run's first cell")
        capsys.readouterr()
        started = time.monotonic()
        assert main(["run", str(grid), "--out", str(tmp_path / "out2"), "--cache-dir", str(tmp_path / "cache")]) == 0
        out = capsys.readouterr().out
        assert time.monotonic() - started < 60
        assert "leaving 2 cell(s) to the run(s) training them elsewhere" in out, out
        assert f"pid {first.pid} on {socket.gethostname()}" in out
        assert "KILLED" not in str(runs.by_status())
        assert first.wait(timeout=600) == 0
    finally:
        first.kill()
        first.wait()
    assert runs.by_status() == {"FINISHED": ["seed=0", "seed=1"]}  # each once, no false KILLED
    assert runs.parent().info.status == "FINISHED"
    assert not (tmp_path / "out2" / "ray").exists()  # the second run trained nothing


def test_a_store_locked_past_the_back_off_loses_nothing(ray_local, tiny_checkpoint, tmp_path, monkeypatch):
    """Another writer holds the SQLite store for 40 s mid-run (back-off: 2 s): the writes are spooled, then written."""
    grid = write_grid(tmp_path, tiny_checkpoint, "locked", "  seed: [0]\n", epochs=4, train_rows=96)
    runs = Runs(uri(tmp_path), "locked")
    monkeypatch.setenv("RAYGRID_STORE_RETRY_S", "2")
    proc = start_run(run_args(grid, tmp_path), tmp_path / "logs")
    try:
        wait_for(lambda: any(runs.epochs_logged(r) for r in runs.cells()), 600, "the cell's first epoch")
        holder = sqlite3.connect(tmp_path / "out" / "mlflow.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # a writer that keeps the store: MLflow waits 20 s a try
        try:
            spool = tmp_path / "out" / "mlflow-spool.jsonl"
            wait_for(spool.exists, 120, "a write spooled while the store is locked")
            time.sleep(20)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert proc.wait(timeout=600) == 0
    finally:
        proc.kill()
        proc.wait()
    stdout = (tmp_path / "logs" / "stdout.txt").read_text()
    assert "is unavailable" in stdout and "mlflow-spool.jsonl" in stdout
    # what was still spooled when the run ended (if the lock outlasted it) is written by the next report
    assert main(["report", str(grid), "--out", str(tmp_path / "out"), "--format", "csv"]) == 0
    [run] = runs.cells()
    assert run.info.status == "FINISHED" and val_loss_steps(runs, run) == [0, 1, 2, 3]
    assert "test_f1_macro" in run.data.metrics and runs.parent().info.status == "FINISHED"
    assert not (tmp_path / "out" / "mlflow-spool.jsonl").exists()  # all written


def test_an_unreachable_tracking_server_is_one_line_before_ray(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    grid = write_grid(tmp_path, tiny_checkpoint, "no-server", "  seed: [0]\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens there once the socket closes
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    assert main(["run", *run_args(grid, tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert time.monotonic() - started < 15
    assert len(err.splitlines()) == 1 and f"http://127.0.0.1:{port}: the tracking server does not answer" in err
    assert not (tmp_path / "out" / "ray").exists()
