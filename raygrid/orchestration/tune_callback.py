"""Tune trial events -> MLflow child runs, in the `raygrid run` process (the only MLflow writer).

Which of a trial's reported metrics are recorded: those its raygrid.training.reports.CellReport
carries, i.e. raygrid.training.metric_names' EPOCH_METRICS per epoch, CELL_METRICS once per cell
(the names are defined there, once), and PROGRESS_METRICS at the cell's optimizer steps, which reach
this process beside Tune (raygrid.orchestration.progress_relay).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import ray.tune

from raygrid.orchestration.parent_links import ParentWeights
from raygrid.orchestration.payload import TrialPayload
from raygrid.orchestration.summary import RunSummary
from raygrid.spec.grid import Cell
from raygrid.training.metric_names import DATA_SKIPPED_ROWS
from raygrid.training.reports import (CHECKPOINT_PATH, DATA_FROM, FINAL, NODE_ID, PRECISION, WEIGHTS_IN, WEIGHTS_OUT,
                                     CellReport)
from raygrid.tracking.runs import (TAG_CHECKPOINT, TAG_INIT_CELL, TAG_INIT_CHECKPOINT, TAG_INIT_GRID, TAG_INIT_RUN,
                                   TAG_DATA_FROM, TAG_NODE, TAG_PRECISION, TAG_STAGE, TAG_WEIGHTS_IN, TAG_WEIGHTS_OUT, GridTracker)


class MlflowCells(ray.tune.Callback):
    """Tune trial events -> MLflow child runs (runs in the `raygrid run` process)."""

    def __init__(self, tracker: GridTracker, cells: dict[str, Cell], links: dict[str, ParentWeights],
                 summary: RunSummary):
        self.tracker, self.cells, self.links, self.summary = tracker, cells, links, summary
        self.run_ids: dict[str, str] = {}
        self.scored: set[str] = set()

    def on_trial_start(self, iteration, trials, trial, **info):
        payload = TrialPayload.from_tune(trial.config)
        name = payload.name
        if name not in self.run_ids:  # a restarted trial keeps its run
            self.run_ids[name] = self.tracker.start_cell(name, payload.axis, payload.config.model_dump(mode="json"),
                                                         self._tags(name), former=self.cells[name].former_names)
            if payload.skipped_rows:  # data.bad_rows: skip dropped rows of this cell's data
                self.tracker.log_metrics(self.run_ids[name], {DATA_SKIPPED_ROWS: payload.skipped_rows}, step=0)

    def _tags(self, name: str) -> dict[str, str]:
        tags = {TAG_STAGE: self.cells[name].stage} if self.cells[name].stage else {}
        tags.update(self.cells[name].tags)  # e.g. the run `select:` took this cell's values from
        if name in self.links:
            link = self.links[name]
            tags.update({TAG_INIT_GRID: link.grid, TAG_INIT_CELL: link.cell, TAG_INIT_RUN: link.run_id,
                         TAG_INIT_CHECKPOINT: link.uri})
        return tags

    def on_trial_result(self, iteration, trials, trial, result, **info):
        payload = TrialPayload.from_tune(trial.config)
        report = CellReport.from_wire(result)
        if report is None:
            return
        if report.kind == FINAL:
            self._final(payload, report)
        else:  # an epoch's metrics at step = epoch
            self.tracker.log_metrics(self.run_ids[payload.name], report.metrics, step=report.step)

    def _final(self, payload: TrialPayload, report: CellReport) -> None:
        name = payload.name
        if name in self.scored:  # a worker restarted after its final report: logged once already
            return
        run_id = self.run_ids[name]
        self.tracker.log_metrics(run_id, report.metrics, step=0)
        tags = {TAG_WEIGHTS_IN: report.tags.get(WEIGHTS_IN), TAG_WEIGHTS_OUT: report.tags.get(WEIGHTS_OUT),
                TAG_NODE: report.tags.get(NODE_ID), TAG_DATA_FROM: report.tags.get(DATA_FROM),
                TAG_PRECISION: report.tags.get(PRECISION)}
        if report.tags.get(WEIGHTS_OUT) and report.tags.get(CHECKPOINT_PATH):
            tags[TAG_CHECKPOINT] = storage_uri(payload.storage_path, report.tags[CHECKPOINT_PATH])
        self.tracker.set_tags(run_id, {k: v for k, v in tags.items() if v})
        if payload.config.kind != "mlm" or TAG_CHECKPOINT in tags:
            self.scored.add(name)

    def on_progress(self, name: str, report: CellReport) -> None:
        """A running cell's progress (raygrid.orchestration.progress_relay): step metrics at its optimizer step."""
        if name in self.run_ids and name not in self.scored:  # late ones after the cell's end are dropped
            self.tracker.log_metrics(self.run_ids[name], report.metrics, step=report.step)

    def on_trial_complete(self, iteration, trials, trial, **info):
        name = TrialPayload.from_tune(trial.config).name
        if name in self.scored:
            self.tracker.end_cell(self.run_ids[name])
            self.summary.finished.append(name)
        else:
            self._fail(name, "trial ended without its final metrics (or, for mlm, without exported weights)")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._fail(TrialPayload.from_tune(trial.config).name, _error_reason(trial))

    def _fail(self, name: str, reason: str) -> None:
        if name in self.run_ids:
            self.tracker.end_cell(self.run_ids[name], error=reason)
        self.summary.failed[name] = reason


def storage_uri(storage_path: str, checkpoint_path: str) -> str:
    """Ray reports checkpoint paths without the filesystem's scheme; put it back (s3://, gs://, ...)."""
    scheme = storage_path.split("://", 1)[0] + "://" if "://" in storage_path else ""
    return checkpoint_path if not scheme or checkpoint_path.startswith(scheme) else scheme + checkpoint_path


_RAY_WRAPPERS = ("WorkerGroupError", "RayTaskError", "TrainingFailedError", "TuneError", "RayActorError")


def _error_reason(trial) -> str:
    """The user-facing cause (e.g. `ValueError: model.n_freeze: ...`) out of Ray's wrapped traceback."""
    text = ""
    if trial.error_file and os.path.exists(trial.error_file):
        text = Path(trial.error_file).read_text(errors="replace")
    elif trial.get_error() is not None:
        text = str(trial.get_error())
    return error_reason(text)


def error_reason(text: str) -> str:
    causes = re.findall(r"^\s*((?:[\w.]+\.)?(\w+(?:Error|Exception))): (.+)$", text, flags=re.MULTILINE)
    own = [f"{name}: {message.strip()}" for _, name, message in causes if name not in _RAY_WRAPPERS]
    if own:
        return own[-1][:1000]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "trial failed")[:1000]
