"""Capacity changes as typed deltas: recorded in the transaction that writes them, applied to the
planner's indexes after that transaction commits, in one place (``Placement.apply``).

Code that changes a host's or a pool's capacity columns (``capacity.py``, template copies, a host's
allocation state) calls ``record(conn, delta)`` next to its UPDATE. ``Database.run`` collects what a
transaction recorded, numbers it with the commit sequence, and hands it to its commit listeners once
the transaction has committed; a transaction that rolls back hands nothing. Nobody else touches the
index's capacity numbers, so the index cannot drift from the database by a forgotten call site.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from ..db.database import DELTAS as KEY
from ..db.journal import journaled


@journaled
@dataclass(frozen=True, slots=True)
class HostAllocated:
    """CPU MHz and memory bytes added to (negative: removed from) a host's used + reserved."""

    host_id: int
    cpu_mhz: int
    memory: int


@journaled
@dataclass(frozen=True, slots=True)
class HostEnabled:
    """A host's allocation state changed: it takes new VMs (Enabled) or not."""

    host_id: int
    enabled: bool


@journaled
@dataclass(frozen=True, slots=True)
class PoolAllocated:
    pool_id: int
    nbytes: int


@journaled
@dataclass(frozen=True, slots=True)
class TemplateCopied:
    """A template's copy on a pool became Ready; it takes ``nbytes`` there."""

    pool_id: int
    template_id: int
    nbytes: int


@journaled
@dataclass(frozen=True, slots=True)
class InventoryChanged:
    """Hosts, clusters or pools were added, removed or retagged: an index is read again (several
    servers: a peer's change reaches the others' indexes this way)."""


Delta = HostAllocated | HostEnabled | PoolAllocated | TemplateCopied


def record(conn: Connection, delta: Delta | InventoryChanged) -> None:
    """Note a capacity change made in this transaction (ignored outside ``Database.run``)."""
    pending = conn.info.get(KEY)
    if pending is not None:
        pending.append(delta)
