"""In-epoch progress from each cell's rank-0 worker to the `raygrid run` process, beside Tune.

Why not `ray.train.report`: in Ray Train V2 it is collective. Every worker must call it the same
number of times (it syncs a checkpoint folder name across ranks through a barrier: see
ray/train/v2/_internal/execution/context.py, `report`), and each call reaches Tune as a trial
result. The throttle (raygrid.training.progress) decides on rank 0's clock; making every rank
agree on when would cost a collective and a host sync per step, and reporting on a fixed step
schedule would be either too chatty or silent for minutes depending on the cell's speed.

So rank 0 alone sends its throttled progress out of band, fire-and-forget (no wait in the training
loop), to a small named actor this run creates (the inbox). A Tune callback in the driver drains
the inbox about once a second from Tune's event loop, and before each trial result, and hands each
report to the callbacks that record it in MLflow (MlflowCells) and print it (CellLines). Progress
is informative only: a report lost or late (a worker restarted, the inbox gone) changes no result.
"""
from __future__ import annotations

import os
import time
from typing import Callable

import ray
import ray.tune

from raygrid.training.progress import DEFAULT_INTERVAL_S, ProgressFigures, ProgressThrottle
from raygrid.training.reports import PROGRESS, CellReport

INBOX = "raygrid-progress"  # named in the run's own Ray namespace: its trials' workers find it, no one else
INTERVAL_ENV = "RAYGRID_PROGRESS_S"  # seconds between a cell's progress lines (tests shrink it)
POLL_S = 1.0  # how often the driver drains the inbox (at most)
_HELD: dict = {}  # this process's handles on the inbox in its current Ray job, across Tuners (see ProgressRelay.setup)


@ray.remote(num_cpus=0)
class _Inbox:
    """Progress reports waiting for the driver, and the interval the workers throttle to."""

    def __init__(self, interval_s: float):
        self.interval, self.waiting = interval_s, []

    def interval_s(self) -> float:
        return self.interval

    def reset(self, interval_s: float) -> None:
        """A new Tuner: its interval (a later run in the same Ray job may set another), nothing left waiting."""
        self.interval, self.waiting = interval_s, []

    def put(self, cell: str, wire: dict) -> None:
        self.waiting.append((cell, wire))

    def drain(self) -> list[tuple[str, dict]]:
        waiting, self.waiting = self.waiting, []
        return waiting


def progress_interval_s() -> float:
    """$RAYGRID_PROGRESS_S (default 30), read in the driver; a bad value is refused naming the variable."""
    text = os.environ.get(INTERVAL_ENV, "")
    try:
        value = float(text) if text else DEFAULT_INTERVAL_S
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"${INTERVAL_ENV}: {text!r} is not a positive number of seconds")
    return value


def progress_sender(cell: str) -> Callable[[int, int, int, float], None] | None:
    """On a cell's rank-0 worker: fit's `on_progress` hook, throttled, sending to the run's inbox.

    None when the run has no inbox (e.g. a trial started by other means): the cell trains without it.
    """
    try:
        inbox = ray.get_actor(INBOX)
    except ValueError:
        return None
    interval = ray.get(inbox.interval_s.remote())

    def send(figures: ProgressFigures) -> None:
        inbox.put.remote(cell, CellReport(PROGRESS, figures.metrics(), step=figures.step).to_wire())

    return ProgressThrottle(send, interval)


class ProgressRelay(ray.tune.Callback):
    """Creates the inbox when the Tuner starts; drains it from Tune's loop into each listener's
    `on_progress(cell name, CellReport)`."""

    def __init__(self, listeners: list, interval_s: float | None = None):
        self.listeners = listeners
        self.interval_s = interval_s if interval_s is not None else progress_interval_s()
        self._inbox, self._polled = None, 0.0
        self._poll_s = min(POLL_S, max(0.1, self.interval_s))  # tests shrink the interval: poll sooner too

    def __getstate__(self) -> dict:
        # Tune pickles callbacks into its experiment state; the actor handle stays with this process.
        return {**self.__dict__, "_inbox": None}

    def setup(self, **info):
        # Not detached: it ends with this run's Ray job. A second Tuner (the next stage) reuses it.
        self._inbox = _Inbox.options(name=INBOX, get_if_exists=True).remote(self.interval_s)
        # Held by the process for its Ray job: a non-detached actor dies when its creator's handle
        # goes (a handle found by name does not keep it), and the Tuner drops its callbacks when it
        # ends, so the next stage's get_if_exists found a dying inbox and its reset failed
        # (ActorDiedError) when stages followed each other quickly.
        job = ray.get_runtime_context().get_job_id()
        if _HELD.get("job") != job:
            _HELD.clear()
            _HELD.update(job=job, handles=[])
        _HELD["handles"].append(self._inbox)
        ray.get(self._inbox.reset.remote(self.interval_s))  # before any trial starts and asks for it

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self._polled >= self._poll_s:
            self._drain()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._drain()  # listed first: progress sent before this result is delivered before it

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._drain()

    def _drain(self) -> None:
        if self._inbox is None:
            return
        self._polled = time.monotonic()
        try:
            waiting = ray.get(self._inbox.drain.remote(), timeout=10)
        except ray.exceptions.GetTimeoutError:  # a busy driver node: try again at the next poll
            return
        self.deliver(waiting)

    def deliver(self, waiting: list[tuple[str, dict]]) -> None:
        for cell, wire in waiting:
            report = CellReport.from_wire(wire)
            if report is not None:
                for listener in self.listeners:
                    listener.on_progress(cell, report)
