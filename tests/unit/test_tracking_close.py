"""Runs that a killed or interrupted `raygrid run` left RUNNING are closed, with the reason on each."""
from mlflow.tracking import MlflowClient

from raygrid.tracking.runs import TAG_ERROR, GridTracker


def tracker(tmp_path):
    return GridTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "g")


def test_close_running_ends_only_running_cell_runs(tmp_path):
    t = tracker(tmp_path)
    t.log_grid("name: g", "g.yaml", 3)
    done, failed, orphan = (t.start_cell(n, {}, {}) for n in ("a", "b", "c"))
    t.end_cell(done)
    t.end_cell(failed, error="boom")
    assert t.close_running("killed earlier") == ["c"]
    client = MlflowClient(t.uri)
    status = {r: client.get_run(r).info.status for r in (done, failed, orphan)}
    assert status == {done: "FINISHED", failed: "FAILED", orphan: "KILLED"}
    assert client.get_run(orphan).data.tags[TAG_ERROR] == "killed earlier"
    assert client.get_run(failed).data.tags[TAG_ERROR] == "boom"
    assert client.get_run(t.parent_id).info.status == "RUNNING"  # the parent is the caller's business
    assert t.close_running("again") == []


def test_superseded_runs_left_running_are_closed_too(tmp_path):
    t = tracker(tmp_path)
    first = t.start_cell("a", {}, {})
    second = t.start_cell("a", {}, {})  # a rerun: the first is tagged superseded, still RUNNING
    assert sorted(t.close_running("orphan")) == ["a", "a"]
    client = MlflowClient(t.uri)
    assert {client.get_run(r).info.status for r in (first, second)} == {"KILLED"}


def test_interrupt_kills_running_cells_and_parent_and_a_rerun_clears_the_parents_reason(tmp_path):
    t = tracker(tmp_path)
    t.log_grid("name: g", "g.yaml", 1)
    run = t.start_cell("a", {}, {})
    t.interrupt_grid("interrupted (Ctrl-C)")
    client = MlflowClient(t.uri)
    parent = client.get_run(t.parent_id)
    assert parent.info.status == "KILLED" and parent.data.tags[TAG_ERROR] == "interrupted (Ctrl-C)"
    assert client.get_run(run).info.status == "KILLED"
    again = tracker(tmp_path)
    assert again.parent_id == t.parent_id
    again.log_grid("name: g", "g.yaml", 1)
    again.end_grid()
    parent = client.get_run(t.parent_id)
    assert parent.info.status == "FINISHED" and TAG_ERROR not in parent.data.tags
