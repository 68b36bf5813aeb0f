"""Links from chained cells to the weights their parent cells exported, and the refusals before launch.

A chained cell starts from the weights its parent cell exported to Ray's storage (the URI is the
parent run's `raygrid.checkpoint` tag), so weights pass through storage, never through
hand-copied paths. Parents in another grid must have finished before launch, or nothing starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from raygrid.spec.grid import Cell, Grid, GridError
from raygrid.tracking.runs import GridTracker


@dataclass(frozen=True)
class ParentWeights:
    grid: str
    cell: str
    run_id: str
    uri: str


def exported_weights(tracker: GridTracker, cell: Cell) -> tuple[str, str] | None:
    """(run id, URI) of the weights `cell` exported, recorded under its name or a former one (raygrid.spec.names)."""
    return next((hit for name in (cell.name, *cell.former_names) if (hit := tracker.exported_weights(name))), None)


def exported_links(tracker: GridTracker, cells: list[Cell]) -> dict[str, ParentWeights | None]:
    """cell name -> the weights its parent (in `tracker`'s grid) exported, or None; one query per parent."""
    found: dict[str, ParentWeights | None] = {}
    for cell in cells:
        if cell.parent.name not in found:
            hit = exported_weights(tracker, cell.parent)
            found[cell.parent.name] = ParentWeights(cell.parent_grid, cell.parent.name, *hit) if hit else None
    return {cell.name: found[cell.parent.name] for cell in cells}


def check_parents(grid: Grid, pending: list[Cell], uri: str) -> dict[str, ParentWeights]:
    """Refuse, before launch, cells whose parent will not run now and has no usable exported weights.

    A parent in this grid that is still pending runs first; any other parent (in another grid, or
    finished in an earlier run) must have its weights' URI recorded and, when local, still on disk.
    Returns those cells' links to their parents' weights.
    """
    pending_names = {cell.name for cell in pending}
    waiting = [cell for cell in pending if cell.parent is not None
               and not (cell.parent_grid == grid.name and cell.parent.name in pending_names)]
    links: dict[str, ParentWeights | None] = {}
    for grid_name in dict.fromkeys(cell.parent_grid for cell in waiting):
        children = [cell for cell in waiting if cell.parent_grid == grid_name]
        try:
            links.update(exported_links(GridTracker(uri, grid_name, create=False), children))
        except LookupError:  # that grid never ran here
            links.update(dict.fromkeys(cell.name for cell in children))
    for cell in waiting:
        parent, link, where = cell.parent, links[cell.name], f"{grid.path}: stages.{cell.stage}.init"
        if link is None:
            hint = (" (run that grid first, with the same --out / MLFLOW_TRACKING_URI)" if cell.parent_grid != grid.name
                    else " (delete its run to train it again)")
            raise GridError(f"{where}: parent cell {parent.name} of grid {cell.parent_grid} has no finished "
                            f"run with exported weights at {uri}{hint}")
        if "://" not in link.uri and not Path(link.uri).is_dir():
            raise GridError(f"{where}: the weights of parent cell {parent.name} are gone from {link.uri} "
                            f"(delete its MLflow run to train it again)")
    return links
