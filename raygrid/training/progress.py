"""A running cell's progress inside its epochs: the figures, and when to send them (framework-free).

raygrid.training.train_loop.fit calls its `on_progress` hook after every optimizer step with the
cell's step, its total steps, the real tokens and the seconds of training so far; a
`ProgressThrottle` turns those calls into one `ProgressFigures` per `interval_s` of wall clock
(default 30 s), so a researcher sees a line per cell at least that often without a per-step cost.
The hook only does arithmetic on host numbers: no device synchronisation.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from raygrid.training import metric_names as M

DEFAULT_INTERVAL_S = 30.0


@dataclass(frozen=True)
class ProgressFigures:
    step: int  # optimizer steps done in the cell (all epochs)
    total_steps: int  # the cell's optimizer steps, all epochs
    tokens_per_s: float  # real tokens per second of training so far
    eta_s: float  # mean step time so far x steps left, plus the validation passes still due

    @classmethod
    def of(cls, step: int, total_steps: int, tokens: int, seconds: float, evaluation_s: float = 0.0) -> ProgressFigures:
        """The figures after `step` steps that took `seconds` of training and saw `tokens` real tokens.

        ETA = mean step time so far x steps left + `evaluation_s` (the validation passes still due, at
        the time the ones so far took; 0 before the first). Checkpoints and the test split come on
        top, and the first steps (compilation, warm caches) weigh in the mean.
        """
        seconds = max(seconds, 0.0)
        tokens_per_s = tokens / seconds if seconds > 0 else 0.0
        eta_s = seconds / step * max(0, total_steps - step) if step > 0 else 0.0
        return cls(step, total_steps, tokens_per_s, eta_s + max(evaluation_s, 0.0))

    def metrics(self) -> dict[str, float]:
        """Under metric_names' PROGRESS_METRICS (MLflow step metrics at step = `step`)."""
        return {M.PROGRESS_STEP: self.step, M.PROGRESS_STEPS_TOTAL: self.total_steps,
                M.PROGRESS_TOKENS_PER_S: self.tokens_per_s, M.PROGRESS_ETA_S: self.eta_s}

    @classmethod
    def from_metrics(cls, metrics: dict) -> ProgressFigures:
        return cls(int(metrics[M.PROGRESS_STEP]), int(metrics[M.PROGRESS_STEPS_TOTAL]),
                   float(metrics[M.PROGRESS_TOKENS_PER_S]), float(metrics[M.PROGRESS_ETA_S]))


class ProgressThrottle:
    """fit's `on_progress` hook: passes the figures to `emit` once `interval_s` has passed since the last time
    (or since it was made), at the next optimizer step. `clock` is injectable for tests."""

    def __init__(self, emit: Callable[[ProgressFigures], None], interval_s: float = DEFAULT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.emit, self.interval_s, self.clock = emit, interval_s, clock
        self.last = clock()

    def __call__(self, step: int, total_steps: int, tokens: int, seconds: float, evaluation_s: float = 0.0) -> None:
        now = self.clock()
        if now - self.last < self.interval_s:
            return
        self.last = now
        self.emit(ProgressFigures.of(step, total_steps, tokens, seconds, evaluation_s))


def duration(seconds: float) -> str:
    """A duration as a console prints it: `45s`, `12m05s`, `3h02m`."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
