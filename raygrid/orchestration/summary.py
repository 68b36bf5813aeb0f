"""What one `raygrid run` did to each cell: skipped (finished before), finished, or failed with a reason."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunSummary:
    skipped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
