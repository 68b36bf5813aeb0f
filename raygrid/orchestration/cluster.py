"""The Ray cluster raygrid runs on: starting or joining it, and the node shapes it has or can add.

Orchestration layer (imports ray). The arithmetic on those shapes lives in raygrid.orchestration.placement.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import ray
import yaml

from raygrid.orchestration.placement import UNBOUNDED, NodeShape

# Where `ray up` leaves the autoscaler's config on the head node (jobs run there).
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
CONFIG_ENV = "RAYGRID_AUTOSCALING_CONFIG"
# Ray's switch between single-machine mode (every service on 127.0.0.1) and cluster mode; "0" = single machine.
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def init_ray() -> None:
    """Join $RAY_ADDRESS (or the cluster of the Ray job this runs in), else start a local Ray.

    The local Ray listens on 127.0.0.1 only (start_local_ray) and, in Ray 2.60, has token
    authentication on by default (measured listeners: see the README).
    """
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
        # A loopback address is a single-machine Ray (start_local_ray's, e.g. the test tier's): join it as one,
        # else this driver takes the host's address as its node's and waits for a raylet there forever.
        loopback = address.split("://")[-1].rsplit(":", 1)[0] in ("127.0.0.1", "localhost")
        with _single_machine() if loopback else contextlib.nullcontext():
            ray.init(address=address, configure_logging=False)
    else:
        start_local_ray(configure_logging=False, dashboard_host="127.0.0.1")


def start_local_ray(**options) -> str:
    """Start a Ray of our own on this machine (`ray.init(address="local", **options)`); its GCS address.

    Its worker processes are told that address ($RAY_ADDRESS). Without it, Ray's State API inside a
    worker guesses the cluster: /tmp/ray/ray_current_cluster, which names the last `ray start`
    cluster of the machine, not this one. Ray Train's placement-group cleaner asks the State API
    every second whether its trial's controller lives. Asking a stale cluster, each trial waited
    12 s at its end (the cleaner's stop timeout; measured: a one-cell run 47 s -> 30 s). Asking a
    live foreign cluster, the answer is "no such actor", and the cleaner removes the trial's
    placement group. The GCS port is chosen first so the address can be handed to the raylet,
    and so to every worker, before they start.

    Every service of this Ray listens on 127.0.0.1 only: Ray's single-machine mode (its default on
    macOS and Windows), which takes the node's address to be loopback, so the GCS, raylets, workers,
    agents and the Prometheus metrics endpoint bind there. Measured (README, Security): without it
    they listened on all interfaces, and the metrics endpoint answered anyone without the token.
    """
    port = _free_port()
    address = f"127.0.0.1:{port}"
    with _environment(RAY_GCS_SERVER_PORT=str(port), RAY_ADDRESS=address, **{SINGLE_MACHINE_ENV: "0"}), \
            _single_machine():
        # "local": a cluster of our own, never another process's local instance that may vanish mid-grid.
        ray.init(address="local", **options)
    return address


@contextlib.contextmanager
def _single_machine():
    """Ray's single-machine switch in this process too: it was read when ray was imported (processes
    Ray starts read SINGLE_MACHINE_ENV themselves). After ray.init the node's address is settled."""
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _environment(**values: str):
    """These environment variables for the processes started inside the block (Ray's raylet), then the old ones."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def node_shapes() -> list[NodeShape]:
    """The nodes a trial could land on: the autoscaler's node types when one is configured, else the live nodes.

    With an autoscaler, the live head counts once and each worker type counts max_workers times.
    A worker type whose resources the config leaves to auto-detection cannot be priced here;
    then nothing is checked ([]), rather than refusing a grid that may well fit.
    """
    live = [node for node in ray.nodes() if node.get("Alive")]
    types = autoscaler_node_types()
    if types is None:
        return [NodeShape(_node_label(node), _logical(node["Resources"])) for node in live]
    if any("CPU" not in shape.resources for shape in types):
        return []
    heads = [NodeShape("head", _logical(node["Resources"])) for node in live
             if "node:__internal_head__" in node["Resources"]]
    return heads + [shape for shape in types if shape.count > 0]


def autoscaler_node_types(path: str | None = None) -> list[NodeShape] | None:
    """Worker node types (resources, max_workers) from the autoscaling config, or None without one."""
    location = path or os.environ.get(CONFIG_ENV) or os.path.expanduser(BOOTSTRAP_CONFIG)
    if not Path(location).is_file():
        return None
    config = yaml.safe_load(Path(location).read_text()) or {}
    head = config.get("head_node_type")
    return [NodeShape(name, {k: float(v) for k, v in (spec.get("resources") or {}).items()},
                      int(spec.get("max_workers", config.get("max_workers", UNBOUNDED))))
            for name, spec in (config.get("available_node_types") or {}).items() if name != head]


def _logical(resources: dict) -> dict[str, float]:
    return {k: float(v) for k, v in resources.items() if not k.startswith("node:")}


def _node_label(node: dict) -> str:
    return f"node {node.get('NodeManagerAddress', '?')}/{node.get('NodeID', '')[:8]}"
