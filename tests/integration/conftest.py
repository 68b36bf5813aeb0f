"""Integration tier: a local 2-CPU Ray per test module (started and stopped around it)."""
import pytest


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 2**20, configure_logging=False)
    yield
    ray.shutdown()
