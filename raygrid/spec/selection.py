"""`select:` — a stage takes, per task, the values of named keys from another grid's best finished cell.

    select: {grid: study_finetune.yaml, stage: finetune, by: best_val_f1_macro,
             keys: [model.pooling, model.n_freeze, model.p_drop]}

Rule. For each cell of the selecting stage, the candidates are the source stage's cells that agree
with it on every source axis other than `keys` (a bundle axis such as `task` by label, so the cell
must vary it too; a plain key by its resolved value): for study_attention that is the 12
fine-tuning cells of the same task. Every candidate must have a FINISHED run with metric `by`,
else the grid is refused before launch, naming `select` and the first missing cell. The winner
has the highest `by` (`mode: min`: lowest); ties go to the candidate listed first in the source
grid (its axes' order: cls before mean, N_freeze 0 before 1, ...). Its values of `keys` replace the
cell's, the cell's config is validated again, and tags on the cell's run record the source:
raygrid.select_grid / select_cell / select_run_id / select_by (metric=value) / select.<key>.

Grid loading (raygrid.spec.loader) checks the keys (cell settings the stage does not vary itself)
and loads the source grids; resolution needs the source's scores, which the caller reads from
MLflow (raygrid.tracking.runs.finished_scores) and passes in, in `raygrid run` and `raygrid plan`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from raygrid.spec.config import CellConfig, SelectRef
from raygrid.spec.dotted import get_path, has_path
from raygrid.spec.grid import Cell, Grid, GridError, blocks_of, combo_label, describe, is_bundle, set_dotted

TAG_PREFIX = "raygrid.select"
LINK_KEYS = ("model.checkpoint", "model.from_scratch", "model.tokenizer")  # decided by `init`, never selected
# (source grid name, metric) -> {cell: (run id, value)} of its FINISHED runs; {} if it never ran.
ScoresOf = Callable[[str, str], dict[str, tuple[str, float]]]


@dataclass(frozen=True)
class Choice:
    """The source cell whose values a cell takes, and why."""

    values: dict[str, Any]  # dotted key -> chosen value
    grid: str
    cell: str
    run_id: str
    metric: str
    score: float

    def summary(self) -> str:
        """`model.pooling=mean, model.p_drop=0.1 <- <cell> (run 1a2b3c4d, best_val_f1_macro=0.91)`."""
        values = ", ".join(f"{key}={value}" for key, value in self.values.items())
        return f"{values} <- {self.cell} (run {self.run_id[:8]}, {self.metric}={self.score:.6g})"

    def tags(self) -> dict[str, str]:
        tags = {f"{TAG_PREFIX}_grid": self.grid, f"{TAG_PREFIX}_cell": self.cell,
                f"{TAG_PREFIX}_run_id": self.run_id, f"{TAG_PREFIX}_by": f"{self.metric}={self.score:.6g}"}
        return tags | {f"{TAG_PREFIX}.{key}": str(value) for key, value in self.values.items()}


def selectors(grid: Grid) -> list[tuple[str | None, SelectRef, str]]:
    """(stage or None, select, where) for every `select:` of the grid; `where` prefixes error keys."""
    found = [(stage.name, stage.select, f"stages.{stage.name}.select") for stage in grid.spec.stages if stage.select]
    if grid.spec.select:
        found.append((None, grid.spec.select, "select"))
    return found


def check_selections(grid: Grid) -> None:
    """Load-time checks: every key is a cell setting, not varied by its own stage, not set by `init`."""
    axes_of = {stage.name: stage.axes for stage in grid.spec.stages} | {None: grid.spec.axes}
    for stage, select, where in selectors(grid):
        varied = {key for block in blocks_of(axes_of[stage]) for key in block}
        sample = next((cell for cell in grid.cells if cell.stage == stage), None)
        for key in select.keys:
            if key in LINK_KEYS or key in varied:
                why = "set by init" if key in LINK_KEYS else "an axis of this stage"
                raise GridError(f"{grid.path}: {where}.keys: {key} is {why}; select takes only settings it fixes")
            if sample is not None and not has_path(sample.config.model_dump(mode="json"), key):
                raise GridError(f"{grid.path}: {where}.keys: {key} is not a cell setting")


def source_path(path: Path, select: SelectRef) -> Path:
    """The source grid's file: absolute or `~` as written, else relative to the selecting grid's folder."""
    location = select.grid if select.grid.startswith(("/", "~")) else str(path.parent / select.grid)
    return Path(location).expanduser()


def resolve_selections(grid: Grid, uri: str, scores_of: ScoresOf) -> Grid:
    """The grid with every selecting cell's values set and its source recorded; GridError while unfinished."""
    return _resolve(grid, uri, scores_of)[0]


def _resolve(grid: Grid, uri: str, scores_of: ScoresOf) -> tuple[Grid, list[Choice]]:
    """The resolved grid and the distinct choices made (one per source cell chosen)."""
    cells, choices = list(grid.cells), {}
    for stage, select, where in selectors(grid):
        source = grid.sources[where]
        scores = scores_of(source.name, select.by)
        candidates = source.stage_cells(select.stage)
        for i, cell in enumerate(cells):
            if cell.stage == stage:
                choice = choose(cell, candidates, scores, select, f"{grid.path}: {where}", source.name, uri)
                cells[i] = apply_choice(cell, choice, f"{grid.path}: {where}")
                choices[(where, choice.cell)] = choice
    return dataclasses.replace(grid, cells=cells), list(choices.values())


def choose(cell: Cell, candidates: list[Cell], scores: dict[str, tuple[str, float]], select: SelectRef,
           where: str, source: str, uri: str) -> Choice:
    """The best finished candidate agreeing with `cell` on the source's other axes (see the module docstring)."""
    agreeing = [c for c in candidates if _agrees(cell, c, select.keys, where)]
    if not agreeing:
        raise GridError(f"{where}: no cell of grid {source} agrees with cell {cell.name} on its other axes")
    missing = [c.name for c in agreeing if c.recorded(scores) is None]  # recorded under its name or a former one
    if missing:
        raise GridError(f"{where}: grid {source} has not finished cell {missing[0]} (metric {select.by}) at {uri}; "
                        f"{len(missing)} of the {len(agreeing)} cells cell {cell.name} selects from are missing")
    sign = 1 if select.mode == "max" else -1
    best = max(agreeing, key=lambda c: sign * c.recorded(scores)[1])  # max keeps the first of equals: source order
    config = best.config.model_dump(mode="json")
    values = {key: get_path(config, key) for key in select.keys}
    run_id, score = best.recorded(scores)
    return Choice(values, source, best.name, run_id, select.by, score)


def apply_choice(cell: Cell, choice: Choice, where: str) -> Cell:
    """`cell` with the chosen values in its config (validated again) and the choice's tags."""
    raw = cell.config.model_dump(mode="json")
    for key, value in choice.values.items():
        set_dotted(raw, key, value)
    try:
        config = CellConfig.model_validate(raw)
    except ValidationError as err:
        raise GridError(f"{where}: the values chosen from {choice.cell} do not fit cell {cell.name}: "
                        f"{describe(err)}") from None
    return dataclasses.replace(cell, config=config, tags={**cell.tags, **choice.tags()})


def selection_lines(grid: Grid, uri: str | None, scores_of: ScoresOf) -> tuple[Grid, list[str]]:
    """For `raygrid plan`: the grid resolved when it can be, and one line per choice (or why it is pending)."""
    picks = selectors(grid)
    lines = [f"select   {stage or 'cells'}: {', '.join(s.keys)} from {s.grid}"
             f"{f' stage {s.stage}' if s.stage else ''}, {s.mode} {s.by}" for stage, s, _ in picks]
    if not picks:
        return grid, lines
    try:
        if uri is None:
            raise GridError("no MLflow store yet")
        resolved, choices = _resolve(grid, uri, scores_of)
    except GridError as err:
        return grid, lines + [f"select   pending, cells show their base values: {err}"]
    return resolved, lines + [f"select   {choice.summary()}" for choice in choices]


def _agrees(cell: Cell, candidate: Cell, keys: list[str], where: str) -> bool:
    mine, theirs = cell.config.model_dump(mode="json"), candidate.config.model_dump(mode="json")
    for key, value in candidate.axis_values.items():
        if key in keys:
            continue
        if is_bundle(value):
            own = cell.axis_values.get(key)
            if not is_bundle(own):
                raise GridError(f"{where}: the source varies {key!r} (bundles); this stage must vary {key!r} too "
                                f"(cell {combo_label(cell.axis_values) or cell.name})")
            if own.get("label") != value.get("label"):
                return False
        elif get_path(mine, key) != get_path(theirs, key):
            return False
    return True
