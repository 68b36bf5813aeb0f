"""How a stage's trials fit the cluster: GPUs or not, how many at once, and the refusals before launch.

The arithmetic lives in raygrid.orchestration.placement; this module applies it to a grid's cells.
"""
from __future__ import annotations

import ray

from raygrid.orchestration.cluster import autoscaler_node_types
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


PROBE_TIMEOUT_S = 60


def check_cache_on_every_node(grid: Grid, folders: list[str]) -> None:
    """Trials read the cache where it lives: on several nodes a local cache folder must be one every
    node sees (a shared mount). Each live node is asked (a zero-CPU task pinned to it) whether it
    finds each entry; a node that does not is refused now, in one line, rather than as failed cells.
    Nodes an autoscaler adds later are not asked: a worker there names the problem itself."""
    local = sorted({folder for folder in folders if "://" not in folder})
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if not local or len(nodes) < 2:
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(_missing_entries)
    answers = {node["NodeManagerAddress"]: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node["NodeID"], soft=False)).remote(local) for node in nodes}
    for address, answer in answers.items():
        try:
            missing = ray.get(answer, timeout=PROBE_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:  # a node too busy or going away: its workers will say it
            ray.cancel(answer, force=True)
            continue
        if missing:
            raise GridError(f"{grid.path}: cache entry {missing[0]} is not on node {address}: with {len(nodes)} Ray "
                            f"nodes the cache must be on storage every node reads; give --cache-dir s3://... "
                            f"(or a path mounted on every node)")


def cache_warning_for_added_nodes(folders: list[str]) -> str | None:
    """A warning when the cache is a local folder and an autoscaler may add nodes no one could ask yet."""
    local = sorted({folder for folder in folders if "://" not in folder})
    types = autoscaler_node_types()
    if not local or not types or not any(shape.count > 0 for shape in types):
        return None
    return (f"warning: the cache ({local[0]}) is a local folder and the autoscaler may add nodes: trials read the "
            f"cache where it lives, so it must be a path mounted on every node (else give --cache-dir s3://...)")


def _missing_entries(folders: list[str]) -> list[str]:
    import os

    return [folder for folder in folders if not os.path.isfile(os.path.join(folder, "meta.json"))]


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
