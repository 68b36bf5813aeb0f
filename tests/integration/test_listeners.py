"""raygrid's local Ray listens on loopback only: no port of its processes answers on another address
(before: GCS, raylets, workers and agents on all interfaces, the metrics endpoint answering without the token)."""
from __future__ import annotations

import socket
import urllib.request

import psutil
import pytest

pytestmark = pytest.mark.integration


def _listeners() -> list[tuple[str, int, str]]:
    """(address, port, process name) of every TCP listener among this process and its descendants (the Ray it started)."""
    me = psutil.Process()
    found = []
    for proc in [me, *me.children(recursive=True)]:
        try:
            found += [(c.laddr.ip, c.laddr.port, proc.name()) for c in proc.net_connections(kind="tcp")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.Error:  # ended while we looked
            continue
    return found


def _is_loopback(address: str) -> bool:
    return address.removeprefix("::ffff:").startswith("127.") or address == "::1"


def _outside_address() -> str | None:
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                return addr.address
    return None


def test_local_ray_listens_on_loopback_only(ray_local):
    import ray

    listeners = [row for row in _listeners() if "mlflow" not in row[2]]
    assert len(listeners) >= 5  # GCS, raylet, agents, workers: the test sees Ray's processes
    assert [row for row in listeners if not _is_loopback(row[0])] == []
    node = next(n for n in ray.nodes() if n["Alive"])
    assert node["NodeManagerAddress"] == "127.0.0.1"
    port = node["MetricsExportPort"]
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).status == 200
    outside = _outside_address()
    if outside is not None:
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://{outside}:{port}/metrics", timeout=5)
