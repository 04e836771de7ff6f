"""The catalog: the rows a deploy checks and that change rarely (zones, service and disk offerings,
templates, networks and their IP ranges), kept in memory so that admitting a VM reads none of them.

One owner: ``Catalog`` holds an immutable ``Snapshot`` and loads a new one, in one read, when asked
for it after a change. Changes are found where they happen: every INSERT, UPDATE or DELETE on one of
its tables records a ``CatalogChanged`` delta (an engine event, so no command can forget to), and once
its transaction commits the writer hands the delta to ``changed``, which drops the snapshot (a write
outside the writer, at start-up or by a tool, drops it at once). A snapshot loaded while a change
commits serves the request that asked for it but is not kept. Removed rows are not in it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import trio
from sqlalchemy.engine import Connection

from .db.database import DELTAS, Database
from .db.journal import journaled
from .db.schema import (
    disk_offerings,
    ip_ranges,
    network_offerings,
    networks,
    security_groups,
    service_offerings,
    templates,
    zones,
)

log = logging.getLogger(__name__)

TABLES = (zones, service_offerings, disk_offerings, templates, networks, ip_ranges, network_offerings,
          security_groups)
_NAMES = frozenset(t.name for t in TABLES)


@journaled
@dataclass(frozen=True, slots=True)
class CatalogChanged:
    """A transaction wrote to a catalog table (a delta, as ``planner.deltas``)."""

    table: str


@dataclass(frozen=True)
class Table:
    """One table's live rows, by uuid and by id."""

    by_uuid: Mapping[str, Any]
    by_id: Mapping[int, Any]


@dataclass(frozen=True)
class Snapshot:
    zones: Table
    service_offerings: Table
    disk_offerings: Table
    templates: Table
    networks: Table
    network_offerings: Table
    ranges: Mapping[int, list[tuple[int, int]]] = field(default_factory=dict)  # network id -> ranges
    zone_networks: Mapping[int, list[int]] = field(default_factory=dict)  # zone id -> shared network ids
    # security groups (id, uuid, name, account_id): by uuid and id, and by (account id, name)
    security_groups: Table = field(default_factory=lambda: Table({}, {}))
    group_names: Mapping[tuple[int, str], int] = field(default_factory=dict)


def _load(conn: Connection) -> Snapshot:
    tables = {}
    for table in (zones, service_offerings, disk_offerings, templates, networks, network_offerings):
        rows = conn.execute(sa.select(table).where(table.c.removed.is_(None))).all()
        tables[table.name] = Table({r.uuid: r for r in rows}, {r.id: r for r in rows})
    ranges: dict[int, list[tuple[int, int]]] = {}
    for network_id, start, end in conn.execute(
        sa.select(ip_ranges.c.network_id, ip_ranges.c.start_ip, ip_ranges.c.end_ip).order_by(ip_ranges.c.id)
    ):
        ranges.setdefault(network_id, []).append(
            (int(ipaddress.ip_address(start)), int(ipaddress.ip_address(end))))
    zone_networks: dict[int, list[int]] = {}
    for row in tables["networks"].by_id.values():
        if row.account_id is None:  # an account's isolated network is never a zone's default
            zone_networks.setdefault(row.zone_id, []).append(row.id)
    groups = conn.execute(sa.select(security_groups.c.id, security_groups.c.uuid, security_groups.c.name,
                                    security_groups.c.account_id)).all()
    return Snapshot(**tables, ranges=ranges, zone_networks=zone_networks,
                    security_groups=Table({g.uuid: g for g in groups}, {g.id: g for g in groups}),
                    group_names={(g.account_id, g.name): g.id for g in groups})


class Catalog:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._snapshot: Snapshot | None = None
        self._generation = 0  # changes seen so far
        self._loading: trio.Event | None = None
        self.loads = 0
        sa.event.listen(db.engine, "before_execute", self._note_writes)
        db.commit_listeners.append(self.changed)
        db.remote_listeners.append(self.changed)  # a peer's change (several servers)

    def _note_writes(self, conn: Connection, clause: Any, *_args: Any) -> None:
        """(Engine event, on the thread that executes) a statement that writes to a catalog table."""
        if not isinstance(clause, sa.sql.dml.UpdateBase):
            return
        table = getattr(clause, "table", None)
        if getattr(table, "name", None) not in _NAMES:
            return
        pending = conn.info.get(DELTAS)
        if pending is not None:
            pending.append(CatalogChanged(table.name))  # type: ignore[union-attr]
        else:  # written outside the writer (start-up, tools): forget the snapshot at once
            self._generation += 1
            self._snapshot = None

    def changed(self, _seq: int, deltas: list[Any]) -> None:
        if any(isinstance(d, CatalogChanged) for d in deltas):
            self._generation += 1
            self._snapshot = None

    @property
    def shared(self) -> bool:
        """Other servers may change it (several servers share the database)."""
        return self.db.journal_msid is not None

    async def current(self, *, fresh: bool = False) -> Snapshot:
        """The catalog as committed now (loaded again after a change); ``fresh``: read it again now."""
        if fresh:
            self._generation += 1
            self._snapshot = None
        while True:
            snapshot = self._snapshot
            if snapshot is not None:
                return snapshot
            if self._loading is not None:  # one load at a time; the others wait for it
                await self._loading.wait()
                continue
            generation = self._generation
            self._loading = trio.Event()
            try:
                snapshot = await self.db.read(_load)
                self.loads += 1
            finally:
                self._loading.set()
                self._loading = None
            if generation == self._generation:
                self._snapshot = snapshot
            return snapshot  # (read after the request came: good for it, even when not kept)
