"""The test harness's port picker: the Ray heads of the integration tier take many ports at once."""
from tests.integration.local_cluster import free_port


def test_free_port_never_hands_out_the_same_port_twice():
    # The kernel reuses a just-released ephemeral port readily; two equal ports made `ray start` refuse to start.
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports) and all(1024 < port < 65536 for port in ports)
