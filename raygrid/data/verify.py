"""Cache entries checked against their own meta.json: row count and content hash of every Parquet file.

A file swapped for another valid Parquet file, truncated, or damaged on disk would otherwise be
trained on silently (or fail inside every trial, run after run). `publish_entry` records the
digests; `entry_problem` compares them before any trial starts.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq

from raygrid.data import storage

CHUNK = 1 << 22


def file_digests(folder: Path) -> dict[str, dict]:
    """{file name: {rows, sha256}} of the Parquet files in a local entry folder being built."""
    return {path.name: {"rows": pq.ParquetFile(path).metadata.num_rows, "sha256": _sha256(str(path))}
            for path in sorted(folder.glob("*.parquet"))}


def entry_problem(folder: str, meta: dict) -> str | None:
    """What is wrong with a published entry, or None when every file matches meta.json.

    Entries written before digests were recorded (no `files` key) are accepted as they are.
    """
    for name, expected in meta.get("files", {}).items():
        location = storage.join(folder, name)
        if not storage.exists(location):
            return f"{name} is missing"
        try:
            digest = _sha256(location)
            with storage.open_input(location) as stream:
                rows = pq.ParquetFile(stream).metadata.num_rows
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            return f"{name} is unreadable ({str(err).splitlines()[0][:200]})"
        if rows != expected["rows"]:
            return f"{name} holds {rows} rows, meta.json says {expected['rows']}"
        if digest != expected["sha256"]:
            return f"{name} differs from the file meta.json describes (content hash)"
    return None


def _sha256(location: str) -> str:
    digest = hashlib.sha256()
    with storage.open_input(location) as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
