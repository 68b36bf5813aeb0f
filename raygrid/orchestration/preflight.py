"""Checks of a grid's cells against their checkpoints, before Ray starts (run) or instead of it (plan).

Everything here would otherwise fail inside a trial, after Ray started and MLflow recorded a run:
a missing checkpoint or one without config.json, a hub id that cannot be reached offline,
`model.n_freeze` above the encoder's layers, `data.max_len` beyond its learned positions, an LSH
`chunk_size` longer than `data.max_len`. Local checkpoints are read as plain JSON (no torch, no
transformers); hub ids only when `hub=True` (`raygrid run`), through transformers.

Also the folders and files a run writes (`check_run_paths`, `check_store_file`): an `--out`,
`--cache-dir` or `--storage` that cannot be written or is a file, grid names longer than the file
system allows, an `mlflow.db` that is not an SQLite database or is cut short. Each is one line
naming the path, before anything is created or Ray starts.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from pathlib import Path

from raygrid.attention.registry import variant_of
from raygrid.spec.config import STAGE_SCHEME
from raygrid.spec.grid import Cell, Grid, GridError
from raygrid.spec.paths import PKG_SCHEME, resolve_location

# Families whose learned position table reserves its first padding_idx + 1 rows (RoBERTa's layout).
_OFFSET_FAMILIES = ("roberta", "xlm-roberta", "camembert", "data2vec-text", "longformer")
# How a failed hub request looks when there is no network (httpx, requests, huggingface_hub).
_OFFLINE_ERRORS = ("ConnectError", "ConnectTimeout", "ConnectionError", "LocalEntryNotFoundError",
                   "OfflineModeIsEnabled", "ReadTimeout", "MaxRetryError")


def check_cells(grid: Grid, cells: list[Cell], hub: bool = True) -> None:
    """Raise GridError (one line: file, key, cell) for the first cell its checkpoint cannot run."""
    configs: dict[str, dict | None] = {}
    for cell in cells:
        cfg = cell.config
        if cfg.model is None:
            continue
        length_check = variant_of(cfg.attention).length_check  # e.g. an LSH chunk longer than the input
        if length_check is not None and (problem := length_check(cfg.attention, cfg.data.max_len)):
            _refuse(grid, cell, problem)
        if cfg.model.checkpoint.startswith(STAGE_SCHEME):
            continue  # an earlier stage's weights: the same architecture as that stage's root
        if cfg.model.checkpoint not in configs:
            configs[cfg.model.checkpoint] = checkpoint_config(cfg.model.checkpoint, hub, lambda m: _refuse(grid, cell, m))
        config = configs[cfg.model.checkpoint]
        if config is not None:
            _check_shape(grid, cell, {**config, **cfg.model.config_overrides})


def checkpoint_config(location: str, hub: bool, refuse) -> dict | None:
    """The checkpoint's config.json as a dict; None for a hub id when `hub` is False."""
    local = location.startswith((PKG_SCHEME, "/", "./", "../", "~")) or Path(location).expanduser().exists()
    if local:
        try:
            folder = Path(resolve_location(location)).expanduser()
        except FileNotFoundError as err:
            refuse(f"model.checkpoint: {err}")
        if not folder.is_dir():
            refuse(f"model.checkpoint: {location} does not exist")
        if not (folder / "config.json").is_file():
            refuse(f"model.checkpoint: {folder} has no config.json (not a transformers model folder)")
        return json.loads((folder / "config.json").read_text())
    if not hub:
        return None
    return _hub_config(location, refuse)


def _hub_config(hub_id: str, refuse) -> dict:
    from transformers import AutoConfig  # late: only `run` with a hub checkpoint needs it

    try:
        return AutoConfig.from_pretrained(hub_id).to_dict()
    except Exception as err:  # noqa: BLE001 - translated into one line naming the key
        if _is_offline(err):
            refuse(f"model.checkpoint: cannot reach the Hugging Face hub for {hub_id!r} (offline?); download it "
                   f"once and point model.checkpoint at the local folder")
        refuse(f"model.checkpoint: cannot load {hub_id!r} ({type(err).__name__}: {str(err).splitlines()[0][:200]})")


def _is_offline(err: BaseException | None) -> bool:
    while err is not None:
        if type(err).__name__ in _OFFLINE_ERRORS:
            return True
        err = err.__cause__ or err.__context__
    return False


def offline_hint(err: BaseException, what: str) -> str | None:
    """A one-line explanation when `err` (reading a hub dataset) means there is no network; else None."""
    if not _is_offline(err):
        return None
    return (f"data.dataset: cannot reach the Hugging Face hub for {what} (offline?); point data.path at a "
            f"local folder of train/validation/test files")


def _check_shape(grid: Grid, cell: Cell, config: dict) -> None:
    model, data = cell.config.model, cell.config.data
    layers = next((config[k] for k in ("num_hidden_layers", "n_layers", "num_layers") if k in config), None)
    if layers is not None and model.n_freeze > layers:
        _refuse(grid, cell, f"model.n_freeze: {model.n_freeze} is more than the checkpoint's {layers} layers")
    rows = config.get("max_position_embeddings")
    if rows is None or model.positions == "rope" or model.extend_positions:
        return
    offset = config.get("pad_token_id", 0) + 1 if config.get("model_type") in _OFFSET_FAMILIES else 0
    if data.max_len > rows - offset:
        _refuse(grid, cell, f"data.max_len: {data.max_len} exceeds the checkpoint's {rows - offset} learned "
                            f"positions; set model.extend_positions: true (Longformer's copy) or lower it")


def _refuse(grid: Grid, cell: Cell, message: str):
    label = f" (cell {cell.name})" if cell.name != "base" else ""
    raise GridError(f"{grid.path}: {message}{label}")


# --- Folders and files a run writes, checked before anything is created or Ray starts -------------------------

SQLITE_HEADER = b"SQLite format 3\x00"
# Suffixes raygrid adds to a grid name where it becomes a file or folder name (<grid>.lock, <grid>-<stage>, <grid>.md).
_NAME_SUFFIX = len(".lock")


def check_run_paths(grid: Grid, out: Path, cache: str, storage: str | None) -> None:
    """--out, --cache-dir and a local --storage writable folders; the grid's names within the file system's limit."""
    check_writable(out, "--out")
    for option, folder in (("--cache-dir", cache), ("--storage", storage)):
        if folder and "://" not in folder:  # a URI (s3://, gs://) is checked by its filesystem when used
            check_writable(Path(folder), option)
    check_name_lengths(grid, out)


def check_writable(folder: Path, option: str) -> None:
    """Refuse (GridError naming the option and path) a folder raygrid cannot create or write into."""
    folder = Path(folder).expanduser()
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise GridError(f"{option} {folder}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".raygrid-write-test-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise GridError(f"{option} {folder}: cannot write there ({err.strerror}); choose a writable folder") from None


def check_name_lengths(grid: Grid, folder: Path) -> None:
    """Refuse grid and stage names longer than the file system allows (they become file and folder names)."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255  # ext4, xfs, APFS, NTFS
    for name in (grid.name, *(f"{grid.name}-{stage}" for stage in grid.stage_order)):
        if len(name) + _NAME_SUFFIX > limit:
            key = "name" if name == grid.name else "stages[].name"
            raise GridError(f"{grid.path}: {key}: {len(name)} characters; it names files and folders, which "
                            f"{folder} limits to {limit} (with raygrid's suffixes: at most {limit - _NAME_SUFFIX})")


def check_store_file(uri: str) -> None:
    """Refuse a SQLite tracking store that is not a database or is cut short (a copy interrupted, a full disk)."""
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri[len("sqlite:///"):])
    if not path.is_file() or path.stat().st_size == 0:
        return  # MLflow creates it
    what_to_do = "move it away to start a new store, or restore it from a backup"
    with path.open("rb") as handle:
        header = handle.read(100)
    if not header.startswith(SQLITE_HEADER):
        raise GridError(f"{path}: the MLflow store is not an SQLite database (file is not a database); {what_to_do}")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The header's page count is valid only when the change counter matches "version-valid-for" (SQLite file format).
    valid = header[24:28] == header[92:96]
    wal = path.with_name(path.name + "-wal").exists()
    if len(header) < 100 or (valid and not wal and path.stat().st_size < page_size * pages):
        raise GridError(f"{path}: the MLflow store is truncated ({path.stat().st_size} of "
                        f"{page_size * pages} bytes); {what_to_do}")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as err:
        if "locked" in str(err) or "busy" in str(err):
            return  # another writer: the store's own retries deal with that
        raise GridError(f"{path}: the MLflow store cannot be read ({err}); {what_to_do}") from None
