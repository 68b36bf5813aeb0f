"""`load_grid`: a grid file -> its validated cells, stages expanded and `select:` sources loaded.

The one place that puts raygrid.spec.grid (files, cells), raygrid.spec.stages (chains) and
raygrid.spec.selection (`select:`) together. A grid may name other grids (a parent stage's grid,
a `select:` source); those are loaded here too, and the loader is handed down to the stage
expansion as a function, so no module of raygrid.spec imports one that imports it back.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Sequence

from raygrid.spec.grid import Grid, GridError, check_unique, expand, make_cell, read_grid_file, resolve_paths
from raygrid.spec.overrides import apply_overrides, mark_override, parse_overrides
from raygrid.spec.selection import check_selections, selectors, source_path
from raygrid.spec.stages import stage_cells, stage_order


def load_grid(path: str | Path, _loading: tuple[Path, ...] = (), *, overrides: Sequence[str] = ()) -> Grid:
    """Read, validate and expand a grid file; raise GridError with a one-line message.

    `overrides` (`key=value` strings from the command line, raygrid.spec.overrides) edit this
    grid's YAML tree before validation; grids it names (parent stages, `select:` sources) are read
    as written.
    """
    path = Path(path)
    if not overrides:
        return _load(path, _loading, ())
    parsed = parse_overrides(overrides, path)
    try:
        return _load(path, _loading, parsed)
    except GridError as err:
        raise mark_override(err, path, parsed) from None


def _load(path: Path, _loading: tuple[Path, ...], overrides) -> Grid:
    if path.resolve() in _loading:
        raise GridError(f"{path}: grids initialise each other in a cycle ({' -> '.join(p.name for p in _loading)})")
    edit = partial(apply_overrides, overrides=overrides, grid_path=path) if overrides else None
    text, spec = read_grid_file(path, edit)
    applied = tuple(o.text for o in overrides)
    base = resolve_paths(spec.base, path.parent)
    if spec.stages:
        order = stage_order(path, spec.stages)
        grid = Grid(path=path, spec=spec, cells=[], text=text, stage_order=[stage.name for stage in order],
                    overrides=applied)
        for stage in order:
            grid.cells.extend(stage_cells(path, base, stage, grid, (*_loading, path.resolve()), load_grid))
    else:
        if not spec.base:
            raise GridError(f"{path}: base: required key is missing")
        grid = Grid(path=path, spec=spec, cells=[], text=text, overrides=applied)
        grid.cells.extend(make_cell(path, base, combo, resources=spec.resources) for combo in expand(spec.axes))
    check_unique(path, grid.cells)
    if spec.select or any(stage.select for stage in spec.stages):
        check_selections(grid)  # the values themselves are resolved later, against MLflow (plan, run)
        for _, select, where in selectors(grid):
            grid.sources[where] = _source(path, select, where, (*_loading, path.resolve()))
    return grid


def _source(path: Path, select, where: str, loading: tuple[Path, ...]) -> Grid:
    source = load_grid(source_path(path, select), loading)
    if (select.stage or None) not in (source.stage_order or [None]):
        stages = ", ".join(source.stage_order) or "none"
        raise GridError(f"{path}: {where}.stage: grid {source.path.name} has no stage {select.stage!r} "
                        f"(stages: {stages})")
    return source
