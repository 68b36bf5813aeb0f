"""Who owns a cell run on a shared tracking store: a `raygrid run` (its id, host, pid) and its heartbeat.

Several `raygrid run`s may write to one MLflow store (other `--out` folders, other people, other
hosts). Each stamps the runs it opens with these tags and refreshes the heartbeat every
HEARTBEAT_S from a thread. Another run then never closes or retrains a cell whose owner is alive:
on the owner's own host the pid answers exactly (a dead pid is dead at once, so a rerun right after
a SIGKILL resumes without waiting); from another host only the heartbeat can, and it is stale after
STALE_S (RAYGRID_HEARTBEAT_STALE_S), long enough to ride out a store locked for its whole back-off.
A run without owner tags (written by an older raygrid) counts as dead, as every orphan did before.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import psutil

TAG_OWNER_RUN, TAG_OWNER_HOST = "raygrid.owner.run", "raygrid.owner.host"
TAG_OWNER_PID, TAG_HEARTBEAT = "raygrid.owner.pid", "raygrid.owner.heartbeat"
HEARTBEAT_S = 30.0


def stale_after_s() -> float:
    return float(os.environ.get("RAYGRID_HEARTBEAT_STALE_S", 180))


@dataclass(frozen=True)
class Owner:
    """One `raygrid run` process: a fresh id per invocation, its host and pid, its latest heartbeat."""

    run: str
    host: str
    pid: int
    heartbeat: float = 0.0

    @classmethod
    def me(cls) -> Owner:
        return cls(uuid.uuid4().hex[:12], socket.gethostname(), os.getpid(), time.time())

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Owner | None:
        try:
            return cls(tags[TAG_OWNER_RUN], tags[TAG_OWNER_HOST], int(tags[TAG_OWNER_PID]),
                       float(tags.get(TAG_HEARTBEAT, 0)))
        except (KeyError, ValueError):
            return None

    def tags(self, now: float | None = None) -> dict[str, str]:
        return {TAG_OWNER_RUN: self.run, TAG_OWNER_HOST: self.host, TAG_OWNER_PID: str(self.pid),
                TAG_HEARTBEAT: f"{time.time() if now is None else now:.0f}"}

    def describe(self) -> str:
        return f"raygrid run {self.run} (pid {self.pid} on {self.host})"


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's live process
        return True


def owner_alive(owner: Owner | None, now: float, host: str | None = None,
                alive: Callable[[int], bool] = pid_alive, stale_s: float | None = None) -> bool:
    """Whether `owner` may still be writing: its pid on this host, else a heartbeat younger than stale_s."""
    if owner is None:
        return False
    if owner.host == (host or socket.gethostname()):
        return alive(owner.pid)
    return now - owner.heartbeat < (stale_after_s() if stale_s is None else stale_s)


class Heartbeat:
    """Calls `beat()` every `every` seconds from a daemon thread until stopped; a failing beat is retried next time."""

    def __init__(self, beat: Callable[[], None], every: float = HEARTBEAT_S):
        self.beat, self.every = beat, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="raygrid-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.beat()
            except Exception:  # the store is busy or gone: the writes' own retries and spool handle it
                continue
