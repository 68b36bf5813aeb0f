"""One Ray Tune Tuner per stage: the trials' payloads and the Tuner itself (trials read their data from the cache)."""
from __future__ import annotations

import os
import re

import pyarrow as pa
import ray
import ray.tune

from raygrid.data.cache import PreparedData
from raygrid.data.storage import join
from raygrid.orchestration.console import CellLines, Console
from raygrid.orchestration.capacity import concurrent_trials, use_gpu
from raygrid.orchestration.parent_links import ParentWeights
from raygrid.orchestration.payload import PARAM_KEY, TrialPayload
from raygrid.orchestration.placement import DRIVER_CPUS, NodeShape
from raygrid.orchestration.progress_relay import ProgressRelay
from raygrid.orchestration.summary import RunSummary
from raygrid.orchestration.trial import train_driver
from raygrid.orchestration.tune_callback import MlflowCells
from raygrid.spec.grid import Cell, Grid, short_value
from raygrid.tracking.runs import GridTracker


def axis_labels(cell: Cell) -> dict[str, str]:
    return {k: short_value(v) for k, v in cell.axis_values.items()}


def run_cells(grid: Grid, cells: list[Cell], links: dict[str, ParentWeights], prepared, shapes: list[NodeShape],
              storage: str, tracker: GridTracker, summary: RunSummary, console: Console | None = None) -> None:
    """One Tuner over `cells` (a whole single-stage grid, or one stage).

    With a `console` (the default `raygrid run`), Tune prints nothing itself (verbose=0): raygrid's
    per-cell lines and, after the Tuner, its table of cells replace Tune's status boxes.
    """
    payloads = [trial_payload(cell, prepared.get(cell.name), use_gpu(cell.resources, shapes), storage,
                              links.get(cell.name)) for cell in cells]
    callbacks = [MlflowCells(tracker, {cell.name: cell for cell in cells}, links, summary)]
    if console is not None:  # after MlflowCells: it prints each outcome as MLflow recorded it
        callbacks.append(lines := CellLines(console, summary, [cell.name for cell in cells]))
    # In-epoch progress, beside Tune's results; first, so a cell's waiting progress is delivered before its results.
    callbacks.insert(0, ProgressRelay(callbacks[:]))
    experiment = grid.name if cells[0].stage is None else f"{grid.name}-{cells[0].stage}"
    _pin_cluster_helpers()
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(train_driver, {"CPU": DRIVER_CPUS}),
        param_space={PARAM_KEY: ray.tune.grid_search([payload.to_tune() for payload in payloads])},
        tune_config=ray.tune.TuneConfig(
            max_concurrent_trials=concurrent_trials(grid.spec.resources, cells, shapes),
            trial_name_creator=lambda t: TrialPayload.from_tune(t.config).name,
            trial_dirname_creator=lambda t: f"{t.trial_id}-{_safe(TrialPayload.from_tune(t.config).name)[:80]}"),
        run_config=ray.tune.RunConfig(name=experiment, storage_path=storage, callbacks=callbacks,
                                      **({"verbose": 0} if console is not None else {})),
    )
    # Ctrl-C must reach raygrid (which records the interrupted cells as KILLED and exits non-zero),
    # not Tune's own handler, which stops quietly and advises `Tuner.restore(...)`, wrong for raygrid.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    # Every result already goes to MLflow (MlflowCells): Tune's own per-trial CSV, JSON and
    # TensorBoard files would write each one again, and its TensorBoard writer costs a thread and
    # CPU in this driver all run long. TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0 brings them back.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    tuner.fit()
    if console is not None:
        for line in lines.table():
            console.line(line)


def _pin_cluster_helpers() -> None:
    """Start Ray Data's cluster-wide helper actors here, on the driver's node, before any trial.

    Ray Train's controller asks Ray Data's AutoscalingCoordinator for resources; that detached actor
    (like Ray Data's stats actors) starts on the node of whichever process first needs it and lives
    as long as the cluster. Left to a trial, that is an autoscaled worker node, which then never
    goes idle and is never scaled down (seen: one of two added nodes still up 2 min after the grid
    finished). Executing a one-row Dataset here creates them on this node; it runs no task, so it
    also works on a head with no CPU.
    """
    for _ in ray.data.from_arrow(pa.table({"pin": [0]})).iter_batches(batch_size=1, batch_format="pyarrow"):
        break


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", name)


def trial_payload(cell: Cell, data: PreparedData | None, gpu: bool, storage: str,
                  parent: ParentWeights | None = None) -> TrialPayload:
    """What a trial receives (serialized to plain JSON for Tune, re-validated by the trial and its workers)."""
    return TrialPayload(name=cell.name, config=cell.config, axis=axis_labels(cell),
                        data_dir=str(data.folder) if data else None, resources=cell.resources, use_gpu=gpu,
                        storage_path=join(storage, "train"), init_checkpoint=parent.uri if parent else None,
                        skipped_rows=sum(data.meta.get("skipped_rows", {}).values()) if data else 0)
