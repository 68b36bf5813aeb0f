"""Checks of a grid's cells against their checkpoints, before Ray starts (run) or instead of it (plan).

Everything here would otherwise fail inside a trial, after Ray started and MLflow recorded a run:
a missing checkpoint or one without config.json, a hub id that cannot be reached offline,
`model.n_freeze` above the encoder's layers, `data.max_len` beyond its learned positions, an LSH
`chunk_size` longer than `data.max_len`. Local checkpoints are read as plain JSON (no torch, no
transformers); hub ids only when `hub=True` (`raygrid run`), through transformers.
"""
from __future__ import annotations

import json
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
