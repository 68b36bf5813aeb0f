"""How a stage's trials fit the cluster: GPUs or not, how many at once, and the refusals before launch.

The arithmetic lives in raygrid.orchestration.placement; this module applies it to a grid's cells.
"""
from __future__ import annotations

import ray

from raygrid.orchestration.placement import DRIVER_CPUS, NodeShape, Unplaceable, check_placeable, max_concurrent, trial_demand
from raygrid.spec.config import Resources
from raygrid.spec.grid import Cell, Grid, GridError


def check_placeable_cells(grid: Grid, pending: list[Cell], shapes: list[NodeShape]) -> None:
    """Refuse, before anything is recorded, a cell whose trial no node (now or after scaling) can hold."""
    for cell in pending:
        if cell.config.kind == "tfidf":
            continue  # runs inside its Tune trial: no Train workers
        try:
            check_placeable(cell.resources, use_gpu(cell.resources, shapes), shapes)
        except Unplaceable as err:
            raise GridError(f"{grid.path}: {err} (cell {cell.name})") from None


def check_storage(grid: Grid, pending: list[Cell], storage: str | None) -> None:
    """Chained stages on several nodes need storage every node reads; the default <out>/ray is one node's disk."""
    chained = any(cell.parent is not None for cell in pending)
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    if chained and storage is None and nodes > 1:
        raise GridError(f"{grid.path}: stages: {nodes} Ray nodes but no shared storage for the weights stages pass on; "
                        f"give --storage s3://... (or a path mounted on every node)")


def use_gpu(res: Resources, shapes: list[NodeShape]) -> bool:
    """`auto`: GPUs when the cluster has or can add a GPU node (an autoscaler may start with none)."""
    if res.use_gpu != "auto":
        return bool(res.use_gpu)
    return any(shape.resources.get("GPU", 0) > 0 for shape in shapes) or ray.cluster_resources().get("GPU", 0) > 0


def concurrent_trials(grid_resources: Resources, cells: list[Cell], shapes: list[NodeShape]) -> int:
    """As many trials as the cluster can hold at its largest (the autoscaler adds nodes to meet the
    pending requests), capped by resources.max_concurrent_trials."""
    demands = [trial_demand(c.resources, use_gpu(c.resources, shapes)) if c.config.kind != "tfidf" else {"CPU": DRIVER_CPUS}
               for c in cells]
    fit = max_concurrent(demands, shapes or [NodeShape("cluster", ray.cluster_resources())])
    return min(fit, grid_resources.max_concurrent_trials or fit)
