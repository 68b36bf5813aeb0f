"""Which `raygrid run` trains which cell, when several run one grid against one store at once.

Before its first trial a run writes a claim on the grid's parent run: a tag
`raygrid.claim.<owner run>` holding its owner (raygrid.tracking.owners), when it claimed, and the
cells it will train (short hashes of their names: a tag holds 8000 characters, ~1000 cells). It then
reads every claim back: a cell also claimed by a live run that claimed it earlier (ties broken by
the owner id) is left to that run. Whichever of two runs reads last sees both claims, and both
order them alike, so each cell is trained once. Claims are refreshed by the heartbeat and removed
when the run ends; a dead owner's claim is ignored and deleted. Residual race: across hosts whose
clocks differ by more than the gap between the two claims, both may keep a cell.
"""
from __future__ import annotations

import hashlib
import json
import time

from raygrid.tracking.owners import Owner, owner_alive

TAG_CLAIM = "raygrid.claim."


def cell_key(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:6]


def claim_value(owner: Owner, at: float, cells: list[str], now: float | None = None) -> str:
    return json.dumps({"run": owner.run, "host": owner.host, "pid": owner.pid,
                       "heartbeat": round(time.time() if now is None else now), "at": at,
                       "cells": ",".join(cell_key(c) for c in cells)})


def read_claims(tags: dict[str, str]) -> dict[str, tuple[Owner, float, set[str]]]:
    """tag key -> (owner, claimed at, cell keys) of every claim on the parent run."""
    claims = {}
    for key, value in tags.items():
        if not key.startswith(TAG_CLAIM):
            continue
        try:
            data = json.loads(value)
            owner = Owner(data["run"], data["host"], int(data["pid"]), float(data["heartbeat"]))
            claims[key] = (owner, float(data["at"]), set(filter(None, data["cells"].split(","))))
        except (ValueError, KeyError, TypeError):
            continue
    return claims


def taken_by_others(tags: dict[str, str], me: Owner, at: float, cells: list[str],
                    now: float | None = None) -> tuple[dict[str, Owner], list[str]]:
    """(cell -> live owner that claimed it first, tag keys of dead owners' claims) among `cells`."""
    now = time.time() if now is None else now
    taken, dead = {}, []
    for key, (owner, claimed_at, keys) in read_claims(tags).items():
        if owner.run == me.run:
            continue
        if not owner_alive(owner, now):
            dead.append(key)
            continue
        if (claimed_at, owner.run) < (at, me.run):
            taken.update({cell: owner for cell in cells if cell_key(cell) in keys})
    return taken, dead


def live_claims(tags: dict[str, str], cells: list[str], now: float | None = None) -> dict[str, Owner]:
    """cell -> live owner, for the cells of `cells` a live run claimed (a read before this run claims)."""
    now = time.time() if now is None else now
    found = {}
    for owner, _, keys in read_claims(tags).values():
        if owner_alive(owner, now):
            found.update({cell: owner for cell in cells if cell_key(cell) in keys})
    return found
