"""What `raygrid plan` says about the store: which cells `raygrid run` would skip and which it would run.

plan writes nothing anywhere. The store is read as `run` would read it (raygrid.orchestration.finished:
a cell counts as finished when its FINISHED run recorded the config it has now), but a SQLite store is
opened read-only (SQLite's `mode=ro`), so plan never creates, migrates or locks it, even while a `run`
starting at the same moment creates it; a tracking server is only queried. No store = nothing finished.
No `ray` import here (plan starts no Ray); MLflow is imported only when a store exists.
"""
from __future__ import annotations

import os
from pathlib import Path

from raygrid.spec.grid import Grid


def existing_store(out_dir: Path) -> tuple[str, str] | None:
    """(the MLflow URI `run` would use, a read-only URI of it), or None when there is no store yet.

    The read-only URI is spelled `sqlite+pysqlite:///file:<path>?mode=ro&uri=true`: the `+pysqlite`
    also keeps MLflow from creating the "parent folder" of a `sqlite:///file:` path in the current folder.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None:
        database = out_dir / "mlflow.db"
        uri = f"sqlite:///{database.resolve()}" if database.is_file() else None
    if uri is None or not uri.startswith("sqlite:///"):
        if uri and uri.startswith(("http://", "https://")):
            # plan's answer is advice: a server that does not answer costs seconds, not MLflow's minutes of retries
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        return (uri, uri) if uri else None
    path = Path(uri[len("sqlite:///"):]).resolve()
    return (uri, f"sqlite+pysqlite:///file:{path}?mode=ro&uri=true") if path.is_file() else None


def status_lines(grid: Grid, store: tuple[str, str] | None, default_db: Path) -> list[str]:
    """One line of counts, then the cells `raygrid run` would run (with why, for a finished cell that changed)."""
    total = len(grid.cells)
    if store is None:
        return [f"MLflow: no store at {default_db} yet: all {total} cells would run"]
    shown, read = store
    try:
        from raygrid.orchestration.finished import finished_cells

        found = finished_cells(grid, read)
    except Exception as err:  # a store being created right now, an older schema, a server that is down
        first = (str(err).strip().splitlines() or [""])[0][:160]
        why = " (plan opens it read-only: it never creates or migrates a store)" if read.startswith("sqlite") else ""
        return [f"MLflow {shown}: cannot be read{why}: {type(err).__name__}: {first}; "
                f"which cells finished is not known"]
    pending = [(i, cell) for i, cell in enumerate(grid.cells, 1) if cell.name not in found.runs]
    if not pending:
        return [f"MLflow {shown}: all {total} cells finished; `raygrid run` would skip them all"]
    done = total - len(pending)
    if not done:
        return [f"MLflow {shown}: no cell finished yet; all {total} would run"]
    lines = [f"MLflow {shown}: {done} of {total} cells finished (`raygrid run` skips them); {len(pending)} would run:"]
    for i, cell in pending:
        why = found.changed.get(cell.name)
        lines.append(f"{i:4d}  {cell.name}" + (f"  (again: {why})" if why else ""))
    return lines
