"""Running a whole grid on Ray Tune, recording it in MLflow: the run flow.

`run_grid` skips finished cells, refuses what cannot run, tokenizes what the rest need (once,
into the cache), then runs one Tune trial per pending cell (raygrid.orchestration.tuner; each
trial is raygrid.orchestration.trial) and turns Tune's trial events into MLflow child runs in this
process (raygrid.orchestration.tune_callback).

Staged grids run stage by stage in dependency order, one Tuner per stage. A chained cell starts
from the weights its parent cell exported to Ray's storage (raygrid.orchestration.parent_links);
the child run records the lineage in tags. Parents in another grid must have finished before
launch, or nothing starts.
"""
from __future__ import annotations

import contextlib
from functools import partial
from pathlib import Path

from raygrid.data.cache import PreparedData
from raygrid.data.prepare import prepare_cells
from raygrid.data.sources import DataError
from raygrid.model.encoder import check_checkpoint
from raygrid.orchestration.capacity import (cache_warning_for_added_nodes, check_cache_on_every_node,
                                            check_placeable_cells, check_storage)
from raygrid.orchestration.cluster import init_ray, node_shapes
from raygrid.orchestration.console import Console
from raygrid.orchestration.finished import finished_cells
from raygrid.orchestration.interrupts import ORPHANED, recorded_outcome, reinstall_handlers, sigterm_as_interrupt
from raygrid.orchestration.parent_links import check_parents, exported_links
from raygrid.orchestration.placement import NodeShape
from raygrid.orchestration.preflight import check_cells, offline_hint
from raygrid.orchestration.resume import experiment_name, has_checkpoint, remove_folder, train_run_name, train_run_path
from raygrid.orchestration.run_lock import grid_lock
from raygrid.orchestration.summary import RunSummary
from raygrid.orchestration.tokenize_pool import ray_tokenize
from raygrid.orchestration.tuner import axis_labels, run_cells
from raygrid.spec.config import STAGE_SCHEME
from raygrid.spec.grid import Cell, Grid, GridError
from raygrid.spec.overrides import describe_overrides
from raygrid.spec.selection import resolve_selections
from raygrid.report.publish import log_to_parent
from raygrid.tracking.grid_summary import Counts
from raygrid.data.storage import join
from raygrid.tracking.owners import Heartbeat, Owner
from raygrid.tracking.runs import TAG_STAGE, GridTracker, finished_scores
from raygrid.tracking.spool import spool_path
from raygrid.tracking.store import open_store, replay_spool

__all__ = ["RunSummary", "ray_tokenize", "run_grid"]
# Parent-run tag: the command-line overrides of the latest run (`raygrid run grid.yaml optim.lr=1e-4`).
TAG_OVERRIDES = "raygrid.overrides"


def run_grid(grid: Grid, out_dir: Path, cache_dir: str | Path, uri: str, log=print, tokenize_actors: int = 0,
             storage: str | None = None, console: Console | None = None) -> RunSummary:
    """Run every cell of `grid` that has not finished before; return what happened.

    tokenize_actors > 0 tokenizes missing cache entries on a Ray Data actor pool of that size
    (documents for classification; MLM blocks are always packed in this process). `storage` is
    where Ray keeps checkpoints and exported stage weights: a path every node sees, or a URI
    (s3://, gs://); default `<out>/ray`, fine on one node. One run per grid and `out_dir` at a
    time (raygrid.orchestration.run_lock); Ctrl-C or SIGTERM raise KeyboardInterrupt after recording the
    interrupted cells and the parent as KILLED. With a `console` (raygrid.orchestration.console),
    raygrid's messages and per-cell lines go there and Tune prints nothing itself.
    """
    log = console.line if console is not None else log
    with grid_lock(out_dir, grid.name, grid.path), sigterm_as_interrupt(), _heartbeat(console) as beat:
        return _run_locked(grid, out_dir, cache_dir, uri, log, tokenize_actors, storage, console, beat)


def _run_locked(grid: Grid, out_dir: Path, cache_dir, uri: str, log, tokenize_actors: int,
                storage: str | None, console: Console | None, beat=lambda doing: None) -> RunSummary:
    summary = RunSummary()
    open_store(uri)  # an unusable store or a dead server: one line now, before Ray starts
    replay_spool(uri, spool_path(out_dir), log)  # what an earlier run could not write
    grid = resolve_selections(grid, uri, partial(finished_scores, uri))  # `select:` values from another grid's finished cells, or refused
    finished = finished_cells(grid, uri)  # same name and same resolved config (overrides included)
    done = finished.runs
    pending = [cell for cell in grid.cells if cell.name not in done and cell.name not in finished.elsewhere]
    summary.skipped = [cell.name for cell in grid.cells if cell.name in done]
    # Refusals come before anything is recorded or started.
    links = check_parents(grid, pending, uri)  # parents not run now: their weights are known already
    check_cells(grid, pending)  # layers, positions, chunk sizes, unreachable checkpoints
    for checkpoint in sorted({cell.config.model.checkpoint for cell in pending if cell.config.model}):
        if not checkpoint.startswith(STAGE_SCHEME):
            check_checkpoint(checkpoint)
    prepared, shapes = {}, []
    if pending:
        log(f"{len(pending)} of {len(grid.cells)} cells to run: preparing their data, then starting Ray")
        beat("preparing the cells' data")
        tokenize = ray_tokenize(actors=tokenize_actors) if tokenize_actors > 0 else None
        prepared = _prepare(grid, pending, cache_dir, tokenize)
        beat("starting Ray")
        init_ray()
        reinstall_handlers()  # ray.init() replaced raygrid's SIGTERM handler with its own
        check_storage(grid, pending, storage)
        check_cache_on_every_node(grid, [entry.folder for entry in prepared.values()])
        if warning := cache_warning_for_added_nodes([entry.folder for entry in prepared.values()]):
            log(warning)
        shapes = node_shapes()
        check_placeable_cells(grid, pending, shapes)
        beat("starting the first trials")
    storage = storage or str(out_dir.resolve() / "ray")
    if summary.skipped:
        log(f"skipping {len(summary.skipped)} of {len(grid.cells)} cells already finished in MLflow "
            f"(delete their runs to rerun them)")
    if finished.changed:
        first, why = next(iter(finished.changed.items()))
        log(f"running {len(finished.changed)} finished cell(s) again: their config changed since "
            f"(e.g. {first}: {why}); their earlier runs are kept, tagged superseded")
    tracker = GridTracker(uri, grid.name, owner=Owner.me(), spool=spool_path(out_dir), warn=log)
    pending = _take_cells(grid, pending, finished, tracker, storage, log)
    described = {stage.name: stage.description for stage in grid.spec.stages}
    tracker.log_grid(grid.text, str(grid.path), len(grid.cells), grid.spec.description,
                     {name: described[name] for name in grid.stage_order})
    # What the command line changed over grid.yaml (the artifact): "" when nothing, so a rerun without overrides says so.
    tracker.set_tags(tracker.parent_id, {TAG_OVERRIDES: describe_overrides(grid.overrides)})
    # Ctrl-C, SIGTERM or a crash never leaves runs RUNNING; the heartbeat tells other runs this one lives.
    with recorded_outcome(tracker), Heartbeat(tracker.heartbeat):
        _run_stages(grid, pending, links, prepared, shapes, storage, tracker, summary, log, console)
    _summarize(tracker, grid, summary, uri, log)
    tracker.end_grid(failed=bool(summary.failed))
    return summary


@contextlib.contextmanager
def _heartbeat(console: Console | None):
    """`beat(doing)`: from the first call until the first trial starts (raygrid.orchestration.console.CellLines
    stops it) or the run ends, a line every ~15 s says what the run is doing; the quiet console only."""
    if console is None:  # --verbose: Ray's own output shows that the run is alive
        yield lambda doing: None
        return
    try:
        yield console.heartbeat
    finally:
        console.stop_heartbeat()


def _take_cells(grid: Grid, pending: list[Cell], finished, tracker: GridTracker, storage: str, log) -> list[Cell]:
    """Claim the pending cells on the shared store, close dead runs' orphans, set up resumes; the cells to run."""
    taken = tracker.claim([cell.name for cell in pending])  # a run started at the same moment may be first
    elsewhere = {name: owner for name, owner in {**finished.elsewhere, **taken}.items() if name not in finished.runs}
    pending = [cell for cell in pending if cell.name not in taken]
    if elsewhere:
        owners = sorted({owner.describe() for owner in elsewhere.values()})
        log(f"leaving {len(elsewhere)} cell(s) to the run(s) training them elsewhere ({'; '.join(owners)}): "
            f"{', '.join(elsewhere)}; rerun once they end to see them here")
    train = join(storage, "train")
    tracker.train_runs = {cell.name: train_run_path(train, train_run_name(experiment_name(grid.name, cell.stage),
                                                                         cell.name, cell.config.model_dump(mode="json")))
                          for cell in pending}
    resumable = {name: run for name, run in finished.resumable.items()
                 if name in tracker.train_runs and has_checkpoint(tracker.train_runs[name])}
    tracker.resumable = dict(resumable)
    if orphans := tracker.close_running(ORPHANED, keep=set(resumable.values())):  # their owners are dead
        log(f"closed {len(orphans)} run(s) left RUNNING by an earlier raygrid run as KILLED: {', '.join(orphans)}")
    if resumable:
        log(f"resuming {len(resumable)} cell(s) a killed raygrid run left unfinished, from their last checkpoint "
            f"and in their own MLflow runs: {', '.join(resumable)}")
    # Checkpoints nobody will resume: closed orphans', and earlier attempts' of cells that start afresh.
    resumed = {tracker.train_runs[name] for name in resumable}
    stale = [path for path in tracker.released + [path for name, path in tracker.train_runs.items()
                                                  if name not in resumable] if path not in resumed]
    # Tune's folders of earlier Tuners of this grid: nothing reads them back (this run's Tuners write anew);
    # not while another run of the grid is live, which may share --storage and be writing there.
    tune_runs = {join(storage, experiment_name(grid.name, stage)) for stage in grid.stage_order or [None]}
    for path in [*stale, *(tune_runs if not elsewhere else ())]:
        remove_folder(path)
    return pending


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
        log_to_parent(uri, grid.name, order=[cell.name for cell in grid.cells])  # tables in grid order
    except Exception as err:
        log(f"warning: the report was not logged to MLflow ({type(err).__name__}: {err}); "
            f"`raygrid report {grid.path} --save DIR` writes it")


def _run_stages(grid: Grid, pending: list[Cell], links: dict, prepared: dict, shapes: list[NodeShape], storage: str,
                tracker: GridTracker, summary: RunSummary, log, console: Console | None) -> None:
    """The pending cells, stage by stage; a cell whose parent did not finish is recorded FAILED, not run."""
    if not pending:
        return
    for stage in grid.stage_order or [None]:
        cells = []
        in_stage = [c for c in pending if c.stage == stage]
        # Parents that ran in this run (an earlier stage): their weights are known now.
        links.update(exported_links(tracker, [c for c in in_stage if c.parent is not None and c.name not in links]))
        for cell in in_stage:
            if cell.parent is not None and links[cell.name] is None:
                # recorded, so the report shows why this cell has no scores
                reason = f"its parent cell {cell.parent.name} did not finish"
                run_id = tracker.start_cell(cell.name, axis_labels(cell), cell.config.model_dump(mode="json"),
                                            {TAG_STAGE: cell.stage}, former=cell.former_names)
                tracker.end_cell(run_id, error=reason)
                summary.failed[cell.name] = reason
                continue
            cells.append(cell)
        if cells:
            if stage is not None:
                log(f"stage {stage}: {len(cells)} cell(s)")
            run_cells(grid, cells, links, prepared, shapes, storage, tracker, summary, console)
