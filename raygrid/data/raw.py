"""What every dataset adapter returns: labelled splits as read, and the error that names the bad input."""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa


class DataError(ValueError):
    """Bad input data; the message names the file (and row) at fault."""


@dataclass
class RawSplits:
    """Labelled splits as read, before any split policy; `files` fingerprints the source."""

    tables: dict[str, pa.Table]  # split -> table(text: string, label: int64)
    label_names: list[str]
    origin: dict[str, str] = field(default_factory=dict)  # split -> file or hub id, for messages
    fingerprint: str = ""
    skipped: dict[str, int] = field(default_factory=dict)  # split -> bad rows dropped (data.bad_rows: skip)
