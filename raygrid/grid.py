"""Grid files -> validated cells.

A grid is a `base` cell plus `axes` (dotted paths into the cell -> list of values); the cartesian
product of the axes gives the cells. Every cell is validated before anything runs, so a bad value
in any combination fails with one line naming the file and the dotted key.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from raygrid.config import CellConfig, GridConfig

# Short names used in cell names, so `model.pooling=cls` reads `pooling=cls`.
_PATH_PREFIXES = ("./", "../", "/", "~")


class GridError(ValueError):
    """A grid file that cannot run; the message is one line naming the file and key."""


@dataclass(frozen=True)
class Cell:
    """One combination of axis values: a Ray Tune trial and an MLflow child run."""

    name: str
    axis_values: dict[str, Any]  # dotted axis key -> value, in axis order
    config: CellConfig


@dataclass(frozen=True)
class Grid:
    path: Path
    spec: GridConfig
    cells: list[Cell]
    text: str  # the YAML as written, logged to the parent run

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def blocks(self) -> list[dict[str, list]]:
        """The axes as a list of cartesian blocks (one block for a plain mapping)."""
        return self.spec.axes if isinstance(self.spec.axes, list) else [self.spec.axes]


def load_grid(path: str | Path) -> Grid:
    """Read, validate and expand a grid file; raise GridError with a one-line message."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise GridError(f"{path}: cannot read grid file ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise GridError(f"{path}:{where} invalid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise GridError(f"{path}: a grid file is a mapping with keys name, base, axes, resources")
    try:
        spec = GridConfig.model_validate(raw)
    except ValidationError as err:
        raise GridError(f"{path}: {describe(err)}") from None
    base = _resolve_paths(spec.base, path.parent)
    grid = Grid(path=path, spec=spec, cells=[], text=text)
    grid.cells.extend(_make_cell(path, base, combo) for block in grid.blocks for combo in _combinations(block))
    _check_unique(path, grid.cells)
    return grid


def describe(err: ValidationError, prefix: str = "") -> str:
    """First validation error as `dotted.key: message (got value)`."""
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"] if not _is_union_tag(p)]
    key = ".".join([prefix] + loc if prefix else loc) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    got = first.get("input")
    shown = "" if first["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) else f" (got {got!r})"
    return f"{key}: {msg}{shown}"


def _is_union_tag(part: Any) -> bool:
    # pydantic inserts the discriminator value ('favor', ...) or a union member's type
    # ('dict[str,list[any]]') into error locations; neither is a key the user wrote.
    return part in ("softmax", "favor", "lsh") or (isinstance(part, str) and "[" in part)


def _combinations(axes: dict[str, list]):
    keys = list(axes)
    for values in itertools.product(*(axes[k] for k in keys)):
        yield dict(zip(keys, values))


def _make_cell(path: Path, base: dict, combo: dict[str, Any]) -> Cell:
    raw = copy.deepcopy(base)
    for key, value in combo.items():
        settings = value["set"] if is_bundle(value) else {key: value}
        for dotted, setting in settings.items():
            try:
                set_dotted(raw, dotted, _resolve_paths(setting, path.parent))
            except KeyError as err:
                raise GridError(f"{path}: axes.{key}: {err.args[0]}") from None
    try:
        config = CellConfig.model_validate(raw)
    except ValidationError as err:
        detail = describe(err)
        key = detail.split(":", 1)[0]
        from_axis = any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in combo)
        where = ", ".join(f"{k}={short_value(v)}" for k, v in combo.items())
        cell = f" (cell {where})" if combo else ""
        raise GridError(f"{path}: {'axes' if from_axis else 'base'}.{detail}{cell}") from None
    return Cell(name=cell_name(combo), axis_values=combo, config=config)


def is_bundle(value: Any) -> bool:
    """An axis value that sets several keys: {label: name, set: {dotted.key: value, ...}}."""
    return isinstance(value, dict) and "set" in value and set(value) <= {"label", "set"} and isinstance(value["set"], dict)


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """Set tree[a][b][c] for 'a.b.c'. Dict values merge into dicts, unless their `kind` differs."""
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise KeyError(f"'{part}' is not a section")
        node = child
    old = node.get(leaf)
    if isinstance(value, dict) and isinstance(old, dict) and value.get("kind", old.get("kind")) == old.get("kind"):
        node[leaf] = {**old, **value}
    else:
        node[leaf] = value


def cell_name(combo: dict[str, Any]) -> str:
    """Deterministic name from axis values only, e.g. `pooling=cls,n_freeze=1,seed=0`."""
    if not combo:
        return "base"
    return ",".join(f"{key.split('.')[-1]}={short_value(value)}" for key, value in combo.items())


def short_value(value: Any) -> str:
    """Readable, filesystem-safe label of an axis value (dicts become `kind-k=v-...`)."""
    if is_bundle(value) and "label" in value:
        text = str(value["label"])
    elif isinstance(value, dict):
        parts = [str(value.get("kind", ""))] if "kind" in value else []
        parts += [f"{k}={short_value(v)}" for k, v in value.items() if k != "kind"]
        text = "-".join(p for p in parts if p)
    elif isinstance(value, str) and value.startswith(_PATH_PREFIXES):
        text = Path(value).name
    else:
        text = str(value)
    text = re.sub(r"[^A-Za-z0-9_.=+-]", "_", text)
    if len(text) > 64:  # long values (paths, big dicts) stay unique through a hash suffix
        digest = hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]
        text = f"{text[:55]}~{digest}"
    return text


def _resolve_paths(value: Any, root: Path) -> Any:
    """Make relative file paths (./x, ../x) absolute against the grid file's folder."""
    if isinstance(value, dict):
        return {k: _resolve_paths(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_paths(v, root) for v in value]
    if isinstance(value, str) and value.startswith(("./", "../")):
        return str((root / value).resolve())
    if isinstance(value, str) and value.startswith("~"):
        return str(Path(value).expanduser())
    return value


def _check_unique(path: Path, cells: list[Cell]) -> None:
    seen: dict[str, Cell] = {}
    for cell in cells:
        if cell.name in seen:
            raise GridError(f"{path}: axes: two cells share the name {cell.name!r}; axis values must differ")
        seen[cell.name] = cell
