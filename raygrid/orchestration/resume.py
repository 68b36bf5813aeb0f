"""Resume, don't restart: each cell's Ray Train run has a stable name, so a rerun continues it.

Ray Train V2 restores a run from the checkpoint manager snapshot it keeps in
`<storage_path>/<RunConfig.name>/` (ray/train/v2/_internal/execution/checkpoint/checkpoint_manager.py,
`_maybe_load_state_from_storage`): rerun with the same name and storage path and the workers'
`ray.train.get_checkpoint()` returns the last checkpoint. So the name is derived from what the cell
*is* (its Tune experiment: grid and stage, its name, its resolved config), never from Tune's trial
id: after a SIGKILLed `raygrid run` the same command continues each unfinished cell from its last
epoch. A cell whose config changed gets a new name (it must not start from the old weights); the
folder of a run that will not be resumed (config changed, its MLflow run closed or superseded,
or a finished cell run again from scratch) is deleted, and so is Tune's folder of an earlier Tuner of
the grid (trial folders and state files raygrid never reads back: results live in MLflow, weights
in the Train runs), so disk after a crashed-then-finished grid is what a clean run leaves.
"""
from __future__ import annotations

import hashlib
import json

import pyarrow.fs as pafs


def experiment_name(grid_name: str, stage: str | None) -> str:
    """The Tune experiment of a cell (raygrid.orchestration.tuner): the grid, or grid-stage."""
    return grid_name if stage is None else f"{grid_name}-{stage}"


def train_run_name(experiment: str, cell: str, config: dict) -> str:
    """`cell-<hash>`: the same cell and config give the same name, run after run."""
    identity = json.dumps([experiment, cell, config], sort_keys=True, default=str)
    return f"cell-{hashlib.sha256(identity.encode()).hexdigest()[:20]}"


def train_run_path(train_storage: str, name: str) -> str:
    return f"{train_storage.rstrip('/')}/{name}"


def remove_folder(path: str) -> bool:
    """Delete a Train run or Tune experiment folder (local path or URI); False when there was none."""
    fs, inner = pafs.FileSystem.from_uri(path if "://" in path else f"file://{path}")
    if fs.get_file_info(inner).type != pafs.FileType.Directory:
        return False
    fs.delete_dir(inner)
    return True


def has_checkpoint(path: str) -> bool:
    """Whether Ray Train would restore this run (its checkpoint manager snapshot is there).

    A cell is resumed in its old MLflow run only then: reopened without one, it would train from
    epoch 0 again and its history would show those epochs twice.
    """
    fs, inner = pafs.FileSystem.from_uri(path if "://" in path else f"file://{path}")
    return fs.get_file_info(f"{inner}/checkpoint_manager_snapshot.json").type == pafs.FileType.File
