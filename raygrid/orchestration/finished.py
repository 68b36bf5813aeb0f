"""Which cells of a grid already finished: a cell's identity is its name *and* its resolved config.

A cell is skipped only when its current FINISHED run recorded the same resolved config as the
cell has now (the run's params are that config, flattened). So a command-line override, or an
edit of the grid file, that changes a cell makes it a new cell: it runs again and its new run
supersedes the old one (kept in MLflow, tagged `raygrid.superseded`); rerunning with the same
override skips it. A chained cell also runs again when its parent does, or when the parent
weights it started from are no longer its parent's current ones.

Compared: the config keys both the run and the cell have (a key added to raygrid's config since
the run was recorded is not a change). Local paths (data.path, model.checkpoint,
model.tokenizer) compare by their last part: the same folder reached from elsewhere (a moved
checkout, a `ray job submit --working-dir` copy) is the same cell; data content is checked by the
tokenized cache's hash anyway.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath

from raygrid.orchestration.parent_links import exported_weights
from raygrid.spec.config import STAGE_SCHEME, upgrade_recorded
from raygrid.spec.grid import Cell, Grid
from raygrid.spec.dotted import flatten
from raygrid.spec.redact import redact
from raygrid.tracking.owners import Owner
from raygrid.tracking.runs import TAG_CELL, TAG_INIT_RUN, TAG_UNSET, GridTracker

PATH_KEYS = ("data.path", "model.checkpoint", "model.tokenizer")
PARAM_LIMIT = 6000  # MLflow param values are cut there when logged (raygrid.tracking.runs)


@dataclass
class Finished:
    runs: dict[str, str] = field(default_factory=dict)  # cell name -> run id of its matching FINISHED run
    changed: dict[str, str] = field(default_factory=dict)  # cell name -> why its finished run no longer counts
    # cell name -> the live `raygrid run` (another process, maybe another host) that runs or claimed it
    elsewhere: dict[str, Owner] = field(default_factory=dict)
    # cell name -> run id of its RUNNING run whose owner died, same config: reopened and resumed, not redone
    resumable: dict[str, str] = field(default_factory=dict)


def finished_cells(grid: Grid, uri: str) -> Finished:
    """The cells of `grid` whose current run FINISHED with the config the cell has now."""
    found = Finished()
    try:
        tracker = GridTracker(uri, grid.name, create=False)
    except LookupError:  # first run of this grid
        return found
    weights: dict[tuple[str, str], tuple[str, str] | None] = {}  # (grid, parent cell) -> its exported weights
    runs = {run.data.tags.get(TAG_CELL): run for run in tracker.cell_runs() if run.info.status == "FINISHED"}
    _running(grid, tracker, found)
    for cell in grid.cells:  # parents come before their children (stage order)
        run = cell.recorded(runs)  # under its name, or the one an earlier raygrid gave it
        if run is None:
            continue
        why = config_change(run.data.params, cell, unset_in(run.data.tags))
        if why is None and cell.parent is not None and cell.parent_grid == grid.name and cell.parent.name not in found.runs:
            why = f"its parent cell {cell.parent.name} runs again"
        if why is None and cell.parent is not None:
            why = _stale_parent(uri, cell, run.data.tags.get(TAG_INIT_RUN), weights)
        if why is None:
            found.runs[cell.name] = run.info.run_id
        else:
            found.changed[cell.name] = why
    return found


def _running(grid: Grid, tracker: GridTracker, found: Finished) -> None:
    """Cells another live run owns (left to it, with their chained children), and dead runs' cells to resume."""
    found.elsewhere = tracker.claimed_elsewhere([cell.name for cell in grid.cells])
    for cell in grid.cells:
        parent = found.elsewhere.get(cell.parent.name) if cell.parent and cell.parent_grid == grid.name else None
        if parent is not None:
            found.elsewhere.setdefault(cell.name, parent)
    # RUNNING with a dead owner, or the latest run of a cell an interrupted run (Ctrl-C, SIGTERM) closed KILLED
    orphans = {**_killed(tracker), **tracker.orphans()}
    for cell in grid.cells:
        run = cell.recorded(orphans)
        if cell.name not in found.elsewhere and run is not None and \
                config_change(run.data.params, cell, unset_in(run.data.tags)) is None:
            found.resumable[cell.name] = run.info.run_id


def _killed(tracker: GridTracker) -> dict:
    """cell -> its latest current run, where that run ended KILLED (not FAILED: a failure starts afresh)."""
    latest = {}
    for run in tracker.cell_runs():  # newest first
        latest.setdefault(run.data.tags.get(TAG_CELL), run)
    return {cell: run for cell, run in latest.items() if run.info.status == "KILLED"}


def unset_in(tags: dict[str, str]) -> set[str] | None:
    """The keys a run recorded as unset (raygrid.tracking.runs.TAG_UNSET); None for runs from before that tag."""
    return None if TAG_UNSET not in tags else {key for key in tags[TAG_UNSET].split(",") if key}


def config_change(params: dict[str, str], cell: Cell, unset: set[str] | None = None) -> str | None:
    """The first config key whose recorded value differs from the cell's now (`key: old -> new`), or None.

    A key absent from the run's params is a change only when the run recorded it (or its section)
    as unset and it is set now; otherwise it is a key raygrid added since, at its default. Keys
    raygrid renamed are read under today's name (optim.mixed_precision True -> optim.precision bf16).
    """
    params = upgrade_recorded(params)
    former = _former_values(cell)
    for key, value in flatten(cell.config.model_dump(mode="json")).items():
        if key not in params:
            if value is not None and unset and any(key == u or key.startswith(f"{u}.") for u in unset):
                return f"{key}: unset -> {_clip(str(value))}"
            continue
        now, then = redact(str(value))[:PARAM_LIMIT], params[key]  # params are recorded redacted
        if key in PATH_KEYS and _local_path(now) and _local_path(then):
            now, then = PurePath(now).name, PurePath(then).name
        if now != then and then not in former.get(key, ()):
            return f"{key}: {_clip(params[key])} -> {_clip(str(value))}"
    return None


def _former_values(cell: Cell) -> dict[str, tuple[str, ...]]:
    """Values a run recorded for this cell before cell names changed: a chained cell's link names its parent."""
    if cell.parent is None:
        return {}
    return {"model.checkpoint": tuple(f"{STAGE_SCHEME}{cell.parent_grid}/{name}" for name in cell.parent.former_names)}


def _local_path(value: str) -> bool:
    return value.startswith("/") and "://" not in value


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _stale_parent(uri: str, cell: Cell, init_run: str | None, weights: dict) -> str | None:
    """Why a finished chained cell's weights are not its parent's current ones, or None (one query per parent)."""
    key = (cell.parent_grid, cell.parent.name)
    if key not in weights:
        try:
            weights[key] = exported_weights(GridTracker(uri, cell.parent_grid, create=False), cell.parent)
        except LookupError:  # the parent grid is gone: raygrid.orchestration.parent_links refuses if it must run
            weights[key] = None
    hit = weights[key]
    if hit is not None and init_run is not None and hit[0] != init_run:
        return f"its parent cell {cell.parent.name} finished again since"
    return None
