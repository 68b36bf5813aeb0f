"""cluster.yaml passes Ray's own autoscaler schema; the Docker image runs the Ray version raygrid pins."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_yaml_is_a_valid_ray_cluster_config():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # what `ray up` does first: fill defaults, then the JSON schema
    assert config["head_node_type"] in config["available_node_types"]
    workers = [t for n, t in config["available_node_types"].items() if n != config["head_node_type"]]
    assert workers and all(t["max_workers"] <= config["max_workers"] for t in workers)


def test_docker_image_matches_the_pinned_ray_version():
    pinned = re.search(r'"ray\[[^\]]*\]>=([\d.]+),<', (ROOT / "pyproject.toml").read_text()).group(1)
    image = re.search(r"ARG RAY_IMAGE=rayproject/ray:([\d.]+)-", (ROOT / "Dockerfile").read_text()).group(1)
    assert image == pinned or image.startswith(pinned + ".")
