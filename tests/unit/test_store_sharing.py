"""One tracking store, many `raygrid run`s: who owns a cell, the bounded back-off, the spool, claims, the store check."""
from __future__ import annotations

import multiprocessing
import socket
import sqlite3
import subprocess
import sys

import pytest

from raygrid.tracking import spool
from raygrid.tracking.claims import claim_value, taken_by_others
from raygrid.tracking.owners import TAG_OWNER_RUN, Owner, owner_alive
from raygrid.tracking.retry import StoreUnavailable, call_with_retry
from raygrid.tracking.runs import TAG_ERROR, GridTracker
from raygrid.tracking.store import StoreError, open_store

HOST = socket.gethostname()


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


# --- who owns a cell ----------------------------------------------------------------------------


def test_an_owner_on_this_host_lives_exactly_as_long_as_its_pid():
    import os
    assert owner_alive(Owner("a", HOST, os.getpid(), heartbeat=0.0), now=1e9)  # no heartbeat needed
    assert not owner_alive(Owner("a", HOST, dead_pid(), heartbeat=1e9), now=1e9)  # fresh beat, dead pid: dead


def test_an_owner_on_another_host_lives_while_its_heartbeat_is_fresh():
    owner = Owner("a", "other-node", 1, heartbeat=1000.0)
    assert owner_alive(owner, now=1000.0 + 179, stale_s=180)
    assert not owner_alive(owner, now=1000.0 + 181, stale_s=180)
    assert not owner_alive(None, now=0.0)  # a run from before owner tags: an orphan, as always


def tracker(tmp_path, owner=None, **kw) -> GridTracker:
    return GridTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "g", owner=owner, **kw)


def test_a_live_owners_running_cell_is_never_closed_or_superseded(tmp_path):
    first = tracker(tmp_path, Owner.me())  # owned by this live process
    run_id = first.start_cell("c", {}, {"kind": "finetune"})
    second = tracker(tmp_path, Owner("other", "other-node", 1, heartbeat=0.0))
    assert list(second.others_running()) == ["c"] and second.orphans() == {}
    assert second.close_running("orphan") == []
    second.start_cell("c", {}, {"kind": "finetune"})
    first_run = first.client.get_run(run_id)
    assert first_run.info.status == "RUNNING" and "raygrid.superseded" not in first_run.data.tags


def test_a_dead_owners_running_cell_is_an_orphan_closed_with_the_reason(tmp_path):
    dead = Owner("dead", HOST, dead_pid())
    run_id = tracker(tmp_path, dead).start_cell("c", {}, {"kind": "finetune"})
    rerun = tracker(tmp_path, Owner.me())
    assert list(rerun.orphans()) == ["c"]
    assert rerun.close_running("killed earlier") == ["c"]
    run = rerun.client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags[TAG_ERROR] == "killed earlier"


def test_an_orphan_reopened_is_one_run_again_owned_by_the_rerun(tmp_path):
    dead = Owner("dead", HOST, dead_pid())
    old = tracker(tmp_path, dead)
    run_id = old.start_cell("c", {}, {"kind": "finetune"})
    old.log_metrics(run_id, {"val_loss": 1.0}, step=0)
    rerun = tracker(tmp_path, Owner.me())
    rerun.resumable = {"c": run_id}
    assert rerun.start_cell("c", {}, {"kind": "finetune"}) == run_id
    run = rerun.client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.tags[TAG_OWNER_RUN] == rerun.owner.run
    assert len(rerun.cell_runs("c")) == 1


# --- claims -------------------------------------------------------------------------------------


def test_the_earlier_live_claim_wins_a_cell_claimed_twice():
    import os
    me, other = Owner("b", HOST, os.getpid()), Owner("a", HOST, os.getpid())
    tags = {"raygrid.claim.a": claim_value(other, at=10.0, cells=["x", "y"]),
            "raygrid.claim.b": claim_value(me, at=11.0, cells=["y", "z"])}
    taken, dead = taken_by_others(tags, me, 11.0, ["y", "z"])
    assert {cell: owner.run for cell, owner in taken.items()} == {"y": "a"} and dead == []
    # the other side sees the same order: it keeps y
    assert taken_by_others(tags, other, 10.0, ["x", "y"]) == ({}, [])


def test_a_dead_owners_claim_is_ignored_and_reported_for_deletion():
    gone = Owner("a", HOST, dead_pid())
    tags = {"raygrid.claim.a": claim_value(gone, at=1.0, cells=["x"])}
    assert taken_by_others(tags, Owner.me(), 5.0, ["x"]) == ({}, ["raygrid.claim.a"])


def test_two_trackers_claiming_one_grid_split_its_cells(tmp_path):
    first, second = tracker(tmp_path, Owner.me()), tracker(tmp_path, Owner.me())
    assert first.parent_id == second.parent_id
    assert first.claim(["a", "b"]) == {}
    assert set(second.claim(["b", "c"])) == {"b"} and second.claimed == ["c"]


# --- the bounded back-off -----------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_busy_store_is_retried_with_a_doubling_wait_until_it_answers():
    clock, calls = FakeClock(), []

    def flaky():
        calls.append(clock.now)
        if len(calls) < 4:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert call_with_retry(flaky, budget_s=60, sleep=clock.sleep, clock=lambda: clock.now) == "ok"
    assert clock.sleeps == [1.0, 2.0, 4.0]


def test_the_back_off_is_bounded_and_a_real_error_is_not_retried():
    clock = FakeClock()

    def locked():
        raise RuntimeError("database is locked")

    with pytest.raises(StoreUnavailable, match="database is locked"):
        call_with_retry(locked, budget_s=60, sleep=clock.sleep, clock=lambda: clock.now)
    assert sum(clock.sleeps) == pytest.approx(60) and max(clock.sleeps) == 15.0

    def wrong():
        raise ValueError("no run with id 123")

    clock.sleeps.clear()
    with pytest.raises(ValueError):
        call_with_retry(wrong, budget_s=60, sleep=clock.sleep, clock=lambda: clock.now)
    assert clock.sleeps == []


# --- the spool ----------------------------------------------------------------------------------


def test_writes_the_store_refuses_are_spooled_and_written_when_it_answers(tmp_path, monkeypatch):
    path, said = tmp_path / "out" / spool.SPOOL_NAME, []
    t = tracker(tmp_path, Owner.me(), spool=path, warn=said.append)
    run_id = t.start_cell("c", {}, {"kind": "finetune"})
    real = t.client._client.log_batch

    def unavailable(*args, **kwargs):
        raise StoreUnavailable("OperationalError: database is locked")

    monkeypatch.setattr(t.client, "log_batch", unavailable)
    monkeypatch.setattr(t.client, "set_terminated", unavailable)
    t.log_metrics(run_id, {"val_loss": 0.5}, step=0)
    t.log_metrics(run_id, {"val_loss": 0.25}, step=1)
    t.end_cell(run_id)
    assert [e["kind"] for e in spool.pending(path)] == ["metrics", "metrics", "status"]
    assert len(said) == 1 and str(path) in said[0]  # said once, naming the spool
    monkeypatch.setattr(t.client, "log_batch", real)
    monkeypatch.undo()
    again = tracker(tmp_path, spool=path)  # the next run or report on this --out
    assert not path.exists()
    history = again.client.get_metric_history(run_id, "val_loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.5), (1, 0.25)]
    assert again.client.get_run(run_id).info.status == "FINISHED"


def test_a_replay_cut_short_keeps_the_rest_in_order(tmp_path):
    path = tmp_path / spool.SPOOL_NAME
    for i in range(3):
        spool.append(path, f"r{i}", "tags", {"k": str(i)})
    written = []

    class HalfClient:
        def log_batch(self, run_id, tags=()):
            if len(written) == 1:
                raise StoreUnavailable("down again")
            written.append(run_id)

    with pytest.raises(StoreUnavailable):
        spool.replay(path, HalfClient())
    assert written == ["r0"] and [e["run_id"] for e in spool.pending(path)] == ["r1", "r2"]


# --- opening the store --------------------------------------------------------------------------


def _open(uri):
    open_store(uri)


def test_two_processes_creating_one_store_at_once_both_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_open, args=(uri,)) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0]


def test_a_half_created_store_is_one_line_saying_what_to_do(tmp_path):
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as con:
        con.execute("create table trace_info (x int)")
    # A fresh interpreter: MLflow keeps per-process state about stores it has set up.
    code = ("import sys; from raygrid.tracking.store import StoreError, open_store\n"
            f"try: open_store('sqlite:///{db}')\nexcept StoreError as err: print(err); sys.exit(2)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    message = done.stdout.strip()
    assert done.returncode == 2 and "\n" not in message, done.stdout + done.stderr
    assert "partly created" in message and f"delete {db}" in message


def test_a_store_held_by_another_writer_is_refused_naming_it(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    open_store(uri)
    holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        monkeypatch.setattr("raygrid.tracking.store.CHECK_TIMEOUT_S", 0.2)
        from raygrid.tracking.store import check_writable
        with pytest.raises(StoreError, match="locked by another writer"):
            check_writable(uri, timeout_s=0.2)
    finally:
        holder.execute("ROLLBACK")


def test_an_unreachable_server_is_one_line_naming_it():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nobody listens there
    with pytest.raises(StoreError) as err:
        open_store(f"http://127.0.0.1:{port}")
    assert f"http://127.0.0.1:{port}: the tracking server does not answer" in str(err.value)
