"""What `raygrid run` prints: one clear view of the grid, with Ray's own output in a log file.

By default (`quiet_console`) the terminal shows raygrid's lines only: per cell `started`, every
~30 s of training its steps done/total, tokens/s and ETA, each epoch's train_loss and validation
score, `finished` with the test score or `failed` with the reason, and after each Tuner a table of
its cells (status, epoch, train_loss, validation score).
Everything else the run prints — Ray's and Tune's config dumps and status boxes, Ray Data
progress bars, the workers' and actors' logs Ray streams to the driver, even what Ray's C++
core writes to stderr — goes to `<out>/logs/ray-<timestamp>.log` (file descriptors 1 and 2 are
redirected, so nothing escapes). `raygrid run --verbose` skips all this: today's full output.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, TextIO

import ray.tune

from raygrid.orchestration.payload import TrialPayload
from raygrid.orchestration.summary import RunSummary
from raygrid.training.progress import ProgressFigures, duration
from raygrid.training.reports import EPOCH, FINAL, CellReport

# The validation score shown per epoch (first present): classification, then MLM.
VAL_SCORES = ("val_f1_macro", "val_loss")
TEST_SCORES = ("test_f1_macro", "final_val_loss")


HEARTBEAT_S = 15.0  # between the heartbeat's lines while nothing else shows that the run is alive
_WRITING = threading.Lock()  # the heartbeat's thread and Tune's callbacks print whole lines, never interleaved


class Console:
    """raygrid's own lines; `log_file` is where everything else went (None: nothing was diverted)."""

    def __init__(self, stream: TextIO | None = None, log_file: Path | None = None):
        self.stream, self.log_file = stream, log_file
        self._heartbeat: Heartbeat | None = None

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state; an open terminal stream (or a thread) cannot be.
        return {"stream": None, "log_file": self.log_file, "_heartbeat": None}

    def line(self, text: str) -> None:
        stream = self.stream or sys.stdout
        with _WRITING:
            stream.write(f"{text}\n")
            stream.flush()

    def heartbeat(self, doing: str) -> None:
        """From now until `stop_heartbeat`, a line every HEARTBEAT_S:
        `still <doing> (<seconds since the first call> s)`."""
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(self)
        self._heartbeat.doing = doing

    def stop_heartbeat(self) -> None:
        """No heartbeat line after this returns (the first trial started, or the run ended)."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None


class Heartbeat:
    """A daemon thread printing what the run is doing while it prints nothing else (data, Ray's start)."""

    def __init__(self, console: Console, interval_s: float = HEARTBEAT_S, clock=time.monotonic):
        self.console, self.interval_s, self.clock = console, interval_s, clock
        self.doing, self.started = "", clock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="raygrid-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self.console.line(f"still {self.doing} ({self.clock() - self.started:.0f} s)")

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


@contextlib.contextmanager
def quiet_console(log_dir: Path) -> Iterator[Console]:
    """Divert this process's stdout/stderr (Python objects and file descriptors) to a log file; yield the terminal."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"ray-{time.strftime('%Y%m%d-%H%M%S')}.log"
    sys.stdout.flush(), sys.stderr.flush()
    terminal, owned = _terminal()
    saved = (os.dup(1), os.dup(2))
    py_streams, show_warning = (sys.stdout, sys.stderr), warnings.showwarning
    # Left open after the run: Ray keeps writing to the streams it captured here (its tqdm bars,
    # the worker logs it flushes at exit); those late lines belong in the log too.
    text = open(path, "a", buffering=1, errors="replace")
    console = Console(terminal, path)
    os.dup2(text.fileno(), 1), os.dup2(text.fileno(), 2)
    sys.stdout = sys.stderr = text
    warnings.showwarning = _own_warnings_to(console, show_warning)
    try:
        yield console
    finally:
        text.flush()
        sys.stdout, sys.stderr = py_streams
        warnings.showwarning = show_warning
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        if owned:
            terminal.close()
        if path.stat().st_size == 0:  # nothing diverted (e.g. refused before Ray started): leave no empty log
            text.close()
            path.unlink()
            with contextlib.suppress(OSError):
                log_dir.rmdir()
        else:
            _STILL_WRITTEN.append(text)


def divert_the_rest(log_file: Path) -> None:
    """Send all this process still prints to `log_file`: what Ray flushes at exit (leftover worker logs,
    its progress bars) would otherwise land under raygrid's report. Only for a `raygrid` process about to exit."""
    sys.stdout.flush(), sys.stderr.flush()
    text = open(log_file, "a", buffering=1, errors="replace")
    os.dup2(text.fileno(), 1), os.dup2(text.fileno(), 2)
    sys.stdout = sys.stderr = text
    _STILL_WRITTEN.append(text)


_STILL_WRITTEN: list[TextIO] = []  # logs Ray may still write to (never garbage-collected, never closed)


def _terminal() -> tuple[TextIO, bool]:
    """Where raygrid's lines go once fd 1 points at the log: a copy of fd 1 when sys.stdout is it, else sys.stdout
    itself (pytest's capture, a notebook), which never wrote to fd 1."""
    try:
        if sys.stdout.fileno() == 1:
            return os.fdopen(os.dup(1), "w", buffering=1), True
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        pass
    return sys.stdout, False


def _own_warnings_to(console: Console, fallback):
    """raygrid's own warnings (a damaged cache entry, documents shared between splits) also reach the terminal.

    Every warning still goes through the previous `showwarning` (to the log, or to a caller that
    records warnings: `warnings.catch_warnings(record=True)`, pytest.warns, which would otherwise
    never see it).
    """
    def show(message, category, filename, lineno, file=None, line=None):
        if f"{os.sep}raygrid{os.sep}" in str(filename):
            console.line(f"warning: {message}")
        fallback(message, category, filename, lineno, file, line)
    return show


@dataclass
class _CellState:
    status: str = "PENDING"
    epoch: str = ""
    train_loss: str = ""
    val: str = ""
    started: float = field(default_factory=time.monotonic)
    epochs: int = 0  # the cell's epochs (its progress lines place a step in its epoch); 0: unknown


class CellLines(ray.tune.Callback):
    """Tune trial events -> raygrid's console lines. Listed after raygrid.orchestration.tune_callback.MlflowCells,
    so a finished or failed cell is printed as MLflow recorded it (same reason, same verdict)."""

    def __init__(self, console: Console, summary: RunSummary, names: list[str]):
        self.console, self.summary = console, summary
        self.cells = {name: _CellState() for name in names}
        self.order = {name: i for i, name in enumerate(names, 1)}

    def _tag(self, name: str) -> str:
        return f"[{self.order.get(name, '?')}/{len(self.order)}] {name}"

    def on_trial_start(self, iteration, trials, trial, **info):
        payload = TrialPayload.from_tune(trial.config)
        name = payload.name
        state = self.cells.setdefault(name, _CellState())
        state.epochs = payload.config.optim.epochs if payload.config.kind != "tfidf" else 0
        self.console.stop_heartbeat()  # the cells' own lines show from now on that the run is alive
        if state.status != "RUNNING":  # a restarted trial is not a new start
            state.status, state.started = "RUNNING", time.monotonic()
            self.console.line(f"{self._tag(name)}: started")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        payload = TrialPayload.from_tune(trial.config)
        state = self.cells.setdefault(payload.name, _CellState())
        report = CellReport.from_wire(result)
        if report is None or report.kind != EPOCH:
            return
        epochs = "" if payload.config.kind == "tfidf" else f"/{payload.config.optim.epochs}"
        state.epoch = f"{report.step + 1}{epochs}"
        state.train_loss = _number(report.metrics.get("train_loss"))
        key = next((k for k in VAL_SCORES if k in report.metrics), None)
        state.val = f"{key} {_number(report.metrics[key])}" if key else ""
        parts = [f"train_loss {state.train_loss}" if state.train_loss else "", state.val]
        self.console.line(f"{self._tag(payload.name)}: epoch {state.epoch}: {', '.join(p for p in parts if p)}")

    def on_progress(self, name: str, report: CellReport) -> None:
        """A running cell's progress inside an epoch (raygrid.orchestration.progress_relay, every ~30 s)."""
        if self.cells.get(name, _CellState()).status == "RUNNING":
            figures = ProgressFigures.from_metrics(report.metrics)
            self.console.line(f"{self._tag(name)}: {progress_text(figures, self.cells[name].epochs)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial)

    def _ended(self, trial) -> None:
        name = TrialPayload.from_tune(trial.config).name
        state = self.cells.setdefault(name, _CellState())
        minutes = f"{(time.monotonic() - state.started) / 60:.1f} min"
        if name in self.summary.failed:
            state.status = "FAILED"
            self.console.line(f"{self._tag(name)}: failed after {minutes}: {self.summary.failed[name]}")
            return
        state.status = "FINISHED"
        report = CellReport.from_wire(trial.last_result or {})
        metrics = report.metrics if report is not None and report.kind == FINAL else {}
        key = next((k for k in TEST_SCORES if k in metrics), None)
        score = f": {key} {_number(metrics[key])}" if key else ""
        self.console.line(f"{self._tag(name)}: finished in {minutes}{score}")

    def table(self) -> list[str]:
        """The Tuner's cells as a Markdown table: cell, status, epoch, train_loss, validation score."""
        rows = [("cell", "status", "epoch", "train_loss", "val score"), ("---",) * 5]
        rows += [(name, s.status, s.epoch, s.train_loss, s.val) for name, s in self.cells.items()]
        return ["| " + " | ".join(row) + " |" for row in rows]


def progress_text(figures: ProgressFigures, epochs: int = 0) -> str:
    """`epoch 1/3: step 120/300, cell 120/900 (13%): 5432 tokens/s, ETA 12m05s` (ETA: steps and validation left).

    The step in its epoch comes from the cell's `epochs` (each has total / epochs optimizer steps);
    without them (0), the cell's step alone: `step 120/900 (13%): ...`.
    """
    share = figures.step / figures.total_steps if figures.total_steps else 0.0
    where = f"step {figures.step}/{figures.total_steps} ({share:.0%})"
    if epochs > 0 and figures.total_steps >= epochs:
        per_epoch = figures.total_steps // epochs
        epoch = min(max(figures.step - 1, 0) // per_epoch, epochs - 1)
        where = (f"epoch {epoch + 1}/{epochs}: step {figures.step - epoch * per_epoch}/{per_epoch}, "
                 f"cell {figures.step}/{figures.total_steps} ({share:.0%})")
    return f"{where}: {figures.tokens_per_s:.0f} tokens/s, ETA {duration(figures.eta_s)}"


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else ""
