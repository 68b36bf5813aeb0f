"""Integration tier: one local 2-CPU Ray for the whole session (started at first use, stopped at the end).

One, not one per module: each start costs 5-10 s on 2 cores, and every grid of the tier names its own
experiment, storage and output folder, so the modules share nothing but the processes.
"""
import pytest


@pytest.fixture(scope="session")
def ray_local():
    ray = pytest.importorskip("ray")
    from raygrid.orchestration.cluster import start_local_ray

    # A cluster of its own (address="local"), whose workers know its address: raygrid's own start.
    start_local_ray(num_cpus=2, include_dashboard=False, object_store_memory=300 * 2**20, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """One `mlflow server` (127.0.0.1, SQLite) for the session: each start costs ~15 s on 2 cores, and
    every test logs to an experiment of its own name."""
    from tests.integration.local_cluster import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.stop()
