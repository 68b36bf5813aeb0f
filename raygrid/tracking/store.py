"""Opening the tracking store: created once under a file lock, checked quickly before Ray starts.

Two processes creating one new SQLite store at the same moment both run MLflow's schema migration,
and the second fails with a long alembic traceback; `<db>.lock` (fcntl) makes the second wait for
the first. A store whose creation was cut short (a write limit, a kill) is left half-migrated and
every later command fails with `table ... already exists`: that is said in one line, with the fix.
A tracking server that does not answer, or a SQLite store another writer holds, is refused in one
line within ~15 s, before Ray starts (MLflow's own HTTP retries would take minutes).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from pathlib import Path

from mlflow.tracking import MlflowClient

CHECK_TIMEOUT_S = 10  # per try of the preflight check; MLflow's HTTP client retries once within it


class StoreError(ValueError):
    """The tracking store cannot be used; the message names it and says what to do (one line)."""


def sqlite_file(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):].split("?", 1)[0]) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def creation_lock(uri: str):
    """Hold `<db>.lock` (SQLite stores only) while the store is opened, so one process creates its schema."""
    db = sqlite_file(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _bounded_http():
    """MLflow's HTTP retries for this check only: a dead server answers in seconds, not minutes."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "1"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(CHECK_TIMEOUT_S // 2)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def open_store(uri: str) -> None:
    """Create or migrate the store (once, under the lock) and check it answers; StoreError in one line if not."""
    with creation_lock(uri), _bounded_http():
        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except Exception as err:
            raise StoreError(describe_failure(uri, err)) from None
    check_writable(uri)


def check_writable(uri: str, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """A SQLite store must take a write within timeout_s (another writer may hold it); nothing is written."""
    db = sqlite_file(uri)
    if db is None:
        return
    try:
        con = sqlite3.connect(db, timeout=timeout_s, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")  # the write lock, taken and given back
            con.execute("ROLLBACK")
        finally:
            con.close()
    except sqlite3.Error as err:
        raise StoreError(describe_failure(uri, err)) from None


def describe_failure(uri: str, err: BaseException) -> str:
    """One line: the store, what went wrong, what to do."""
    text = str(err).lower()
    if "already exists" in text:
        return (f"{uri}: the store's schema was only partly created (an earlier command was stopped while "
                f"creating it: {str(err).splitlines()[0][:120]}); if it holds nothing yet delete "
                f"{sqlite_file(uri) or 'it'} and rerun, else run `mlflow db upgrade {uri}`")
    if "locked" in text:
        return (f"{uri}: the store is locked by another writer (for more than {CHECK_TIMEOUT_S} s); "
                f"wait for it to finish, or stop the process holding {sqlite_file(uri)}")
    if "file is not a database" in text or "malformed" in text:
        return f"{uri}: not a usable MLflow SQLite store ({str(err).splitlines()[0][:120]}); move it aside and rerun"
    if uri.startswith(("http://", "https://")):
        return (f"{uri}: the tracking server does not answer ({type(err).__name__}); start it, or point "
                f"MLFLOW_TRACKING_URI at one that runs")
    return f"{uri}: the tracking store cannot be opened ({type(err).__name__}: {str(err).splitlines()[0][:160]})"


def replay_spool(uri: str, path: Path, log=None) -> int:
    """Write what a run on this --out spooled while the store was unavailable (raygrid.tracking.spool)."""
    from raygrid.tracking import spool
    from raygrid.tracking.retry import RetryingClient

    if not path.exists():
        return 0
    done = spool.replay(path, RetryingClient(MlflowClient(tracking_uri=uri)))
    if done and log is not None:
        log(f"wrote {done} record(s) an earlier run kept in {path} while the store was unavailable")
    return done
