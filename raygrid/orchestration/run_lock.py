"""One `raygrid run` of a grid per output folder at a time: a lock file that names its holder.

Two runs of one grid on one `--out` would both see the same cells as pending and train each of
them twice. The lock is `<out>/.locks/<grid>.lock` holding the holder's pid, host and start time.
A lock left by a process that died (SIGKILL, power loss) on this host is taken over; one held by
a live process, or by another host (whose processes this one cannot see), is refused, naming it.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from raygrid.spec.grid import GridError


def lock_path(out_dir: Path, grid_name: str) -> Path:
    return Path(out_dir) / ".locks" / f"{grid_name}.lock"


@contextlib.contextmanager
def grid_lock(out_dir: Path, grid_name: str, grid_file: str | Path):
    """Hold the grid's lock for the duration of the block, or raise GridError naming the holder."""
    path = lock_path(out_dir, grid_name)
    acquire(path, grid_file)
    try:
        yield path
    finally:
        release(path)


def acquire(path: Path, grid_file: str | Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):  # second try after removing a stale lock
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(mine))
        try:
            os.link(tmp, path)  # atomic, and the lock never exists without its holder's details
            return
        except FileExistsError:
            holder = _read(path)
            if not _is_stale(holder):
                raise GridError(f"{grid_file}: grid is already running under this --out (pid {holder.get('pid')} "
                                f"on {holder.get('host')} since {holder.get('since')}); wait for it to end, or "
                                f"delete {path} if that process is gone") from None
            path.unlink(missing_ok=True)
        finally:
            tmp.unlink(missing_ok=True)
    raise GridError(f"{grid_file}: could not take the run lock {path}; another raygrid run is starting")


def release(path: Path) -> None:
    """Remove the lock if this process holds it."""
    if _read(path).get("pid") == os.getpid() and _read(path).get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _is_stale(holder: dict) -> bool:
    """A lock whose holder is gone: a dead pid on this host (other hosts' pids cannot be checked)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False
