"""On several nodes, trials read the cache where it lives: a local cache folder that a node lacks is
refused before launch, in one line naming the node (raygrid.orchestration.capacity)."""
import pytest

from raygrid.orchestration import capacity
from raygrid.spec.grid import GridError


class FakeGrid:
    path = "grids/g.yaml"


def entry(tmp_path, name="abc"):
    folder = tmp_path / "cache" / "tokenized" / name
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text("{}")
    return str(folder)


def fake_cluster(monkeypatch, sees: dict[str, bool]):
    """Nodes by address; a node that does not `see` the shared folder looks for it in vain."""
    asked = []
    ids = {f"{i + 1:02x}" * 28: address for i, address in enumerate(sees)}  # Ray's node ids: 28 bytes in hex

    class Probe:
        def __init__(self, fn):
            self.fn, self.node = fn, None

        def options(self, scheduling_strategy):
            probe = Probe(self.fn)
            probe.node = ids[scheduling_strategy.node_id]
            return probe

        def remote(self, folders):
            asked.append(self.node)
            return self.fn(folders if sees[self.node] else [f + "-not-mounted" for f in folders])

    monkeypatch.setattr(capacity.ray, "nodes", lambda: [{"Alive": True, "NodeID": i, "NodeManagerAddress": a} for i, a in ids.items()])
    monkeypatch.setattr(capacity.ray, "remote", lambda **_: Probe)
    monkeypatch.setattr(capacity.ray, "get", lambda missing, timeout: [m.removesuffix("-not-mounted") for m in missing])
    return asked


def test_every_node_is_asked_and_one_that_lacks_the_entry_is_named(monkeypatch, tmp_path):
    folder = entry(tmp_path)
    asked = fake_cluster(monkeypatch, {"10.0.0.1": True, "10.0.0.2": False})
    with pytest.raises(GridError) as err:
        capacity.check_cache_on_every_node(FakeGrid(), [folder, folder])
    message = str(err.value)
    assert sorted(asked) == ["10.0.0.1", "10.0.0.2"] and "\n" not in message
    assert f"cache entry {folder} is not on node 10.0.0.2" in message and "--cache-dir s3://" in message


def test_a_shared_folder_one_node_or_a_uri_pass_without_asking(monkeypatch, tmp_path):
    folder = entry(tmp_path)
    assert capacity._missing_entries([folder, folder + "x"]) == [folder + "x"]
    asked = fake_cluster(monkeypatch, {"a": True, "b": True})
    capacity.check_cache_on_every_node(FakeGrid(), [folder])
    assert sorted(asked) == ["a", "b"]
    asked = fake_cluster(monkeypatch, {"a": False})
    capacity.check_cache_on_every_node(FakeGrid(), [folder])  # one node: the driver's own, which built it
    asked2 = fake_cluster(monkeypatch, {"a": False, "b": False})
    capacity.check_cache_on_every_node(FakeGrid(), ["s3://bucket/cache/tokenized/abc"])
    assert asked == [] and asked2 == []


def test_a_worker_that_cannot_read_the_entry_says_where_and_what_to_do(tmp_path):
    from raygrid.orchestration.trial import _cache_entry

    folder = entry(tmp_path)
    (tmp_path / "cache" / "tokenized" / "abc" / "meta.json").write_text('{"splits": {"train": {"rows": 3}}}')
    assert _cache_entry(folder).split_rows == {"train": 3}
    with pytest.raises(RuntimeError) as err:
        _cache_entry(str(tmp_path / "elsewhere" / "abc"))
    message = str(err.value)
    assert message.startswith(f"cache entry {tmp_path / 'elsewhere' / 'abc'} is not readable on node ")
    assert "FileNotFoundError" in message and "--cache-dir" in message and "\n" not in message


def test_a_local_cache_on_an_autoscaling_cluster_is_warned_about(monkeypatch, tmp_path):
    from raygrid.orchestration.placement import NodeShape

    folder = entry(tmp_path)
    monkeypatch.setattr(capacity, "autoscaler_node_types", lambda: [NodeShape("cpu1", {"CPU": 1.0}, 2)])
    warning = capacity.cache_warning_for_added_nodes([folder])
    assert warning.startswith(f"warning: the cache ({folder}) is a local folder") and "mounted on every node" in warning
    assert capacity.cache_warning_for_added_nodes(["s3://bucket/cache/tokenized/abc"]) is None
    monkeypatch.setattr(capacity, "autoscaler_node_types", lambda: None)
    assert capacity.cache_warning_for_added_nodes([folder]) is None
