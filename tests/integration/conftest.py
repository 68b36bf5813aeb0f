"""Integration tier: a local 2-CPU Ray per test module (started and stopped around it)."""
import pytest


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    # address="local": always a cluster of its own; without it ray.init joins whatever local instance
    # /tmp/ray/ray_current_cluster names (another test run's, a demo's) and refuses num_cpus.
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=300 * 2**20,
             configure_logging=False)
    yield
    ray.shutdown()
