"""Where trials can run: per-trial resource requests against the nodes a cluster has or can add.

Pure arithmetic on plain dicts (no Ray here, so it is unit-tested without a cluster);
raygrid.orchestration.cluster reads the node shapes from Ray and the autoscaler's config. Two questions:
- Is a cell placeable at all? Every Train worker's bundle must fit on one node type, and all of a
  trial's bundles on the cluster at its largest. A request that fails either would wait forever
  (Ray retries the worker group without limit), so it is refused before launch, naming the key.
- How many trials can run at once? As many as fit on the cluster the autoscaler *can* build, not
  the one present at launch: Tune then keeps that many placement-group requests pending and the
  autoscaler scales up to meet them (and down once the grid drains).
"""
from __future__ import annotations

from dataclasses import dataclass

from raygrid.spec.config import Resources

# The Train driver (the Tune trial itself) only waits on its workers: a sliver of a CPU, so it
# never blocks a worker slot.
DRIVER_CPUS = 0.01
UNBOUNDED = 10_000  # node count of a node type without max_workers


@dataclass(frozen=True)
class NodeShape:
    """A kind of node: one that is up now (count 1) or an autoscaler node type (count max_workers)."""

    name: str
    resources: dict[str, float]
    count: int = 1


class Unplaceable(ValueError):
    """A trial's resource request that no node of the cluster (now or after scaling) can hold."""


def worker_bundle(res: Resources, use_gpu: bool) -> dict[str, float]:
    """What one Train worker asks for (Ray Train's resources_per_worker)."""
    return {"CPU": res.cpus_per_worker, **({"GPU": res.gpus_per_worker} if use_gpu else {})}


def trial_demand(res: Resources, use_gpu: bool) -> dict[str, float]:
    """All of a trial's workers together. (Its driver's sliver of a CPU is left out: it lands on any
    node with a little room, the head included, and would only make totals round down wrongly.)"""
    return {key: value * res.workers_per_trial for key, value in worker_bundle(res, use_gpu).items()}


def fits(request: dict[str, float], node: dict[str, float]) -> bool:
    return all(node.get(key, 0.0) + 1e-9 >= value for key, value in request.items() if value > 0)


def total(shapes: list[NodeShape]) -> dict[str, float]:
    """The cluster at its largest: every node up now plus every node the autoscaler may add."""
    out: dict[str, float] = {}
    for shape in shapes:
        for key, value in shape.resources.items():
            out[key] = out.get(key, 0.0) + value * shape.count
    return out


def check_placeable(res: Resources, use_gpu: bool, shapes: list[NodeShape]) -> None:
    """Raise Unplaceable, naming the resources key at fault, if no cluster this could be can hold a trial."""
    if not shapes:
        return  # nothing known about the cluster: nothing to check against
    names = ", ".join(f"{s.name} ({_show(s.resources)})" for s in shapes)
    if use_gpu and not any(s.resources.get("GPU", 0) > 0 for s in shapes):
        raise Unplaceable(f"resources.use_gpu: true but no node has or can get a GPU (nodes: {names})")
    bundle = worker_bundle(res, use_gpu)
    if not any(fits(bundle, s.resources) for s in shapes):
        key = next(k for k, v in (("cpus_per_worker", "CPU"), ("gpus_per_worker", "GPU"))
                   if v in bundle and not any(s.resources.get(v, 0) + 1e-9 >= bundle[v] for s in shapes))
        raise Unplaceable(f"resources.{key}: one worker asks for {_show(bundle)}, more than any node has "
                          f"(nodes: {names})")
    demand, largest = trial_demand(res, use_gpu), total(shapes)
    if not fits(demand, largest):
        raise Unplaceable(f"resources.workers_per_trial: {res.workers_per_trial} workers need {_show(demand)} at once, "
                          f"more than the whole cluster can hold ({_show(largest)})")


def max_concurrent(demands: list[dict[str, float]], shapes: list[NodeShape]) -> int:
    """How many of these trials fit side by side on the largest cluster (smallest requests first).

    Totals, not a bin packing: an upper bound, which is what Tune needs to keep enough requests
    pending for the autoscaler; trials that do not fit yet simply wait for a slot.
    """
    if not demands:
        return 1
    room = total(shapes)
    count = 0
    for demand in sorted(demands, key=lambda d: (d.get("GPU", 0.0), d.get("CPU", 0.0))):
        if not fits(demand, room):
            break
        room = {key: value - demand.get(key, 0.0) for key, value in room.items()}
        count += 1
    return max(1, count)


def _show(resources: dict[str, float]) -> str:
    """`CPU 8, GPU 1`: the schedulable resources, without Ray's per-node and memory bookkeeping keys."""
    shown = {k: v for k, v in resources.items() if not k.startswith(("node:", "memory", "object_store"))}
    return ", ".join(f"{k} {v:g}" for k, v in sorted(shown.items())) or "nothing"
