"""Disk a finished cell gives back: its resume state, keeping only the weights later stages start from.

Every epoch Ray Train keeps one checkpoint per cell (model, optimizer state and the best weights:
~360 MB for MiniLM), needed only while the cell might restart. Once the cell has finished, its
metrics live in MLflow and, for an MLM cell, its exported model folder is what `init:` stages read;
everything else is deleted (`resources.keep_checkpoints: true` keeps it, e.g. for debugging).
"""
from __future__ import annotations

import pyarrow.fs as pafs

RESUME_STATE = "state.pt"  # the resumable state inside a checkpoint folder (raygrid.orchestration.trial)


def prune_finished_run(fs: pafs.FileSystem, run_path: str, keep: str | None = None) -> list[str]:
    """Delete the checkpoint folders of a finished Train run except `keep`, and `keep`'s resume state.

    `run_path` and `keep` are paths on `fs` (as Ray reports them). Returns what was deleted.
    """
    deleted = []
    keep = keep.rstrip("/") if keep else None
    for info in fs.get_file_info(pafs.FileSelector(run_path, allow_not_found=True)):
        if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_") \
                and info.path.rstrip("/") != keep:
            fs.delete_dir(info.path)
            deleted.append(info.path)
    if keep:
        state = f"{keep}/{RESUME_STATE}"
        if fs.get_file_info(state).type == pafs.FileType.File:
            fs.delete_file(state)
            deleted.append(state)
    return deleted
