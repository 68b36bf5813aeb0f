"""What could not be written to the store, kept in `--out` as JSON lines until the store takes it.

One line per write: {"run_id", "kind": "metrics" | "tags" | "status", "data"}. The `raygrid run`
that spooled them replays the file before its next write; otherwise the next `raygrid run` or
`raygrid report` on the same `--out` does, before reading anything. Lines are replayed in order and
removed once written, so a replay cut short by the store failing again resumes where it stopped.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from mlflow.entities import Metric, RunTag

SPOOL_NAME = "mlflow-spool.jsonl"


def spool_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / SPOOL_NAME


def append(path: Path, run_id: str, kind: str, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps({"run_id": run_id, "kind": kind, "data": data}) + "\n")
        f.flush()
        os.fsync(f.fileno())  # the point of the spool is to outlive this process


def pending(path: Path | None) -> list[dict]:
    if path is None or not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:  # a line cut by a crash mid-write: nothing after it was written either
            break
    return entries


def replay(path: Path | None, client) -> int:
    """Write the spooled entries with `client` (an MlflowClient), oldest first; how many were written.

    Stops at the first failure, keeping that entry and the rest for the next replay.
    """
    entries = pending(path)
    done = 0
    try:
        for entry in entries:
            write(client, entry)
            done += 1
    finally:
        if done:
            rest = entries[done:]
            if rest:
                path.write_text("".join(json.dumps(e) + "\n" for e in rest))
            else:
                path.unlink(missing_ok=True)
    return done


def write(client, entry: dict) -> None:
    run_id, kind, data = entry["run_id"], entry["kind"], entry["data"]
    if kind == "metrics":
        client.log_batch(run_id, metrics=[Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in data])
    elif kind == "tags":
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in data.items()])
    elif kind == "status":
        client.set_terminated(run_id, data["status"], end_time=data.get("end_time"))
    else:
        raise ValueError(f"unknown spool entry kind {kind!r}")
