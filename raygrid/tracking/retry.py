"""MLflow calls that ride out a busy or briefly unreachable store: a bounded back-off, then StoreUnavailable.

A SQLite store another writer holds, or a tracking server restarting, fails a call that would work a
little later. Every call of GridTracker's client is retried for up to RAYGRID_STORE_RETRY_S seconds
(default 60) in total, waiting 1, 2, 4 ... (at most 15) seconds between tries; only errors that say
the store is busy or unreachable are retried, a real error (a bad name, a missing run) fails at once.
What still cannot be written then is spooled by the caller (raygrid.tracking.spool), never lost.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

# Words of the errors a later try can cure: SQLite's busy store, a server that does not answer.
TRANSIENT = ("database is locked", "database table is locked", "unable to open database file",
             "connection refused", "max retries exceeded", "connection aborted", "connection reset",
             "temporarily unavailable", "timed out", "read timeout", "503", "502", "504", "api request to")


class StoreUnavailable(RuntimeError):
    """The store stayed busy or unreachable for the whole back-off; the message names the last error."""


def retry_budget_s() -> float:
    return float(os.environ.get("RAYGRID_STORE_RETRY_S", 60))


def transient(err: BaseException) -> bool:
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    text = f"{type(err).__name__}: {err}".lower()
    return any(word in text for word in TRANSIENT)


def call_with_retry(fn: Callable[[], Any], budget_s: float | None = None, sleep=time.sleep,
                    clock=time.monotonic) -> Any:
    """fn(), retried on transient errors with a doubling wait until budget_s has passed; else StoreUnavailable."""
    budget = retry_budget_s() if budget_s is None else budget_s
    deadline, wait = clock() + budget, 1.0
    while True:
        try:
            return fn()
        except Exception as err:
            if not transient(err):
                raise
            left = deadline - clock()
            if left <= 0:
                raise StoreUnavailable(_cause(err)) from err
            sleep(min(wait, left))
            wait = min(wait * 2, 15.0)


class RetryingClient:
    """An MlflowClient whose every method call goes through call_with_retry."""

    def __init__(self, client, budget_s: float | None = None):
        self._client, self._budget_s = client, budget_s
        # MLflow logs a full traceback for every locked-store try before raising; the retry says it in one line.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def retried(*args, **kwargs):
            return call_with_retry(lambda: attr(*args, **kwargs), self._budget_s)
        return retried


def _cause(err: BaseException) -> str:
    """The line of the error that says what is wrong (SQLAlchemy puts advice about autoflush first)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [""]
    line = next((line for line in lines if any(word in line.lower() for word in TRANSIENT)), lines[0])
    return f"{type(err).__name__}: {line[:300]}"
