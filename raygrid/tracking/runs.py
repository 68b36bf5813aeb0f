"""MLflow bookkeeping of a grid: one parent run per grid, one child run per cell.

The only module that imports mlflow. All writes happen in the `raygrid run` process (one writer,
which SQLite needs); workers only report to Ray. A rerun finds the parent by tag and skips cells
whose child run FINISHED; an unfinished or failed child run is kept, tagged superseded, and a new
run records the retry, so nothing recorded is lost or counted twice. Several `raygrid run`s may
share one store: each stamps its runs with its owner tags and heartbeat (raygrid.tracking.owners),
and a run left RUNNING is closed (or resumed) by another only once its owner is dead. Every call
rides out a busy store (raygrid.tracking.retry); a write that still fails is spooled to `--out`
(raygrid.tracking.spool) and written later.

What the UI shows (README "What MLflow shows"): the experiment's description is the grid's; the
parent run holds the grid file, params naming the grid, and at the end of every run a summary
(raygrid.tracking.grid_summary) and the report; each cell run its applicable params
(raygrid.tracking.cell_params) and its resolved `config.yaml`; every run MLflow's context tags
(raygrid.tracking.context).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Param, RunStatus
from mlflow.tracking import MlflowClient

from raygrid.spec.redact import redact
from raygrid.tracking.cell_params import cell_params, config_yaml, unset_keys
from raygrid.tracking.context import context_tags
from raygrid.tracking.owners import Owner
from raygrid.tracking.retry import RetryingClient, StoreUnavailable
from raygrid.tracking.sharing import TAG_CELL, TAG_ERROR, TAG_ROLE, TAG_SUPERSEDED, SharedStore
from raygrid.tracking.writes import SpooledWrites
from raygrid.tracking.grid_summary import (NOTE, TAG_BEST_CELL, Best, Counts, best_cells, cell_note, experiment_note,
                                           parent_note)
from raygrid.training.metric_names import CELLS_TOTAL

TAG_GRID, TAG_PARENT = "raygrid.grid", "mlflow.parentRunId"
# Stages: a cell's stage; the weights it exported (a storage URI) and their fingerprint; and, on a
# chained cell, where its initial weights came from (grid, cell, run id, URI) and their fingerprint.
TAG_STAGE, TAG_CHECKPOINT, TAG_WEIGHTS_OUT = "raygrid.stage", "raygrid.checkpoint", "raygrid.weights_out"
TAG_INIT_GRID, TAG_INIT_CELL, TAG_INIT_RUN = "raygrid.init_grid", "raygrid.init_cell", "raygrid.init_run_id"
TAG_INIT_CHECKPOINT, TAG_WEIGHTS_IN = "raygrid.init_checkpoint", "raygrid.weights_in"
TAG_NODE = "raygrid.node"  # the Ray node id of the cell's rank-0 worker
TAG_DATA_FROM = "raygrid.data_from"  # where the cell's workers read the tokenized cache (a folder or URI)
TAG_PRECISION = "raygrid.precision"  # what the cell ran at: optim.precision on GPU, fp32 on CPU
TAG_TRAIN_RUN = "raygrid.train_run"  # the cell's Ray Train run folder (raygrid.orchestration.resume)
TAG_UNSET = "raygrid.unset"  # comma-separated config keys the cell left unset (None: not among its params)


def tracking_uri(out_dir: str | Path) -> str:
    """$MLFLOW_TRACKING_URI, else a SQLite file under the output folder (MLflow >= 3.13 refuses ./mlruns)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{out / 'mlflow.db'}"


def _artifact_root(uri: str) -> str | None:
    """Artifacts beside a SQLite store (MLflow would otherwise write ./mlruns in the CWD)."""
    if not uri.startswith("sqlite:///"):
        return None  # a tracking server decides where artifacts go
    return (Path(uri[len("sqlite:///"):]).parent / "artifacts").as_uri()


class GridTracker(SharedStore, SpooledWrites):
    """Parent run of one grid and its cell runs, in the experiment named after the grid."""

    def __init__(self, uri: str, grid_name: str, create: bool = True, owner: Owner | None = None,
                 spool: Path | None = None, warn=None):
        """Find (or, with create, make) the grid's experiment and parent run.

        A `raygrid run` passes its `owner` (stamped on the runs it opens, raygrid.tracking.owners) and
        its `spool` file (writes the store refuses past the back-off go there; `warn` says so once).
        """
        self.uri, self.grid_name = uri, grid_name
        self.owner, self.spool, self.warn = owner, spool, warn
        self.live: set[str] = set()  # this run's open cell runs: the heartbeat refreshes them
        self.resumable: dict[str, str] = {}  # cell -> orphaned run id that start_cell reopens instead
        self.train_runs: dict[str, str] = {}  # cell -> its Ray Train run folder, tagged on its run
        self.released: list[str] = []  # Train run folders of runs close_running ended: nobody resumes them
        # Set by log_grid (a `raygrid run`): MLflow's context tags for every run, the experiment's note.
        self.context: dict[str, str] = {}
        self.note = ""
        self.client = RetryingClient(MlflowClient(tracking_uri=uri))
        self.replay_spool()
        experiment = self.client.get_experiment_by_name(grid_name)
        if experiment is None and not create:
            raise LookupError(f"no MLflow experiment named {grid_name!r} at {uri}")
        self.experiment_id = experiment.experiment_id if experiment else self._create_experiment()
        parents = self._search(f"tags.`{TAG_ROLE}` = 'parent'")
        if parents:
            self.parent_id = parents[-1].info.run_id  # the oldest: the one two racing creators agree on
        elif create:
            self.parent_id = self._create_parent()
        else:
            raise LookupError(f"no raygrid parent run for grid {grid_name!r} at {uri}")
        self.claimed_at, self.claimed = 0.0, []

    def _create_experiment(self) -> str:
        try:
            return self.client.create_experiment(self.grid_name, artifact_location=_artifact_root(self.uri))
        except Exception:  # another raygrid run created it a moment ago
            experiment = self.client.get_experiment_by_name(self.grid_name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _create_parent(self) -> str:
        """A new parent run; when another run created one at the same moment, the oldest stays, the other goes."""
        mine = self.client.create_run(self.experiment_id, run_name=self.grid_name,
                                      tags={TAG_GRID: self.grid_name, TAG_ROLE: "parent"}).info.run_id
        parents = self._search(f"tags.`{TAG_ROLE}` = 'parent'")
        oldest = min(parents, key=lambda r: (r.info.start_time, r.info.run_id)).info.run_id
        if oldest != mine:
            self.client.delete_run(mine)
        return oldest

    def _search(self, filter_string: str):
        query = f"tags.`{TAG_GRID}` = '{self.grid_name}' and {filter_string}"
        return self.client.search_runs([self.experiment_id], query, max_results=50000,
                                       order_by=["attributes.start_time DESC"])

    def cell_runs(self, cell: str | None = None) -> list:
        """Current (not superseded) child runs; with `cell`, only that cell's (a query by tag, not a scan)."""
        query = f"tags.`{TAG_ROLE}` = 'cell'"
        if cell is not None and not ("'" in cell and '"' in cell):
            # Filter strings have no escapes: quote with the character the name lacks (a name with
            # both is matched by the check below alone).
            quote = '"' if "'" in cell else "'"
            query += f" and tags.`{TAG_CELL}` = {quote}{cell}{quote}"
        runs = self._search(query)
        return [r for r in runs if r.data.tags.get(TAG_SUPERSEDED) != "true"
                and (cell is None or r.data.tags.get(TAG_CELL) == cell)]

    def finished_cells(self) -> dict[str, str]:
        """cell name -> run id of cells whose run FINISHED."""
        return {r.data.tags[TAG_CELL]: r.info.run_id for r in self.cell_runs() if r.info.status == "FINISHED"}

    def exported_weights(self, cell: str) -> tuple[str, str] | None:
        """(run id, storage URI) of the weights a FINISHED cell exported, or None."""
        for run in self.cell_runs(cell):
            if run.info.status == "FINISHED" and run.data.tags.get(TAG_CHECKPOINT):
                return run.info.run_id, run.data.tags[TAG_CHECKPOINT]
        return None

    def log_grid(self, grid_text: str, grid_path: str, n_cells: int, description: str = "",
                 stages: dict[str, str] | None = None) -> None:
        """Open the parent run for a `raygrid run`: grid file, params, context tags, descriptions.

        `stages`: stage name -> its description, in the order the stages run ({} without stages).
        """
        self.client.set_terminated(self.parent_id, "RUNNING")
        if self.owner is not None:
            self.set_tags(self.parent_id, self.owner.tags())
        if TAG_ERROR in self.client.get_run(self.parent_id).data.tags:  # an earlier run's interruption
            self.client.delete_tag(self.parent_id, TAG_ERROR)
        self.client.log_text(self.parent_id, redact(grid_text), "grid.yaml")  # no URI credentials in MLflow
        self.context = context_tags(grid_path)
        self.note = experiment_note(self.grid_name, description, grid_path, stages or {})
        self.client.set_experiment_tag(self.experiment_id, NOTE, self.note)
        self.set_tags(self.parent_id, {**self.context, "raygrid.grid_file": grid_path, "raygrid.cells": str(n_cells),
                                       NOTE: parent_note(self.note, None, [], self.experiment_id)})
        params = {"grid.name": self.grid_name, "grid.file": grid_path, "grid.cells": str(n_cells)}
        if stages:
            params["grid.stages"] = ",".join(stages)
        self._log_new_params(self.parent_id, params)

    def _log_new_params(self, run_id: str, params: dict[str, str]) -> None:
        """Log the params the run lacks. MLflow params never change: when an edited grid file
        changes a value (more cells, say), the first value stays and the tags (raygrid.cells,
        raygrid.grid_file) and the `grid.yaml` artifact carry the current one."""
        have = self.client.get_run(run_id).data.params
        new = {k: v for k, v in params.items() if k not in have}
        if new:
            self.client.log_batch(run_id, params=_params(new))

    def log_summary(self, counts: Counts) -> list[Best]:
        """End of a `raygrid run`: counts and best cell(s) as parent metrics and tags, and in its description."""
        bests = best_cells(self.cell_runs())
        parent = self.client.get_run(self.parent_id)
        for key in parent.data.tags:  # a best cell of an earlier run (e.g. of a dataset since removed)
            if key == TAG_BEST_CELL or key.startswith(TAG_BEST_CELL + "."):
                self.client.delete_tag(self.parent_id, key)
        metrics = {**counts.metrics(), **{k: v for best in bests for k, v in best.metrics().items()}}
        # step = how many `raygrid run`s summarised before: the metric's history is one point per run
        step = len(self.client.get_metric_history(self.parent_id, CELLS_TOTAL))
        self.log_metrics(self.parent_id, metrics, step=step)
        intro = self.note or self.client.get_experiment(self.experiment_id).tags.get(NOTE, "")
        note = parent_note(intro, counts, bests, self.experiment_id)
        self.set_tags(self.parent_id, {**dict(best.tag() for best in bests), NOTE: note})
        return bests

    def start_cell(self, name: str, axis_values: dict[str, str], config: dict, tags: dict[str, str] | None = None,
                   former: tuple[str, ...] = ()) -> str:
        """New child run for a cell; earlier runs of the same cell (also under its `former` names) are marked
        superseded, except a run another live `raygrid run` still owns. A cell in `resumable` reopens its run."""
        if name in self.train_runs:
            tags = {**(tags or {}), TAG_TRAIN_RUN: self.train_runs[name]}
        if name in self.resumable:
            return self.reopen_cell(self.resumable.pop(name), tags)
        for old in [run for cell in (name, *former) for run in self.cell_runs(cell)]:
            if not self._owned_by_other_live(old):
                self.client.set_tag(old.info.run_id, TAG_SUPERSEDED, "true")
        tags = {**self.context, **(tags or {}), TAG_GRID: self.grid_name, TAG_ROLE: "cell", TAG_CELL: name,
                TAG_PARENT: self.parent_id, NOTE: cell_note(self.grid_name, config.get("kind", "finetune"), axis_values),
                TAG_UNSET: ",".join(unset_keys(config)), **(self.owner.tags() if self.owner else {})}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.live.add(run.info.run_id)
        self.client.log_batch(run.info.run_id, params=_params(cell_params(config, axis_values)))
        self.client.log_text(run.info.run_id, config_yaml(config), "config.yaml")  # the validated cell, complete
        return run.info.run_id

    def end_cell(self, run_id: str, error: str | None = None) -> None:
        self.live.discard(run_id)
        if error:  # also atop the run's description, where the UI shows it first
            try:
                note = self.client.get_run(run_id).data.tags.get(NOTE, "")
            except StoreUnavailable:
                note = ""
            self.set_tags(run_id, {TAG_ERROR: error[:4900], NOTE: f"**Failed**: {error[:4000]}\n\n{note}"})
        self._terminate(run_id, RunStatus.to_string(RunStatus.FAILED if error else RunStatus.FINISHED))

    def end_grid(self, failed: bool = False) -> None:
        """Close the parent, unless another live `raygrid run` of this grid still runs cells (it closes it)."""
        self.release_claim()
        if not self._others_active():
            self._terminate(self.parent_id, "FAILED" if failed else "FINISHED")

    def close_running(self, reason: str, status: str = "KILLED", keep: set[str] = frozenset()) -> list[str]:
        """End this grid's RUNNING cell runs (superseded ones too) with `reason`; their cell names.

        Only runs this `raygrid run` owns or whose owner is dead: a run another live `raygrid run` owns
        is never touched. Run ids in `keep` (orphans about to be resumed) are left open.
        """
        closed = []
        for run in self._search(f"tags.`{TAG_ROLE}` = 'cell' and attributes.status = 'RUNNING'"):
            if run.info.run_id in keep or self._owned_by_other_live(run):
                continue
            self.live.discard(run.info.run_id)
            if run.data.tags.get(TAG_TRAIN_RUN):
                self.released.append(run.data.tags[TAG_TRAIN_RUN])
            self.set_tags(run.info.run_id, {TAG_ERROR: reason[:4900]})
            self._terminate(run.info.run_id, status)
            closed.append(run.data.tags.get(TAG_CELL, run.info.run_id))
        return closed

    def interrupt_grid(self, reason: str) -> None:
        """Ctrl-C: this run's running cells end KILLED, with the reason; the parent too, unless others run on."""
        self.close_running(reason)
        self.release_claim()
        if not self._others_active():
            self.set_tags(self.parent_id, {TAG_ERROR: reason})
            self._terminate(self.parent_id, "KILLED")

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.parent_id, local_path, artifact_path)


def _params(params: dict[str, Any]) -> list[Param]:
    return [Param(k, str(v)[:6000]) for k, v in params.items()]


def fetch_runs(uri: str, grid_name: str) -> pd.DataFrame:
    """One row per current cell run: tags, params (`params.*`) and latest metrics (`metrics.*`)."""
    tracker = GridTracker(uri, grid_name, create=False)
    rows = []
    for run in tracker.cell_runs():
        tags = run.data.tags
        row = {"cell": tags.get(TAG_CELL), "status": run.info.status, "run_id": run.info.run_id,
               "error": tags.get(TAG_ERROR, ""), "stage": tags.get(TAG_STAGE, "")}
        row.update({f"tags.{k}": v for k, v in tags.items() if k.startswith(("raygrid.init", "raygrid.weights",
                                                                             "raygrid.checkpoint"))})
        row.update({f"params.{k}": v for k, v in run.data.params.items()})
        row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def metric_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one metric, e.g. val_f1_macro per epoch."""
    client = MlflowClient(tracking_uri=uri)
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def grid_names(uri: str) -> list[str]:
    """Names of the grids recorded at `uri` (experiments holding a raygrid parent run)."""
    client = MlflowClient(tracking_uri=uri)
    names = []
    for experiment in client.search_experiments():
        if client.search_runs([experiment.experiment_id], f"tags.`{TAG_ROLE}` = 'parent'", max_results=1):
            names.append(experiment.name)
    return sorted(names)


def finished_scores(uri: str, grid_name: str, metric: str) -> dict[str, tuple[str, float]]:
    """cell -> (run id, `metric`) of the grid's FINISHED runs that logged it; {} if the grid never ran.

    What `select:` chooses from (raygrid.spec.selection); the newest run of a cell wins.
    """
    try:
        runs = fetch_runs(uri, grid_name)
    except LookupError:
        return {}
    column = f"metrics.{metric}"
    if runs.empty or column not in runs:
        return {}
    done = runs[(runs["status"] == "FINISHED") & runs[column].notna()]
    scores: dict[str, tuple[str, float]] = {}
    for cell, run_id, value in zip(done["cell"], done["run_id"], done[column]):  # newest run first
        if not math.isnan(float(value)):
            scores.setdefault(cell, (run_id, float(value)))
    return scores
