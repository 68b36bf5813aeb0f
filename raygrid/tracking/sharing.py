"""The part of GridTracker that shares one store with other `raygrid run`s: claims, owners, orphans.

GridTracker (raygrid.tracking.runs) inherits it; these methods use its client, parent run and owner.
raygrid.tracking.owners says who is alive, raygrid.tracking.claims how a cell is claimed.
"""
from __future__ import annotations

import time

from mlflow.entities import RunTag

from raygrid.tracking.claims import TAG_CLAIM, claim_value, live_claims, read_claims, taken_by_others
from raygrid.tracking.owners import Owner, owner_alive
from raygrid.tracking.retry import StoreUnavailable

TAG_ROLE, TAG_CELL, TAG_SUPERSEDED, TAG_ERROR = "raygrid.role", "raygrid.cell", "raygrid.superseded", "raygrid.error"


class SharedStore:
    """Claims, heartbeats and orphans of a grid's runs on a store several `raygrid run`s write to."""

    def claim(self, cells: list[str]) -> dict[str, Owner]:
        """Claim `cells` for this run (raygrid.tracking.claims); cell -> owner of those a live run claimed first."""
        self.claimed_at = time.time()
        key = TAG_CLAIM + self.owner.run
        self.client.set_tag(self.parent_id, key, claim_value(self.owner, self.claimed_at, cells))
        tags = self.client.get_run(self.parent_id).data.tags
        taken, dead = taken_by_others(tags, self.owner, self.claimed_at, cells)
        for old in dead:
            self.client.delete_tag(self.parent_id, old)
        self.claimed = [cell for cell in cells if cell not in taken]
        if taken:
            self.client.set_tag(self.parent_id, key, claim_value(self.owner, self.claimed_at, self.claimed))
        return taken

    def release_claim(self) -> None:
        if self.owner is not None and self.claimed_at:
            self.claimed_at = 0.0
            try:
                self.client.delete_tag(self.parent_id, TAG_CLAIM + self.owner.run)
            except Exception:  # already gone, or the store is down: a dead owner's claim is ignored anyway
                pass

    def claimed_elsewhere(self, cells: list[str]) -> dict[str, Owner]:
        """cell -> live owner of `cells` another run claimed or is running (read-only: before this run claims)."""
        found = live_claims(self.client.get_run(self.parent_id).data.tags, cells)
        found.update({c: o for c, o in self.others_running().items() if c in cells})
        return found

    def reopen_cell(self, run_id: str, tags: dict[str, str] | None = None) -> str:
        """Continue an orphaned cell run (its owner died) as this run's own: one run, one history, resumed."""
        self.live.add(run_id)
        self.set_tags(run_id, {**(tags or {}), **(self.owner.tags() if self.owner else {})})
        if TAG_ERROR in self.client.get_run(run_id).data.tags:
            self.client.delete_tag(run_id, TAG_ERROR)
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def heartbeat(self) -> None:
        """Refresh this run's owner tags (and claim) on its parent and open cell runs (owners.Heartbeat)."""
        parent = self.owner.tags()
        if self.claimed_at:
            parent[TAG_CLAIM + self.owner.run] = claim_value(self.owner, self.claimed_at, self.claimed)
        for run_id, tags in [(self.parent_id, parent), *((run_id, self.owner.tags()) for run_id in sorted(self.live))]:
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def _owned_by_other_live(self, run) -> bool:
        if run.info.status != "RUNNING":  # an ended run is nobody's, whatever process wrote it (main() twice in one)
            return False
        owner = Owner.from_tags(run.data.tags)
        if owner is None or (self.owner is not None and owner.run == self.owner.run):
            return False
        return owner_alive(owner, time.time())

    def others_running(self) -> dict[str, Owner]:
        """cell -> owner of this grid's RUNNING cell runs that another live `raygrid run` owns."""
        found = {}
        for run in self._search(f"tags.`{TAG_ROLE}` = 'cell' and attributes.status = 'RUNNING'"):
            if self._owned_by_other_live(run):
                found[run.data.tags.get(TAG_CELL, run.info.run_id)] = Owner.from_tags(run.data.tags)
        return found

    def _others_active(self) -> bool:
        """Whether another live `raygrid run` still runs or has claimed cells of this grid (False if unknown)."""
        try:
            tags = self.client.get_run(self.parent_id).data.tags
            mine = TAG_CLAIM + self.owner.run if self.owner else None
            claims = read_claims({k: v for k, v in tags.items() if k != mine})
            return any(owner_alive(owner, time.time()) for owner, _, _ in claims.values()) or bool(self.others_running())
        except StoreUnavailable:
            return False

    def orphans(self) -> dict[str, object]:
        """cell -> its current RUNNING run whose owner is dead (or unknown): left by a killed `raygrid run`."""
        found = {}
        for run in self._search(f"tags.`{TAG_ROLE}` = 'cell' and attributes.status = 'RUNNING'"):
            owner = Owner.from_tags(run.data.tags)
            mine = owner is not None and self.owner is not None and owner.run == self.owner.run
            if not mine and not self._owned_by_other_live(run) and run.data.tags.get(TAG_SUPERSEDED) != "true":
                found.setdefault(run.data.tags.get(TAG_CELL, run.info.run_id), run)
        return found
