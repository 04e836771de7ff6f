"""Host rows: registering hosts from their agents' startups, and persisting status transitions.

Every function takes a connection in the caller's transaction and runs in a worker thread. Both work on
a batch (the agent manager groups what arrives together into one transaction, see ``db.batching``); the
single-host forms are batches of one. A status transition is a conditional UPDATE on
``(status, update_count)``; a host whose row another writer moved first gets None.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from protocol.messages import StartupRoutingCommand, StartupStorageCommand

from ..db.database import DELTAS
from ..db.journal import journaled
from ..db.schema import clusters, host_capacity, hosts, pods, storage_pools, vms, volumes, zones
from ..errors import InvalidParameter, ResourceInUse
from .host_status import Event, Status, next_status


@dataclass(frozen=True)
class Registration:
    host_id: int = 0
    zone_id: int = 0
    cluster_id: int = 0
    reject_reason: str = ""


class Startup(NamedTuple):
    """What one agent's startup request says about its host."""

    routing: StartupRoutingCommand
    storage: StartupStorageCommand | None
    msid: int


class Change(NamedTuple):
    """One status transition to apply: ``event`` on ``host_id``, taking ownership when msid is given.
    ``holder``: apply it only while that server holds the host (several servers: a host whose agent
    moved to another server is no longer this one's to mark lost)."""

    host_id: int
    event: Event
    msid: int | None = None
    holder: int | None = None


@journaled
@dataclass(frozen=True, slots=True)
class HostStatusChanged:
    """A host's status was written (a delta, as ``planner.deltas``): peers' planners learn of it."""

    host_id: int
    status: str


def _record(conn: Connection, delta: HostStatusChanged) -> None:
    pending = conn.info.get(DELTAS)
    if pending is not None:
        pending.append(delta)


def now() -> datetime:
    return datetime.now(UTC)


def _b(**values: Any) -> dict[str, Any]:
    """Bind names for executemany: ``b_`` prefixed so they never clash with column names."""
    return {f"b_{k}": v for k, v in values.items()}


def _placements(conn: Connection) -> tuple[dict[str, int], dict[tuple[int, str], int],
                                           dict[tuple[int, str], tuple[int, int]]]:
    """Live zones by name, pods by (zone, name), clusters by (zone, name) -> (cluster id, pod id)."""
    zone_ids = {r.name: r.id for r in conn.execute(sa.select(zones.c.id, zones.c.name)
                                                   .where(zones.c.removed.is_(None)))}
    pod_ids = {(r.zone_id, r.name): r.id for r in conn.execute(
        sa.select(pods.c.id, pods.c.zone_id, pods.c.name).where(pods.c.removed.is_(None)))}
    cluster_ids = {(r.zone_id, r.name): (r.id, r.pod_id) for r in conn.execute(
        sa.select(clusters.c.id, clusters.c.zone_id, clusters.c.pod_id, clusters.c.name)
        .where(clusters.c.removed.is_(None)))}
    return zone_ids, pod_ids, cluster_ids


def register(conn: Connection, startup: StartupRoutingCommand, storage: StartupStorageCommand | None,
             msid: int) -> Registration:
    return register_many(conn, [Startup(startup, storage, msid)])[0]


def register_many(conn: Connection, startups: Sequence[Startup]) -> list[Registration]:
    """Create or update each host row by guid and move it to Connecting; refuse unknown placement names.

    A guid that appears twice in one batch (an agent that reconnected at once) is registered twice, in
    order, so the second registration wins as it would have in two transactions.
    """
    results: list[Registration | None] = [None] * len(startups)
    first: dict[str, int] = {}
    again: list[int] = []
    for i, s in enumerate(startups):
        if s.routing.guid in first:
            again.append(i)
        else:
            first[s.routing.guid] = i
    _register_again_if_lost(conn, startups, list(first.values()), results)
    for i in again:
        _register_again_if_lost(conn, startups, [i], results)
    return [r for r in results if r is not None]


def _register_again_if_lost(conn: Connection, startups: Sequence[Startup], indexes: list[int],
                            results: list[Registration | None]) -> None:
    """A host whose row another writer moved between the read and the update (another server marking
    its old connection gone, as it moved here) is registered again on the row as it is now, up to three
    times before the startup is refused."""
    for _attempt in range(3):
        indexes = _register_distinct(conn, startups, indexes, results)
        if not indexes:
            return
    for i in indexes:
        results[i] = Registration(reject_reason="the host row changed under this registration; reconnect")


def _register_distinct(conn: Connection, startups: Sequence[Startup], indexes: list[int],
                       results: list[Registration | None]) -> list[int]:
    """Register the startups of ``indexes`` (distinct guids); those whose row changed under the update
    (to try again)."""
    zone_ids, pod_ids, cluster_ids = _placements(conn)
    placed: list[tuple[int, int, int, int]] = []  # index, zone, pod, cluster
    for i in indexes:
        s = startups[i].routing
        zone_id = zone_ids.get(s.zone)
        pod_id = pod_ids.get((zone_id, s.pod)) if zone_id is not None else None
        cluster = cluster_ids.get((zone_id, s.cluster)) if zone_id is not None else None
        if zone_id is None:
            results[i] = Registration(reject_reason=f"unknown zone {s.zone!r}")
        elif pod_id is None:
            results[i] = Registration(reject_reason=f"unknown pod {s.pod!r} in zone {s.zone!r}")
        elif cluster is None or cluster[1] != pod_id:
            results[i] = Registration(reject_reason=f"unknown cluster {s.cluster!r} in pod {s.pod!r}")
        else:
            placed.append((i, zone_id, pod_id, cluster[0]))
    if not placed:
        return []
    guids = [startups[i].routing.guid for i, *_ in placed]
    existing = {r.guid: r for r in conn.execute(
        sa.select(hosts.c.id, hosts.c.guid, hosts.c.status, hosts.c.update_count)
        .where(hosts.c.guid.in_(guids)))}
    placed = _own_pools_only(conn, startups, placed, existing, results)
    stamp = now()
    new_rows: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []
    retry: list[int] = []
    host_ids: dict[int, int] = {}  # startup index -> host id
    for i, zone_id, pod_id, cluster_id in placed:
        s, msid = startups[i].routing, startups[i].msid
        facts = {
            "name": s.name, "zone_id": zone_id, "pod_id": pod_id, "cluster_id": cluster_id,
            "hypervisor_type": s.hypervisor_type, "hypervisor_version": s.hypervisor_version,
            "private_ip": s.private_ip, "private_mac": s.private_mac, "host_tags": ",".join(s.host_tags),
            "agent_version": s.agent_version, "mgmt_server_id": msid,
        }
        row = existing.get(s.guid)
        if row is None:  # Creating --AgentConnected--> Connecting, in the insert
            new_rows.append({"uuid": str(uuid.uuid4()), "guid": s.guid, "type": "Routing",
                             "status": next_status(Status.CREATING, Event.AGENT_CONNECTED),
                             "resource_state": "Enabled", "update_count": 1, "created": stamp,
                             "status_changed": stamp, **facts})
            continue
        status = next_status(Status(row.status), Event.AGENT_CONNECTED)
        if status is None:
            results[i] = Registration(reject_reason="this host was removed")
            continue
        host_ids[i] = row.id
        moved.append(_b(id=row.id, old_status=row.status, old_count=row.update_count, status=status,
                        count=row.update_count + 1, stamp=stamp, **facts))
    if new_rows:
        inserted = conn.execute(hosts.insert().returning(hosts.c.id, hosts.c.guid,
                                                         sort_by_parameter_order=True), new_rows)
        by_guid = {r.guid: r.id for r in inserted}
        for i, *_ in placed:
            if startups[i].routing.guid in by_guid:
                host_ids[i] = by_guid[startups[i].routing.guid]
    if moved:
        moved.sort(key=lambda m: m["b_id"])  # rows locked in id order (see transition_many)
        facts_cols = [k[2:] for k in moved[0] if k[2:] not in ("id", "old_status", "old_count", "status",
                                                                "count", "stamp")]
        update = (hosts.update()
                  .where(hosts.c.id == sa.bindparam("b_id"), hosts.c.status == sa.bindparam("b_old_status"),
                         hosts.c.update_count == sa.bindparam("b_old_count"))
                  .values(status=sa.bindparam("b_status"), update_count=sa.bindparam("b_count"),
                          status_changed=sa.bindparam("b_stamp"),
                          **{c: sa.bindparam(f"b_{c}") for c in facts_cols}))
        if not _all_applied(conn, conn.execute(update, moved).rowcount, moved):
            lost = _lost(conn, moved)
            for i in [i for i, host_id in host_ids.items() if host_id in lost]:
                del host_ids[i]
                retry.append(i)
    _capacity(conn, startups, host_ids)
    pools = [(host_ids[i], zone_id, pod_id, cluster_id, startups[i].storage)
             for i, zone_id, pod_id, cluster_id in placed if i in host_ids and startups[i].storage]
    _local_pools(conn, pools)
    for i, zone_id, _pod_id, cluster_id in placed:
        if i in host_ids:
            results[i] = Registration(host_id=host_ids[i], zone_id=zone_id, cluster_id=cluster_id)
            _record(conn, HostStatusChanged(host_ids[i], Status.CONNECTING.value))
    return retry


def _own_pools_only(conn: Connection, startups: Sequence[Startup], placed: list[tuple[int, int, int, int]],
                    existing: dict[str, Any], results: list[Registration | None]
                    ) -> list[tuple[int, int, int, int]]:
    """An agent declares only its own local pool: a pool uuid that names any other pool (one the
    operator made, or another host's) rejects the startup, and nothing of it is written."""
    declared = {storage.pool_uuid: i for i, *_ in placed if (storage := startups[i].storage) is not None}
    if not declared:
        return placed
    taken: set[int] = set()
    for pool in conn.execute(sa.select(storage_pools.c.uuid, storage_pools.c.scope, storage_pools.c.host_id)
                             .where(storage_pools.c.uuid.in_(list(declared)))):
        i = declared[pool.uuid]
        host = existing.get(startups[i].routing.guid)
        if pool.scope != "HOST" or host is None or pool.host_id != host.id:
            taken.add(i)
            results[i] = Registration(reject_reason=f"storage pool {pool.uuid} is not this host's local pool")
    return [p for p in placed if p[0] not in taken]


def _all_applied(conn: Connection, rowcount: int, moved: Sequence[object]) -> bool:
    """Whether a conditional executemany changed every row (when the driver's rowcount can tell)."""
    return conn.dialect.supports_sane_multi_rowcount and rowcount == len(moved)


def _lost(conn: Connection, moved: Sequence[dict[str, Any]]) -> set[int]:
    """After a conditional executemany changed fewer rows than asked: the ids whose update did not apply."""
    now_rows = {r.id: r for r in conn.execute(sa.select(hosts.c.id, hosts.c.status, hosts.c.update_count)
                                              .where(hosts.c.id.in_([m["b_id"] for m in moved])))}
    return {m["b_id"] for m in moved
            if (row := now_rows.get(m["b_id"])) is None
            or (row.status, row.update_count) != (m["b_status"], m["b_count"])}


def _capacity(conn: Connection, startups: Sequence[Startup], host_ids: dict[int, int]) -> None:
    if not host_ids:
        return
    known = set(conn.scalars(sa.select(host_capacity.c.host_id)
                             .where(host_capacity.c.host_id.in_(list(host_ids.values())))))
    totals = [{"host_id": host_id, "cpu_cores": startups[i].routing.cpus,
               "cpu_mhz_total": startups[i].routing.cpus * startups[i].routing.cpu_speed_mhz,
               "memory_total": startups[i].routing.memory_bytes} for i, host_id in host_ids.items()]
    updates = [_b(**t) for t in totals if t["host_id"] in known]
    if updates:
        conn.execute(host_capacity.update().where(host_capacity.c.host_id == sa.bindparam("b_host_id"))
                     .values(cpu_cores=sa.bindparam("b_cpu_cores"),
                             cpu_mhz_total=sa.bindparam("b_cpu_mhz_total"),
                             memory_total=sa.bindparam("b_memory_total")), updates)
    inserts = [t for t in totals if t["host_id"] not in known]
    if inserts:
        conn.execute(host_capacity.insert(), inserts)


def _local_pools(conn: Connection, pools: Sequence[tuple[int, int, int, int, StartupStorageCommand | None]]
                 ) -> None:
    rows = []
    for host_id, zone_id, pod_id, cluster_id, storage in pools:
        assert storage is not None
        rows.append({"uuid": storage.pool_uuid, "name": storage.name or f"local-{storage.pool_uuid[:8]}",
                     "zone_id": zone_id, "pod_id": pod_id, "cluster_id": cluster_id, "host_id": host_id,
                     "scope": "HOST", "pool_type": storage.pool_type, "path": storage.path,
                     "capacity_bytes": storage.capacity_bytes, "status": "Up"})
    if not rows:
        return
    known = set(conn.scalars(sa.select(storage_pools.c.uuid)
                             .where(storage_pools.c.uuid.in_([r["uuid"] for r in rows]))))
    updates = [_b(**r) for r in rows if r["uuid"] in known]
    if updates:
        conn.execute(storage_pools.update().where(storage_pools.c.uuid == sa.bindparam("b_uuid"))
                     .values(**{k: sa.bindparam(f"b_{k}") for k in rows[0] if k != "uuid"}), updates)
    inserts = [{**r, "created": now()} for r in rows if r["uuid"] not in known]
    if inserts:
        conn.execute(storage_pools.insert(), inserts)


def _unless_none(bind: str, column: sa.Column[Any]) -> sa.ColumnElement[Any]:
    """The bound value, or the column's current value when the bound value is None."""
    return sa.func.coalesce(sa.bindparam(bind, type_=column.type), column)


def transition(conn: Connection, host_id: int, event: Event, *, msid: int | None = None) -> Status | None:
    """Apply ``event`` to the host; the new status, or None when it does not apply or lost a race."""
    return transition_many(conn, [Change(host_id, event, msid)])[0]


def transition_many(conn: Connection, changes: Sequence[Change]) -> list[Status | None]:
    """Apply each change in order; for each, the new status or None (does not apply, or lost a race)."""
    results: list[Status | None] = [None] * len(changes)
    held: dict[int, int | None] = {}
    rows: dict[int, tuple[Status, int]] = {}
    for r in conn.execute(sa.select(hosts.c.id, hosts.c.status, hosts.c.update_count, hosts.c.mgmt_server_id)
                          .where(hosts.c.id.in_({c.host_id for c in changes}))):
        rows[r.id] = (Status(r.status), r.update_count)
        held[r.id] = r.mgmt_server_id
    before = dict(rows)
    stamp = now()
    final: dict[int, dict[str, Any]] = {}  # host id -> its last change's values (several fold into one)
    for i, change in enumerate(changes):
        if change.host_id not in rows:
            continue
        if change.holder is not None and held[change.host_id] != change.holder:
            continue  # another server holds it now
        status, count = rows[change.host_id]
        new = next_status(status, change.event)
        if new is None:
            continue
        results[i] = new
        rows[change.host_id] = (new, count + 1)
        values = final.setdefault(change.host_id, {"b_ping": None, "b_msid": None})
        values.update(b_id=change.host_id, b_status=new, b_count=count + 1)
        if change.event in (Event.READY, Event.PING):
            values["b_ping"] = stamp
        if change.msid is not None:
            values["b_msid"] = change.msid
            held[change.host_id] = change.msid
    if not final:
        return results
    # In id order: two servers updating overlapping sets of hosts lock their rows in the same order
    # (any other order can deadlock on PostgreSQL).
    moved = [{**v, "b_old_status": before[h][0], "b_old_count": before[h][1]}
             for h, v in sorted(final.items())]
    update = (hosts.update()
              .where(hosts.c.id == sa.bindparam("b_id"), hosts.c.status == sa.bindparam("b_old_status"),
                     hosts.c.update_count == sa.bindparam("b_old_count"))
              .values(status=sa.bindparam("b_status"), update_count=sa.bindparam("b_count"),
                      status_changed=stamp,
                      last_ping=_unless_none("b_ping", hosts.c.last_ping),
                      mgmt_server_id=_unless_none("b_msid", hosts.c.mgmt_server_id)))
    if not _all_applied(conn, conn.execute(update, moved).rowcount, moved):
        lost = _lost(conn, moved)
        results = [None if c.host_id in lost else r for c, r in zip(changes, results, strict=True)]
    for host_id in {c.host_id for c, r in zip(changes, results, strict=True) if r is not None}:
        _record(conn, HostStatusChanged(host_id, Status(final[host_id]["b_status"]).value))
    return results


def release_hosts(conn: Connection, msid: int, *, to: int | None = None) -> int:
    """Hosts server ``msid`` still holds as connected (it crashed, or was killed) become Disconnected, as
    after a clean stop: their agents will reconnect. Run at start-up, or by the peer that takes a dead
    server over (``to``: it then holds them, to look after those whose agents do not come back);
    returns how many moved."""
    held = list(conn.scalars(sa.select(hosts.c.id).where(
        hosts.c.mgmt_server_id == msid, hosts.c.status.in_([Status.CONNECTING, Status.UP, Status.ALERT]))
        .order_by(hosts.c.id)))
    moved = transition_many(conn, [Change(h, Event.MANAGEMENT_SERVER_DOWN, to, holder=msid) for h in held])
    if to is not None:  # the Disconnected and Down ones it held too
        conn.execute(hosts.update().where(hosts.c.mgmt_server_id == msid).values(mgmt_server_id=to))
    return sum(1 for status in moved if status is not None)


def remove_host(conn: Connection, host_id: int, *, forced: bool) -> str:
    """deleteHost: the host leaves the inventory (Removed, with its local pools); its guid, whose
    certificates the caller revokes. Refused while VMs are on it, and, unless ``forced``, while it is
    Up and not in maintenance or disabled."""
    host = conn.execute(sa.select(hosts).where(hosts.c.id == host_id)).one()
    on_it = conn.scalar(sa.select(sa.func.count()).select_from(vms).where(
        vms.c.removed.is_(None), sa.or_(vms.c.host_id == host_id,
                                        vms.c.last_host_id == host_id) & vms.c.state.in_(
            ["Starting", "Running", "Stopping", "Migrating"])))
    if on_it:
        raise ResourceInUse(f"host {host.name} has {on_it} VMs; stop or migrate them first")
    local = sa.select(storage_pools.c.id).where(storage_pools.c.host_id == host_id,
                                                storage_pools.c.scope == "HOST")
    stored = conn.scalar(sa.select(sa.func.count()).select_from(volumes).where(
        volumes.c.removed.is_(None), volumes.c.pool_id.in_(local)))
    if stored:
        raise ResourceInUse(f"host {host.name} keeps {stored} volumes on its local storage; expunge or "
                            f"move them first")
    quiet = host.resource_state in ("Maintenance", "ErrorInMaintenance", "Disabled") or \
        host.status in (Status.ALERT, Status.DOWN, Status.DISCONNECTED)
    if not quiet and not forced:
        raise InvalidParameter(f"host {host.name} is {host.status} and {host.resource_state}: put it in "
                               f"maintenance (or disable it) first, or pass forced=true")
    new = next_status(Status(host.status), Event.REMOVE)
    if new is None:
        raise InvalidParameter(f"host {host.name} is {host.status}; it cannot be removed from there")
    stamp = now()
    this = (hosts.c.id == host_id) & (hosts.c.update_count == host.update_count)
    moved = conn.execute(hosts.update().where(this).values(status=new, removed=stamp, status_changed=stamp,
                                 update_count=host.update_count + 1)).rowcount
    if moved != 1:
        raise InvalidParameter(f"host {host.name} changed while it was being removed; try again")
    conn.execute(storage_pools.update()
                 .where(storage_pools.c.id.in_(local), storage_pools.c.removed.is_(None))
                 .values(removed=stamp, status="Removed"))
    return str(host.guid)
