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


def test_cluster_is_closed_by_default():
    """Ray's guidance: a reachable dashboard/Jobs API runs arbitrary code. Token auth on every node,
    the dashboard on the head's loopback only, and worker node shapes declared for raygrid's checks."""
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    head, workers = config["head_start_ray_commands"], config["worker_start_ray_commands"]
    start_head = next(c for c in head if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in start_head and "0.0.0.0" not in start_head
    assert all(c.startswith("RAY_AUTH_MODE=token ") for c in head + workers if "ray start" in c)
    assert "~/.ray/auth_token" in config["file_mounts"]
    for name, spec in config["available_node_types"].items():
        if name != config["head_node_type"]:
            assert {"CPU", "GPU"} <= set(spec["resources"]), name


def test_image_runs_as_a_user_without_passwordless_sudo():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines() if line.strip()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] != "root"
    assert any("NOPASSWD" in line and "! sudo -n true" in line for line in lines if line.startswith("RUN "))
    assert "ENV RAY_AUTH_MODE=token" in lines
