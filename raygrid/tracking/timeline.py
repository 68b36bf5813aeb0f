"""When a grid's cell runs started and ended, read back from MLflow (for `raygrid bench loop`).

A child run starts when Tune starts its trial (raygrid.orchestration.tune_callback.on_trial_start) and
ends when the trial completes; its cell metrics are logged when the worker's final report arrives.
Those three timestamps, which MLflow keeps anyway, split a trial's wall time into before the worker,
the worker, and Ray's teardown after the last report, with no clock of raygrid's own in the trial.
"""
from __future__ import annotations

from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from raygrid.tracking.runs import GridTracker
from raygrid.training.metric_names import TRAIN_TIME_S


@dataclass(frozen=True)
class CellTimes:
    """Wall-clock seconds (time.time()) of one cell run's start, its final report and its end."""

    started: float
    final_report: float
    ended: float


def cell_times(uri: str, grid_name: str, cell: str) -> CellTimes:
    """The latest run of `cell`: run start, when its cell metrics were logged, run end."""
    tracker = GridTracker(uri, grid_name, create=False)
    runs = tracker.cell_runs(cell)
    if not runs:
        raise LookupError(f"no run of cell {cell!r} in grid {grid_name!r} at {uri}")
    info = runs[0].info
    history = MlflowClient(tracking_uri=uri).get_metric_history(info.run_id, TRAIN_TIME_S)
    if not history or info.end_time is None:
        raise LookupError(f"cell {cell!r} has no final report or has not ended ({info.status})")
    return CellTimes(info.start_time / 1e3, max(m.timestamp for m in history) / 1e3, info.end_time / 1e3)

