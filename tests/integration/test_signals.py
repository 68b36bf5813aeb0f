"""Signals as a cluster sends them to a `raygrid run` after Ray started: SIGTERM (`ray job stop`) and a
repeated Ctrl-C. Each ends with the running cells and the parent KILLED, the shell's exit code, one line.

Helpers: tests/integration/faults.py; the grid writer of tests/integration/test_faults.py.
"""
from __future__ import annotations

import signal
import time

import pytest

from raygrid.orchestration.interrupts import INTERRUPTED
from tests.integration.faults import Runs, start_run, wait_for
from tests.integration.test_faults import run_args, uri, write_grid

pytestmark = pytest.mark.integration


def _interrupt_mid_epoch(tmp_path, tiny_checkpoint, name: str, signals: list[tuple[int, float]]):
    """Run a long one-cell-at-a-time grid, send `signals` (signal, pause after) once a cell has reported an
    epoch; return (exit code, seconds to stop, stderr, Runs)."""
    grid = write_grid(tmp_path, tiny_checkpoint, name, "  seed: [0, 1]\n", ", max_concurrent_trials: 1", epochs=50)
    runs = Runs(uri(tmp_path), name)  # first: the store exists before the run starts
    proc = start_run(run_args(grid, tmp_path), tmp_path / "logs")
    try:
        wait_for(lambda: any(runs.epochs_logged(r) for r in runs.cells()), 600, "a cell's first epoch")
        start = time.monotonic()
        for sig, pause in signals:
            proc.send_signal(sig)
            time.sleep(pause)
        code = proc.wait(timeout=60)
        stopped_in = time.monotonic() - start
    finally:
        proc.kill()
    return code, stopped_in, (tmp_path / "logs" / "stderr.txt").read_text(), runs


def test_sigterm_after_ray_started_records_killed_and_exits_143(ray_local, tiny_checkpoint, tmp_path):
    code, stopped_in, stderr, runs = _interrupt_mid_epoch(tmp_path, tiny_checkpoint, "sigterm",
                                                          [(signal.SIGTERM, 0)])
    assert code == 143, stderr[-2000:]
    assert stopped_in < 30
    assert "raygrid: stopped by SIGTERM" in stderr and "SystemExit" not in stderr
    assert runs.by_status() == {"KILLED": ["seed=0"]}
    assert runs.cells()[0].data.tags["raygrid.error"] == INTERRUPTED
    assert runs.parent().info.status == "KILLED"
    assert not (tmp_path / "out" / ".locks" / "sigterm.lock").exists()


def test_ctrl_c_twice_within_a_second_still_records_the_parent_killed(ray_local, tiny_checkpoint, tmp_path):
    code, stopped_in, stderr, runs = _interrupt_mid_epoch(tmp_path, tiny_checkpoint, "ctrl-c-twice",
                                                          [(signal.SIGINT, 0.1), (signal.SIGINT, 0)])
    assert code == 130, stderr[-2000:]
    assert stopped_in < 30
    assert runs.by_status() == {"KILLED": ["seed=0"]}
    assert runs.parent().info.status == "KILLED"
    assert not (tmp_path / "out" / ".locks" / "ctrl-c-twice.lock").exists()
