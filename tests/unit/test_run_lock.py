"""One `raygrid run` per grid and --out: a live holder is refused by name, a dead one's lock is taken over."""
import json
import os
import socket
import subprocess
import sys

import pytest

from raygrid.spec.grid import GridError
from raygrid.orchestration.run_lock import grid_lock, lock_path


def hold(path, pid, host=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "since": "2026-11-29 10:00:00"}))


def test_the_lock_names_its_holder_and_is_released(tmp_path):
    with grid_lock(tmp_path, "g", "g.yaml") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
        assert [p.name for p in path.parent.iterdir()] == ["g.lock"]  # no temporary leftovers
    assert not path.exists()


def test_a_live_holder_is_refused_naming_pid_and_host(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        hold(lock_path(tmp_path, "g"), sleeper.pid)
        with pytest.raises(GridError) as err:
            with grid_lock(tmp_path, "g", "grids/g.yaml"):
                pass
        message = str(err.value)
        assert message.startswith("grids/g.yaml: grid is already running")
        assert f"pid {sleeper.pid} on {socket.gethostname()}" in message and "\n" not in message
        assert json.loads(lock_path(tmp_path, "g").read_text())["pid"] == sleeper.pid  # untouched
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_dead_holders_lock_is_taken_over(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    hold(lock_path(tmp_path, "g"), int(gone.stdout))
    with grid_lock(tmp_path, "g", "g.yaml") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_holder_on_another_host_is_refused(tmp_path):
    hold(lock_path(tmp_path, "g"), 1, host="some-other-node")
    with pytest.raises(GridError, match="pid 1 on some-other-node"):
        with grid_lock(tmp_path, "g", "g.yaml"):
            pass


def test_other_grids_do_not_share_the_lock(tmp_path):
    with grid_lock(tmp_path, "a", "a.yaml"), grid_lock(tmp_path, "b", "b.yaml") as b:
        assert b.name == "b.lock"
