"""Running a whole grid on Ray Tune, recording it in MLflow.

`run_grid` skips finished cells, tokenizes what the rest need (once, into the cache), then runs
one Tune trial per pending cell (see raygrid.trial) with `max_concurrent_trials` sized to the
cluster. `_MlflowCells` turns Tune's trial events into MLflow child runs in this process.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import ray
import ray.tune

from raygrid.config import Resources
from raygrid.data.cache import PreparedData, load_tokenizer, prepare_cells, tokenize_table
from raygrid.grid import Cell, Grid, short_value
from raygrid.model import check_checkpoint
from raygrid.tracking import GridTracker
from raygrid.trial import train_driver

# The Train driver (the Tune trial itself) only waits on its workers: a sliver of a CPU, so it
# never blocks a worker slot. Ray Data read tasks likewise ask for little (see trial.py).
DRIVER_CPUS = 0.01
EPOCH_METRICS = ("train_loss", "val_loss", "val_f1_macro", "val_accuracy", "epoch_time_s", "lr")
FINAL_METRICS = ("test_f1_macro", "test_accuracy", "test_loss", "best_val_f1_macro", "best_epoch",
                 "train_time_s", "tokens_per_s", "peak_gpu_mem_mb", "peak_host_mem_mb")


@dataclass
class RunSummary:
    skipped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def run_grid(grid: Grid, out_dir: Path, cache_dir: Path, uri: str, log=print) -> RunSummary:
    """Run every cell of `grid` that has not finished before; return what happened."""
    summary = RunSummary()
    tracker = GridTracker(uri, grid.name)
    done = tracker.finished_cells()
    pending = [cell for cell in grid.cells if cell.name not in done]
    summary.skipped = [cell.name for cell in grid.cells if cell.name in done]
    if summary.skipped:
        log(f"skipping {len(summary.skipped)} of {len(grid.cells)} cells already finished in MLflow "
            f"(delete their runs to rerun them)")
    tracker.log_grid(grid.text, str(grid.path), len(grid.cells))
    if not pending:
        tracker.end_grid()
        return summary
    for checkpoint in sorted({cell.config.model.checkpoint for cell in pending if cell.config.model}):
        check_checkpoint(checkpoint)
    prepared = prepare_cells(pending, cache_dir)  # tokenizes once per distinct data config
    _init_ray()
    use_gpu = _use_gpu(grid.spec.resources)
    payloads = [_payload(cell, prepared.get(cell.name), grid.spec.resources, use_gpu, out_dir) for cell in pending]
    callback = _MlflowCells(tracker, {cell.name: cell for cell in pending}, summary)
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(train_driver, {"CPU": DRIVER_CPUS}),
        param_space={"cell": ray.tune.grid_search(payloads)},
        tune_config=ray.tune.TuneConfig(
            max_concurrent_trials=_max_concurrent(grid.spec.resources, use_gpu),
            trial_name_creator=lambda t: t.config["cell"]["name"],
            trial_dirname_creator=lambda t: f"{t.trial_id}-{t.config['cell']['name'][:80]}"),
        run_config=ray.tune.RunConfig(name=grid.name, storage_path=str(out_dir.resolve() / "ray"),
                                      callbacks=[callback]),
    )
    tuner.fit()
    tracker.end_grid(failed=bool(summary.failed))
    return summary


class _TokenizeBatch:
    """Ray Data actor: loads the tokenizer once, then tokenizes pyarrow batches."""

    def __init__(self, tokenizer_location: str, max_len: int):
        self.tokenizer, self.max_len = load_tokenizer(tokenizer_location), max_len

    def __call__(self, batch):
        return tokenize_table(batch, self.tokenizer, self.max_len, progress=False)


def ray_tokenize(actors: int = 2, batch_size: int = 256):
    """A `tokenize` for raygrid.data.cache.prepare that runs on a Ray Data actor pool.

    Order is preserved, so the cache holds exactly the rows the in-process path would write.
    """
    def tokenize(table, tokenizer_location: str, max_len: int):
        _init_ray()
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        # Hand Ray Data the table as several blocks so every actor gets work. (Slicing here, not
        # `repartition`: that needs CPU tasks the actor pool may already hold, and stalls.)
        step = max(batch_size, -(-table.num_rows // (actors * 4)))
        blocks = [table.slice(start, step) for start in range(0, max(table.num_rows, 1), step)]
        ds = ray.data.from_arrow(blocks).map_batches(
            _TokenizeBatch, fn_constructor_args=(tokenizer_location, max_len), batch_size=batch_size,
            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1)
        return pa.concat_tables(ray.get(ds.to_arrow_refs()))

    return tokenize


def _payload(cell: Cell, data: PreparedData | None, res: Resources, use_gpu: bool, out_dir: Path) -> dict:
    """What a trial receives: plain JSON, re-validated by the worker."""
    return {"name": cell.name, "config": cell.config.model_dump(mode="json"),
            "axis": {k: short_value(v) for k, v in cell.axis_values.items()},
            "data_dir": str(data.folder) if data else None, "resources": res.model_dump(), "use_gpu": use_gpu,
            "storage_path": str(out_dir.resolve() / "ray" / "train")}


def _init_ray() -> None:
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"])
    else:
        ray.init(configure_logging=False)


def _use_gpu(res: Resources) -> bool:
    if res.use_gpu != "auto":
        return bool(res.use_gpu)
    return ray.cluster_resources().get("GPU", 0) > 0


def _max_concurrent(res: Resources, use_gpu: bool) -> int:
    """As many trials as the cluster can place at once (Train runs start only with all workers)."""
    if res.max_concurrent_trials:
        return res.max_concurrent_trials
    total = ray.cluster_resources()
    if use_gpu:
        return max(1, math.floor(total.get("GPU", 0) / (res.workers_per_trial * res.gpus_per_worker)))
    per_trial = res.workers_per_trial * res.cpus_per_worker + DRIVER_CPUS
    return max(1, math.floor(total.get("CPU", 1) / per_trial))


class _MlflowCells(ray.tune.Callback):
    """Tune trial events -> MLflow child runs (runs in the `raygrid run` process)."""

    def __init__(self, tracker: GridTracker, cells: dict[str, Cell], summary: RunSummary):
        self.tracker, self.cells, self.summary = tracker, cells, summary
        self.run_ids: dict[str, str] = {}
        self.scored: set[str] = set()

    def on_trial_start(self, iteration, trials, trial, **info):
        name = trial.config["cell"]["name"]
        if name not in self.run_ids:  # a restarted trial keeps its run
            payload = trial.config["cell"]
            self.run_ids[name] = self.tracker.start_cell(name, payload["axis"], payload["config"])

    def on_trial_result(self, iteration, trials, trial, result, **info):
        name = trial.config["cell"]["name"]
        if result.get("final"):
            self.tracker.log_metrics(self.run_ids[name], _pick(result, FINAL_METRICS), step=0)
            self.scored.add(name)
        elif "val_f1_macro" in result:
            self.tracker.log_metrics(self.run_ids[name], _pick(result, EPOCH_METRICS), step=int(result["epoch"]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        name = trial.config["cell"]["name"]
        if name in self.scored:
            self.tracker.end_cell(self.run_ids[name])
            self.summary.finished.append(name)
        else:
            self._fail(name, "trial ended without test metrics")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._fail(trial.config["cell"]["name"], _error_reason(trial))

    def _fail(self, name: str, reason: str) -> None:
        if name in self.run_ids:
            self.tracker.end_cell(self.run_ids[name], error=reason)
        self.summary.failed[name] = reason


def _pick(result: dict, keys) -> dict[str, float]:
    return {k: result[k] for k in keys if isinstance(result.get(k), (int, float))}


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
