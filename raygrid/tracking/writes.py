"""The writes of GridTracker that must not be lost: metrics, tags, status, spooled when the store is down.

Every call already rides out a busy store (raygrid.tracking.retry); a write that still fails goes to
the spool file in `--out` (raygrid.tracking.spool), after whatever is spooled already, so the order
of a run's writes is kept. The next write, run or report writes the spool first.
"""
from __future__ import annotations

import time

from mlflow.entities import Metric, RunTag

from raygrid.tracking import spool as spooled
from raygrid.tracking.retry import StoreUnavailable


class SpooledWrites:
    """GridTracker's writes (it sets client, uri, spool and warn)."""

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        if tags:  # one request, not one per tag
            tags = {k: str(v) for k, v in tags.items()}
            self._write(run_id, "tags", tags, lambda: self.client.log_batch(
                run_id, tags=[RunTag(k, v) for k, v in tags.items()]))

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        rows = [(k, float(v), now, step) for k, v in metrics.items()]
        self._write(run_id, "metrics", rows, lambda: self.client.log_batch(
            run_id, metrics=[Metric(*row) for row in rows]))

    def _terminate(self, run_id: str, status: str) -> None:
        end = int(time.time() * 1000)
        self._write(run_id, "status", {"status": status, "end_time": end},
                    lambda: self.client.set_terminated(run_id, status, end_time=end))

    def _write(self, run_id: str, kind: str, data, write) -> None:
        """write(), after what the spool holds; spooled when the store stays unavailable past the back-off."""
        if self.spool is not None and self.spool.exists():
            try:
                self.replay_spool()
            except StoreUnavailable:
                spooled.append(self.spool, run_id, kind, data)  # after the older entries: order is kept
                return
        try:
            write()
        except StoreUnavailable as err:
            if self.spool is None:
                raise
            spooled.append(self.spool, run_id, kind, data)
            if self.warn is not None:
                self.warn(f"warning: the tracking store {self.uri} is unavailable ({err}); kept in {self.spool}, "
                          f"written when the store answers again (or by the next raygrid run/report)")
                self.warn = None  # once per run: every later write would say the same

    def replay_spool(self) -> int:
        """Write what an earlier write (of this or an earlier run on this --out) spooled."""
        return spooled.replay(self.spool, self.client) if self.spool is not None else 0

