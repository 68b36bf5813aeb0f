"""Running a whole grid on Ray Tune, recording it in MLflow.

`run_grid` skips finished cells, tokenizes what the rest need (once, into the cache), then runs
one Tune trial per pending cell (see raygrid.orchestration.trial) with `max_concurrent_trials` sized to the
cluster. `_MlflowCells` turns Tune's trial events into MLflow child runs in this process.

Staged grids run stage by stage in dependency order, one Tuner per stage. A chained cell starts
from the weights its parent cell exported to Ray's storage (the URI is the parent run's
`raygrid.checkpoint` tag), so weights pass through storage, never through hand-copied paths;
the child run records the lineage in tags. Parents in another grid must have finished before
launch, or nothing starts.
"""
from __future__ import annotations

import os
import re
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import ray
import ray.tune

from raygrid.orchestration.cluster import init_ray, node_shapes
from raygrid.spec.config import STAGE_SCHEME, Resources
from raygrid.data.cache import PreparedData, load_tokenizer, tokenize_table
from raygrid.data.prepare import prepare_cells
from raygrid.data.sources import DataError
from raygrid.data.storage import join
from raygrid.spec.grid import Cell, Grid, GridError, short_value
from raygrid.orchestration.interrupts import ORPHANED, recorded_outcome, sigterm_as_interrupt
from raygrid.model.encoder import check_checkpoint
from raygrid.orchestration.placement import DRIVER_CPUS, NodeShape, Unplaceable, check_placeable, max_concurrent, trial_demand
from raygrid.orchestration.preflight import check_cells, offline_hint
from raygrid.orchestration.run_lock import grid_lock
from raygrid.report.publish import log_to_parent
from raygrid.spec.selection import resolve_selections
from raygrid.tracking.runs import (TAG_CHECKPOINT, finished_scores, TAG_INIT_CELL, TAG_INIT_CHECKPOINT, TAG_INIT_GRID, TAG_INIT_RUN,
                              TAG_NODE, TAG_STAGE, TAG_WEIGHTS_IN, TAG_WEIGHTS_OUT, GridTracker)
from raygrid.tracking.grid_summary import Counts
from raygrid.orchestration.trial import train_driver
from raygrid.training.metric_names import CELL_METRICS, DATA_SKIPPED_ROWS, EPOCH_METRICS


@dataclass
class RunSummary:
    skipped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def run_grid(grid: Grid, out_dir: Path, cache_dir: str | Path, uri: str, log=print, tokenize_actors: int = 0,
             storage: str | None = None) -> RunSummary:
    """Run every cell of `grid` that has not finished before; return what happened.

    tokenize_actors > 0 tokenizes missing cache entries on a Ray Data actor pool of that size
    (documents for classification; MLM blocks are always packed in this process). `storage` is
    where Ray keeps checkpoints and exported stage weights: a path every node sees, or a URI
    (s3://, gs://); default `<out>/ray`, fine on one node. One run per grid and `out_dir` at a
    time (raygrid.orchestration.run_lock); Ctrl-C or SIGTERM raise KeyboardInterrupt after recording the
    interrupted cells and the parent as KILLED.
    """
    with grid_lock(out_dir, grid.name, grid.path), sigterm_as_interrupt():
        return _run_locked(grid, out_dir, cache_dir, uri, log, tokenize_actors, storage)


def _run_locked(grid: Grid, out_dir: Path, cache_dir, uri: str, log, tokenize_actors: int,
                storage: str | None) -> RunSummary:
    summary = RunSummary()
    grid = resolve_selections(grid, uri, partial(finished_scores, uri))  # `select:` values from another grid's finished cells, or refused
    try:
        done = GridTracker(uri, grid.name, create=False).finished_cells()
    except LookupError:  # first run of this grid
        done = {}
    pending = [cell for cell in grid.cells if cell.name not in done]
    summary.skipped = [cell.name for cell in grid.cells if cell.name in done]
    # Refusals come before anything is recorded or started.
    links = _check_parents(grid, pending, uri)  # parents not run now: their weights are known already
    check_cells(grid, pending)  # layers, positions, chunk sizes, unreachable checkpoints
    for checkpoint in sorted({cell.config.model.checkpoint for cell in pending if cell.config.model}):
        if not checkpoint.startswith(STAGE_SCHEME):
            check_checkpoint(checkpoint)
    prepared, shapes = {}, []
    if pending:
        tokenize = ray_tokenize(actors=tokenize_actors) if tokenize_actors > 0 else None
        prepared = _prepare(grid, pending, cache_dir, tokenize)
        init_ray()
        _check_storage(grid, pending, storage)
        shapes = node_shapes()
        _check_placeable(grid, pending, shapes)
    storage = storage or str(out_dir.resolve() / "ray")
    if summary.skipped:
        log(f"skipping {len(summary.skipped)} of {len(grid.cells)} cells already finished in MLflow "
            f"(delete their runs to rerun them)")
    tracker = GridTracker(uri, grid.name)
    if orphans := tracker.close_running(ORPHANED):  # we hold the lock: nobody else is running them
        log(f"closed {len(orphans)} run(s) left RUNNING by an earlier raygrid run as KILLED: {', '.join(orphans)}")
    described = {stage.name: stage.description for stage in grid.spec.stages}
    tracker.log_grid(grid.text, str(grid.path), len(grid.cells), grid.spec.description,
                     {name: described[name] for name in grid.stage_order})
    with recorded_outcome(tracker):  # Ctrl-C, SIGTERM or a crash never leaves runs RUNNING
        _run_stages(grid, pending, links, prepared, shapes, storage, tracker, summary, log)
    _summarize(tracker, grid, summary, uri, log)
    tracker.end_grid(failed=bool(summary.failed))
    return summary


def _summarize(tracker: GridTracker, grid: Grid, summary: RunSummary, uri: str, log) -> None:
    """The parent run's summary, then the report (tables, figures) logged to it.

    Every cell is recorded by now: a failure here is a warning, never a failed run.
    """
    counts = Counts(len(grid.cells), len(summary.finished), len(summary.failed), len(summary.skipped))
    try:
        tracker.log_summary(counts)
    except Exception as err:  # any bug in the bookkeeping must leave the recorded results standing
        log(f"warning: the grid's summary was not logged to MLflow ({type(err).__name__}: {err})")
    try:
        log_to_parent(uri, grid.name)
    except Exception as err:
        log(f"warning: the report was not logged to MLflow ({type(err).__name__}: {err}); "
            f"`raygrid report {grid.path} --save DIR` writes it")


def _prepare(grid: Grid, pending: list[Cell], cache_dir, tokenize) -> dict[str, PreparedData]:
    """Tokenize once per distinct data config; a hub dataset unreachable offline is one line naming the key."""
    try:
        return prepare_cells(pending, cache_dir, tokenize=tokenize)
    except DataError as err:  # names the data file or key; add the grid file
        raise GridError(f"{grid.path}: {err}") from None
    except Exception as err:
        hint = offline_hint(err, ", ".join(sorted({c.config.data.dataset for c in pending})))
        if hint is None:
            raise
        raise GridError(f"{grid.path}: {hint}") from None


def _run_stages(grid: Grid, pending: list[Cell], links: dict, prepared: dict, shapes: list[NodeShape], storage: str,
                tracker: GridTracker, summary: RunSummary, log) -> None:
    """The pending cells, stage by stage; a cell whose parent did not finish is recorded FAILED, not run."""
    if not pending:
        return
    for stage in grid.stage_order or [None]:
        cells = []
        in_stage = [c for c in pending if c.stage == stage]
        # Parents that ran in this run (an earlier stage): their weights are known now.
        links.update(_exported_links(tracker, [c for c in in_stage if c.parent is not None and c.name not in links]))
        for cell in in_stage:
            if cell.parent is not None and links[cell.name] is None:
                # recorded, so the report shows why this cell has no scores
                reason = f"its parent cell {cell.parent.name} did not finish"
                run_id = tracker.start_cell(cell.name, _axis_labels(cell), cell.config.model_dump(mode="json"),
                                            {TAG_STAGE: cell.stage})
                tracker.end_cell(run_id, error=reason)
                summary.failed[cell.name] = reason
                continue
            cells.append(cell)
        if cells:
            if stage is not None:
                log(f"stage {stage}: {len(cells)} cell(s)")
            _run_cells(grid, cells, links, prepared, shapes, storage, tracker, summary)


@dataclass(frozen=True)
class _ParentWeights:
    grid: str
    cell: str
    run_id: str
    uri: str


def _exported_links(tracker: GridTracker, cells: list[Cell]) -> dict[str, _ParentWeights | None]:
    """cell name -> the weights its parent (in `tracker`'s grid) exported, or None; one query per parent."""
    found: dict[str, _ParentWeights | None] = {}
    for cell in cells:
        if cell.parent.name not in found:
            hit = tracker.exported_weights(cell.parent.name)
            found[cell.parent.name] = _ParentWeights(cell.parent_grid, cell.parent.name, *hit) if hit else None
    return {cell.name: found[cell.parent.name] for cell in cells}


def _check_parents(grid: Grid, pending: list[Cell], uri: str) -> dict[str, _ParentWeights]:
    """Refuse, before launch, cells whose parent will not run now and has no usable exported weights.

    A parent in this grid that is still pending runs first; any other parent (in another grid, or
    finished in an earlier run) must have its weights' URI recorded and, when local, still on disk.
    Returns those cells' links to their parents' weights.
    """
    pending_names = {cell.name for cell in pending}
    waiting = [cell for cell in pending if cell.parent is not None
               and not (cell.parent_grid == grid.name and cell.parent.name in pending_names)]
    links: dict[str, _ParentWeights | None] = {}
    for grid_name in dict.fromkeys(cell.parent_grid for cell in waiting):
        children = [cell for cell in waiting if cell.parent_grid == grid_name]
        try:
            links.update(_exported_links(GridTracker(uri, grid_name, create=False), children))
        except LookupError:  # that grid never ran here
            links.update(dict.fromkeys(cell.name for cell in children))
    for cell in waiting:
        parent, link, where = cell.parent, links[cell.name], f"{grid.path}: stages.{cell.stage}.init"
        if link is None:
            hint = (" (run that grid first, with the same --out / MLFLOW_TRACKING_URI)" if cell.parent_grid != grid.name
                    else " (delete its run to train it again)")
            raise GridError(f"{where}: parent cell {parent.name} of grid {cell.parent_grid} has no finished "
                            f"run with exported weights at {uri}{hint}")
        if "://" not in link.uri and not Path(link.uri).is_dir():
            raise GridError(f"{where}: the weights of parent cell {parent.name} are gone from {link.uri} "
                            f"(delete its MLflow run to train it again)")
    return links


def _check_placeable(grid: Grid, pending: list[Cell], shapes: list[NodeShape]) -> None:
    """Refuse, before anything is recorded, a cell whose trial no node (now or after scaling) can hold."""
    for cell in pending:
        if cell.config.kind == "tfidf":
            continue  # runs inside its Tune trial: no Train workers
        try:
            check_placeable(cell.resources, _use_gpu(cell.resources, shapes), shapes)
        except Unplaceable as err:
            raise GridError(f"{grid.path}: {err} (cell {cell.name})") from None


def _check_storage(grid: Grid, pending: list[Cell], storage: str | None) -> None:
    """Chained stages on several nodes need storage every node reads; the default <out>/ray is one node's disk."""
    chained = any(cell.parent is not None for cell in pending)
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    if chained and storage is None and nodes > 1:
        raise GridError(f"{grid.path}: stages: {nodes} Ray nodes but no shared storage for the weights stages pass on; "
                        f"give --storage s3://... (or a path mounted on every node)")


def _axis_labels(cell: Cell) -> dict[str, str]:
    return {k: short_value(v) for k, v in cell.axis_values.items()}


def _run_cells(grid: Grid, cells: list[Cell], links: dict[str, _ParentWeights], prepared, shapes: list[NodeShape],
               storage: str, tracker: GridTracker, summary: RunSummary) -> None:
    """One Tuner over `cells` (a whole single-stage grid, or one stage)."""
    payloads = [_payload(cell, prepared.get(cell.name), cell.resources, _use_gpu(cell.resources, shapes), storage,
                         links.get(cell.name)) for cell in cells]
    callback = _MlflowCells(tracker, {cell.name: cell for cell in cells}, links, summary)
    experiment = grid.name if cells[0].stage is None else f"{grid.name}-{cells[0].stage}"
    entries = {prepared[cell.name].folder: prepared[cell.name] for cell in cells if cell.name in prepared}
    datasets = _shared_datasets(entries)
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(ray.tune.with_parameters(train_driver, datasets=datasets), {"CPU": DRIVER_CPUS}),
        param_space={"cell": ray.tune.grid_search(payloads)},
        tune_config=ray.tune.TuneConfig(
            max_concurrent_trials=_max_concurrent(grid.spec.resources, cells, shapes),
            trial_name_creator=lambda t: t.config["cell"]["name"],
            trial_dirname_creator=lambda t: f"{t.trial_id}-{_safe(t.config['cell']['name'])[:80]}"),
        run_config=ray.tune.RunConfig(name=experiment, storage_path=storage, callbacks=[callback]),
    )
    # Ctrl-C must reach raygrid (which records the interrupted cells as KILLED and exits non-zero),
    # not Tune's own handler, which stops quietly and advises `Tuner.restore(...)`, wrong for raygrid.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    tuner.fit()


def _shared_datasets(entries: dict[str, PreparedData]) -> dict[str, dict[str, ray.data.Dataset]]:
    """{cache folder: {split: Dataset}}, built here, once, and handed to every trial of the Tuner.

    Each cached table sits once in the object store, shared by all trials (nine Wikipedia-MLM
    variants would otherwise hold nine copies of ~2 GB); it is freed when the stage ends.
    Built here and not in the trials: making a Dataset from tables runs a metadata task that asks
    for a whole CPU. Inside a trial that task can wait forever: on 1-CPU autoscaled nodes, each
    holding a trial driver's 0.01 CPU, no node ever has a whole CPU free (seen in `ray status` as
    `{'CPU': 1.0}: 2+ pending tasks`). Here no trial is placed yet, so the task always runs.
    """
    datasets = {folder: {split: ray.data.from_arrow(entry.read_split(split)) for split in entry.splits}
                for folder, entry in entries.items()}
    first = next((ds for splits in datasets.values() for ds in splits.values()), None)
    if first is not None:
        _pin_ray_data_actors(first)
    return datasets


def _pin_ray_data_actors(ds: ray.data.Dataset) -> None:
    """Run Ray Data once here, so its cluster-wide helper actors start on this (the driver's) node.

    Ray Data starts detached helper actors (stats, usage, autoscaling coordinator) on the node of
    whichever process first executes a Dataset, and they live as long as the cluster. Left to the
    Train workers, that is an autoscaled worker node, which then never goes idle and is never
    scaled down (seen: one of two added nodes still up minutes after the grid finished).
    """
    for _ in ds.iter_batches(batch_size=1, batch_format="pyarrow"):
        break


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", name)


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
        init_ray()
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


def _payload(cell: Cell, data: PreparedData | None, res: Resources, use_gpu: bool, storage: str,
             parent: _ParentWeights | None = None) -> dict:
    """What a trial receives: plain JSON, re-validated by the worker."""
    return {"name": cell.name, "config": cell.config.model_dump(mode="json"), "axis": _axis_labels(cell),
            "data_dir": data.folder if data else None, "resources": res.model_dump(), "use_gpu": use_gpu,
            "storage_path": join(storage, "train"),
            "init_checkpoint": parent.uri if parent else None,
            "skipped_rows": sum(data.meta.get("skipped_rows", {}).values()) if data else 0}


def _use_gpu(res: Resources, shapes: list[NodeShape]) -> bool:
    """`auto`: GPUs when the cluster has or can add a GPU node (an autoscaler may start with none)."""
    if res.use_gpu != "auto":
        return bool(res.use_gpu)
    return any(shape.resources.get("GPU", 0) > 0 for shape in shapes) or ray.cluster_resources().get("GPU", 0) > 0


def _max_concurrent(grid_resources: Resources, cells: list[Cell], shapes: list[NodeShape]) -> int:
    """As many trials as the cluster can hold at its largest (the autoscaler adds nodes to meet the
    pending requests), capped by resources.max_concurrent_trials."""
    demands = [trial_demand(c.resources, _use_gpu(c.resources, shapes)) if c.config.kind != "tfidf" else {"CPU": DRIVER_CPUS}
               for c in cells]
    fit = max_concurrent(demands, shapes or [NodeShape("cluster", ray.cluster_resources())])
    return min(fit, grid_resources.max_concurrent_trials or fit)


class _MlflowCells(ray.tune.Callback):
    """Tune trial events -> MLflow child runs (runs in the `raygrid run` process)."""

    def __init__(self, tracker: GridTracker, cells: dict[str, Cell], links: dict[str, _ParentWeights],
                 summary: RunSummary):
        self.tracker, self.cells, self.links, self.summary = tracker, cells, links, summary
        self.run_ids: dict[str, str] = {}
        self.scored: set[str] = set()

    def on_trial_start(self, iteration, trials, trial, **info):
        name = trial.config["cell"]["name"]
        if name not in self.run_ids:  # a restarted trial keeps its run
            payload = trial.config["cell"]
            self.run_ids[name] = self.tracker.start_cell(name, payload["axis"], payload["config"], self._tags(name))
            if payload.get("skipped_rows"):  # data.bad_rows: skip dropped rows of this cell's data
                self.tracker.log_metrics(self.run_ids[name], {DATA_SKIPPED_ROWS: payload["skipped_rows"]}, step=0)

    def _tags(self, name: str) -> dict[str, str]:
        tags = {TAG_STAGE: self.cells[name].stage} if self.cells[name].stage else {}
        tags.update(self.cells[name].tags)  # e.g. the run `select:` took this cell's values from
        if name in self.links:
            link = self.links[name]
            tags.update({TAG_INIT_GRID: link.grid, TAG_INIT_CELL: link.cell, TAG_INIT_RUN: link.run_id,
                         TAG_INIT_CHECKPOINT: link.uri})
        return tags

    def on_trial_result(self, iteration, trials, trial, result, **info):
        name = trial.config["cell"]["name"]
        if result.get("final"):
            if name in self.scored:  # a worker restarted after its final report: logged once already
                return
            run_id = self.run_ids[name]
            self.tracker.log_metrics(run_id, _pick(result, CELL_METRICS), step=0)
            tags = {TAG_WEIGHTS_IN: result.get("weights_in"), TAG_WEIGHTS_OUT: result.get("weights_out"),
                    TAG_NODE: result.get("node_id")}
            if result.get("weights_out") and result.get("checkpoint_path"):
                tags[TAG_CHECKPOINT] = _storage_uri(trial.config["cell"]["storage_path"], result["checkpoint_path"])
            self.tracker.set_tags(run_id, {k: v for k, v in tags.items() if v})
            if trial.config["cell"]["config"]["kind"] != "mlm" or TAG_CHECKPOINT in tags:
                self.scored.add(name)
        elif "epoch" in result:
            self.tracker.log_metrics(self.run_ids[name], _pick(result, EPOCH_METRICS), step=int(result["epoch"]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        name = trial.config["cell"]["name"]
        if name in self.scored:
            self.tracker.end_cell(self.run_ids[name])
            self.summary.finished.append(name)
        else:
            self._fail(name, "trial ended without its final metrics (or, for mlm, without exported weights)")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._fail(trial.config["cell"]["name"], _error_reason(trial))

    def _fail(self, name: str, reason: str) -> None:
        if name in self.run_ids:
            self.tracker.end_cell(self.run_ids[name], error=reason)
        self.summary.failed[name] = reason


def _storage_uri(storage_path: str, checkpoint_path: str) -> str:
    """Ray reports checkpoint paths without the filesystem's scheme; put it back (s3://, gs://, ...)."""
    scheme = storage_path.split("://", 1)[0] + "://" if "://" in storage_path else ""
    return checkpoint_path if not scheme or checkpoint_path.startswith(scheme) else scheme + checkpoint_path


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
