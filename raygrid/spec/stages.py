"""Staged grids: stage order, and the one parent cell each chained cell starts from.

A stage with `init: <stage>` (or `{grid: other.yaml, stage: <stage>}`) starts every cell from the
weights of the one parent cell whose axis values agree with its own: for each axis of the parent
stage, the child must have the same value (the same label for a bundle axis; the same resolved
config value for a plain key, whether the child varies it or fixes it in its base). Refused before
anything runs: no match or several, an unknown stage, a cycle, a parent stage that does not export
weights (only `mlm` cells do), a child that names its own checkpoint, positions that differ along
the chain, an attention setting its variant refuses on its parent's weights (raygrid.attention's
`cell_check`: LSH qk: shared after a parent that trained separate keys), and a task-MLM parent
whose documents could include the child's test split.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

from raygrid.attention.registry import cell_problem
from raygrid.spec.dotted import all_paths, get_path
from raygrid.spec.config import CORPORA, STAGE_SCHEME, InitRef, StageConfig
from raygrid.spec.grid import (Cell, Grid, GridError, blocks_of, cell_resources, combo_label, expand, is_bundle,
                          make_cell, merges, resolve_paths)

# Keys the link to the parent stage decides; a chained stage may not set them itself.
LINK_KEYS = ("model.checkpoint", "model.from_scratch")
# The data settings that decide which documents land in the test split.
SPLIT_KEYS = ("dataset", "path", "subset", "split", "split_seed", "val_fraction", "study_sizes", "text_rule")


def stage_order(path: Path, stages: list[StageConfig]) -> list[StageConfig]:
    """Stages with in-grid parents first; unknown stages and cycles are errors."""
    by_name = {stage.name: stage for stage in stages}
    order: list[StageConfig] = []
    visiting: list[str] = []

    def visit(stage: StageConfig) -> None:
        if stage in order:
            return
        if stage.name in visiting:
            raise GridError(f"{path}: stages: init forms a cycle ({' -> '.join([*visiting, stage.name])})")
        ref = init_ref(stage)
        if ref is not None and ref.grid is None:
            if ref.stage not in by_name:
                raise GridError(f"{path}: stages.{stage.name}.init: no stage {ref.stage!r} in this grid "
                                f"(stages: {', '.join(by_name)})")
            visiting.append(stage.name)
            visit(by_name[ref.stage])
            visiting.pop()
        order.append(stage)

    for stage in stages:
        visit(stage)
    return order


def init_ref(stage: StageConfig) -> InitRef | None:
    return InitRef(stage=stage.init) if isinstance(stage.init, str) else stage.init


def stage_cells(path: Path, grid_base: dict, stage: StageConfig, grid: Grid, loading: tuple[Path, ...],
                load: Callable[[Path, tuple[Path, ...]], Grid]) -> list[Cell]:
    """The cells of one stage, each linked to its parent cell when the stage has `init`.

    `load` reads a parent stage's grid when it is another file (raygrid.spec.loader.load_grid,
    passed in rather than imported: the loader imports this module).
    """
    base = merge_trees(grid_base, resolve_paths(stage.base, path.parent))
    where = f"stages.{stage.name}"
    resources = cell_resources(path, grid.spec.resources, stage.resources, f"{where}.resources")
    ref = init_ref(stage)
    parents, parent_grid = [], None
    if ref is not None:
        _refuse_own_link(path, stage, ref)
        parents, parent_grid = _parent_cells(path, stage, ref, grid, loading, load)
    cells = []
    for combo in expand(stage.axes):
        parent, settings = None, {}
        if ref is not None:
            parent = _match_parent(path, stage, base, combo, parents, ref)
            settings = {"model.checkpoint": f"{STAGE_SCHEME}{parent_grid}/{parent.name}", "model.from_scratch": False}
            if "tokenizer" not in (base.get("model") or {}):  # (an axis setting it wins: axes apply last)
                model = parent.config.model
                settings["model.tokenizer"] = model.tokenizer or model.checkpoint
        cell = make_cell(path, base, combo, where=where, settings=settings, resources=resources)
        if parent is not None:
            _check_link(path, stage, cell, parent)
        cells.append(Cell(f"{stage.name}/{cell.name}", combo, cell.config, stage.name, parent, parent_grid,
                          resources=cell.resources))
    return cells


def _refuse_own_link(path: Path, stage: StageConfig, ref: InitRef) -> None:
    """A chained stage takes checkpoint/from_scratch from its parent: setting them itself is an error."""
    sections = {"base": all_paths(stage.base),
                "axes": {k for block in blocks_of(stage.axes) for key, values in block.items() for value in values
                         for k in _keys_set(key, value)}}
    for key in LINK_KEYS:
        for section, keys in sections.items():
            if key in keys:
                raise GridError(f"{path}: stages.{stage.name}.{section}.{key}: a stage with init takes its weights "
                                f"from stage {ref.stage}")


def _keys_set(key: str, value: Any) -> set[str]:
    """Dotted keys one axis value sets: a bundle's `set` keys, else the axis key and those of a dict value."""
    if is_bundle(value):
        return all_paths(value["set"])
    return {key} | (all_paths(value, f"{key}.") if isinstance(value, dict) else set())


def _parent_cells(path: Path, stage: StageConfig, ref: InitRef, grid: Grid, loading: tuple[Path, ...],
                  load: Callable[[Path, tuple[Path, ...]], Grid]) -> tuple[list[Cell], str]:
    if ref.grid is None:
        parents, parent_grid = grid.stage_cells(ref.stage), grid.name
    else:
        other = load(resolve_paths(ref.grid if ref.grid.startswith(("/", "~")) else f"./{ref.grid}",
                                        path.parent), loading)
        if ref.stage not in other.stage_order:
            raise GridError(f"{path}: stages.{stage.name}.init: grid {other.path.name} has no stage "
                            f"{ref.stage!r} (stages: {', '.join(other.stage_order) or 'none'})")
        parents, parent_grid = other.stage_cells(ref.stage), other.name
    if not parents:
        raise GridError(f"{path}: stages.{stage.name}.init: stage {ref.stage} has no cells to start from")
    kinds = sorted({p.config.kind for p in parents} - {"mlm"})
    if kinds:
        raise GridError(f"{path}: stages.{stage.name}.init: stage {ref.stage} has {kinds[0]} cells; only mlm cells "
                        f"export weights to start from")
    return parents, parent_grid


def _check_link(path: Path, stage: StageConfig, cell, parent: Cell) -> None:
    child, mother = cell.config, parent.config
    where = f"{path}: stages.{stage.name}"
    if child.kind not in ("finetune", "mlm"):
        raise GridError(f"{where}.base.kind: a {child.kind} cell cannot start from weights (cell {cell.name})")
    if child.model.positions != mother.model.positions:
        raise GridError(f"{where}: model.positions {child.model.positions} differs from its parent stage's "
                        f"({mother.model.positions}) (cell {cell.name})")
    problem = cell_problem(child.attention, "stage", parent=mother.attention)  # the variant's own rules
    if problem:
        raise GridError(f"{where}: {problem} (cell {cell.name})")
    if mother.data.dataset not in CORPORA and mother.data.dataset == child.data.dataset:
        # The parent read this dataset's train + validation text: the child's test split must be
        # the same documents the parent never saw, i.e. the same split of the same files.
        for key in SPLIT_KEYS:
            if getattr(mother.data, key) != getattr(child.data, key):
                raise GridError(f"{where}: data.{key} {getattr(child.data, key)!r} differs from its parent's "
                                f"{getattr(mother.data, key)!r}: the parent's MLM text could include this cell's "
                                f"test documents (cell {cell.name})")


def _match_parent(path: Path, stage: StageConfig, base: dict, combo: dict, parents: list[Cell],
                  ref: InitRef) -> Cell:
    """The one parent cell whose axis values agree with this combination (see the module docstring)."""
    probe = make_cell(path, base, combo, where=f"stages.{stage.name}",
                      settings={"model.checkpoint": STAGE_SCHEME + "probe", "model.from_scratch": False})
    child_config = probe.config.model_dump(mode="json")
    matches = []
    for parent in parents:
        parent_config = parent.config.model_dump(mode="json")
        for key, value in parent.axis_values.items():
            if key in LINK_KEYS or key == "model.tokenizer":
                continue  # decided by the link itself, not by the child
            if is_bundle(value):
                mine = combo.get(key)
                if not is_bundle(mine):
                    raise GridError(f"{path}: stages.{stage.name}: its parent stage {ref.stage} varies {key!r} "
                                    f"(bundles); this stage must vary {key!r} too")
                if mine.get("label") != value.get("label"):
                    break
            elif get_path(child_config, key) != get_path(parent_config, key):
                break
        else:
            matches.append(parent)
    described = combo_label(combo) or "base"
    if not matches:
        raise GridError(f"{path}: stages.{stage.name}.init: no cell of stage {ref.stage} matches cell ({described}); "
                        f"its axes must agree with one of: {', '.join(p.name for p in parents[:4])}")
    if len(matches) > 1:
        raise GridError(f"{path}: stages.{stage.name}.init: cell ({described}) matches {len(matches)} cells of stage "
                        f"{ref.stage} ({', '.join(p.name for p in matches[:3])}); vary the same axes to pick one")
    return matches[0]


def merge_trees(base: dict, over: dict) -> dict:
    """Deep merge: `over`'s values win; nested dicts merge unless their `kind` differs."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        old = merged.get(key)
        if merges(old, value):
            merged[key] = merge_trees(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
