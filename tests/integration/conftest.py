"""Integration tier: a local 2-CPU Ray per test module (started and stopped around it)."""
import pytest


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    from raygrid.orchestration.cluster import start_local_ray

    # A cluster of its own (address="local"), whose workers know its address: raygrid's own start.
    start_local_ray(num_cpus=2, include_dashboard=False, object_store_memory=300 * 2**20, configure_logging=False)
    yield
    ray.shutdown()
