"""Temporary folders cache entries are built in, and the removal of those a dead build left behind.

An entry is built in a hidden sibling folder `.<entry>-<random>` (beside it when the cache is
local, so publishing is a rename; in the system's temporary folder when the cache is a URI) and
published whole. A build that fails removes its folder on the way out; a build that is killed
(SIGKILL, a lost node) cannot, so every build first removes the folders of builds that are no
longer running. Each folder holds a marker naming its builder (host, pid, process start time),
touched at every written row group: a folder is stale when its builder is on this host and gone,
or when its marker has not moved for STALE_AFTER_S (a builder on another host sharing the cache).

Those checks used to run only when a new build started beside the dead one, so a killed
tokenization whose entry was never built again (or was built by another process) left its folder
in the cache for good; `sweep` now runs at the start of every `data prepare` and `run`, over the
cache's build folders and raygrid's folders in the system's temporary folder (`scratch_dir`: XML
archives converted for reading, the same marker).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator

MARKER = ".raygrid-build"
STALE_AFTER_S = 24 * 3600  # another host's build whose marker has not moved for a day is dead
URI_PREFIX = "raygrid-entry-"
SCRATCH_PREFIX = "raygrid-source-"  # raygrid.data.sources: converted XML archives while they are read


@contextlib.contextmanager
def build_dir(entry: str, is_uri: bool) -> Iterator[Path]:
    """A fresh folder to build `entry` in; removed if the block raises (the caller publishes it on success)."""
    parent = Path(tempfile.gettempdir()) if is_uri else Path(entry).parent
    parent.mkdir(parents=True, exist_ok=True)
    prefix = URI_PREFIX if is_uri else f".{Path(entry).name}-"
    remove_stale(parent, f"{URI_PREFIX}*" if is_uri else ".*-*")  # the system's temporary folder: ours only
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    _write_marker(folder)
    try:
        yield folder
    except BaseException:  # KeyboardInterrupt and SystemExit too: leave nothing half-built behind
        shutil.rmtree(folder, ignore_errors=True)
        raise


def sweep(root: str, is_uri: bool) -> list[Path]:
    """Remove the folders of dead builds: in the cache (`<root>/tokenized/.<entry>-*`, local caches) and
    raygrid's in the system's temporary folder. Returns what was removed."""
    removed = [] if is_uri else remove_stale(Path(root) / "tokenized", ".*-*")
    system_tmp = Path(tempfile.gettempdir())
    return removed + remove_stale(system_tmp, f"{URI_PREFIX}*") + remove_stale(system_tmp, f"{SCRATCH_PREFIX}*")


@contextlib.contextmanager
def scratch_dir(prefix: str = SCRATCH_PREFIX) -> Iterator[Path]:
    """An empty working folder, removed afterwards; if its process is killed, the next `sweep` removes it.

    The marker sits beside the yielded folder (`<scratch>/work`), so what is written there is all it holds.
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    _write_marker(folder)
    try:
        (folder / "work").mkdir()
        yield folder / "work"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def touch(folder: Path) -> None:
    """Show the build is alive (row groups keep coming)."""
    marker = folder / MARKER
    if marker.exists():
        os.utime(marker)


def unmark(folder: Path) -> None:
    """Drop the marker before publishing: a published entry holds only its own files."""
    (folder / MARKER).unlink(missing_ok=True)


def remove_stale(parent: Path, pattern: str) -> list[Path]:
    """Remove the build folders `parent/<pattern>` whose builder is gone; returns them."""
    removed = []
    for folder in sorted(parent.glob(pattern)):
        if folder.is_dir() and _is_stale(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _write_marker(folder: Path) -> None:
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid())}
    (folder / MARKER).write_text(json.dumps(me))


def _is_stale(folder: Path) -> bool:
    marker = folder / MARKER
    try:
        owner = json.loads(marker.read_text())
        age = time.time() - marker.stat().st_mtime
    except (OSError, ValueError):  # no marker: a folder of an older raygrid, or one killed while starting
        return time.time() - folder.stat().st_mtime > STALE_AFTER_S
    if owner.get("host") != socket.gethostname():
        return age > STALE_AFTER_S
    return _start_time(owner.get("pid", -1)) != owner.get("started")  # gone, or its pid reused


def _start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, ValueError):
        return None
