"""Host rows: registering a host from its agent's startup, and persisting status transitions.

Every function takes a connection in the caller's transaction and runs in a worker thread. A status
transition is one conditional UPDATE on ``(status, update_count)``; zero rows changed means another
writer moved the host first, and the caller gets None.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from protocol.messages import StartupRoutingCommand, StartupStorageCommand

from ..db.schema import clusters, host_capacity, hosts, pods, storage_pools, zones
from .host_status import Event, Status, next_status


@dataclass(frozen=True)
class Registration:
    host_id: int = 0
    zone_id: int = 0
    cluster_id: int = 0
    reject_reason: str = ""


def now() -> datetime:
    return datetime.now(UTC)


def register(conn: Connection, startup: StartupRoutingCommand, storage: StartupStorageCommand | None,
             msid: int) -> Registration:
    """Create or update the host row by guid and move it to Connecting; refuse unknown placement names."""
    zone_id = conn.scalar(sa.select(zones.c.id).where(zones.c.name == startup.zone,
                                                      zones.c.removed.is_(None)))
    if zone_id is None:
        return Registration(reject_reason=f"unknown zone {startup.zone!r}")
    pod_id = conn.scalar(sa.select(pods.c.id).where(pods.c.zone_id == zone_id, pods.c.name == startup.pod,
                                                    pods.c.removed.is_(None)))
    if pod_id is None:
        return Registration(reject_reason=f"unknown pod {startup.pod!r} in zone {startup.zone!r}")
    cluster = conn.execute(sa.select(clusters.c.id, clusters.c.pod_id).where(
        clusters.c.zone_id == zone_id, clusters.c.name == startup.cluster,
        clusters.c.removed.is_(None))).first()
    if cluster is None or cluster.pod_id != pod_id:
        return Registration(reject_reason=f"unknown cluster {startup.cluster!r} in pod {startup.pod!r}")
    facts = {
        "name": startup.name, "zone_id": zone_id, "pod_id": pod_id, "cluster_id": cluster.id,
        "hypervisor_type": startup.hypervisor_type, "hypervisor_version": startup.hypervisor_version,
        "private_ip": startup.private_ip, "private_mac": startup.private_mac,
        "host_tags": ",".join(startup.host_tags), "agent_version": startup.agent_version,
        "mgmt_server_id": msid,
    }
    row = conn.execute(sa.select(hosts.c.id, hosts.c.status).where(hosts.c.guid == startup.guid)).first()
    if row is None:
        host_id = conn.execute(hosts.insert().values(
            uuid=str(uuid.uuid4()), guid=startup.guid, type="Routing", status=Status.CREATING,
            resource_state="Enabled", update_count=0, created=now(), **facts)).inserted_primary_key[0]
    else:
        host_id = row.id
        conn.execute(hosts.update().where(hosts.c.id == host_id).values(**facts))
    if transition(conn, host_id, Event.AGENT_CONNECTED) is None:
        return Registration(reject_reason="this host was removed")
    totals = {"cpu_cores": startup.cpus, "cpu_mhz_total": startup.cpus * startup.cpu_speed_mhz,
              "memory_total": startup.memory_bytes}
    updated = conn.execute(host_capacity.update().where(host_capacity.c.host_id == host_id).values(**totals))
    if updated.rowcount == 0:
        conn.execute(host_capacity.insert().values(host_id=host_id, **totals))
    if storage is not None:
        _local_pool(conn, host_id, zone_id, pod_id, cluster.id, storage)
    return Registration(host_id=host_id, zone_id=zone_id, cluster_id=cluster.id)


def _local_pool(conn: Connection, host_id: int, zone_id: int, pod_id: int, cluster_id: int,
                storage: StartupStorageCommand) -> None:
    values = {"name": storage.name or f"local-{storage.pool_uuid[:8]}", "zone_id": zone_id, "pod_id": pod_id,
              "cluster_id": cluster_id, "host_id": host_id, "scope": "HOST", "pool_type": storage.pool_type,
              "path": storage.path, "capacity_bytes": storage.capacity_bytes, "status": "Up"}
    same_pool = storage_pools.c.uuid == storage.pool_uuid
    if conn.execute(storage_pools.update().where(same_pool).values(**values)).rowcount == 0:
        conn.execute(storage_pools.insert().values(uuid=storage.pool_uuid, created=now(), **values))


def transition(conn: Connection, host_id: int, event: Event, *, msid: int | None = None) -> Status | None:
    """Apply ``event`` to the host; the new status, or None when it does not apply or lost a race."""
    row = conn.execute(sa.select(hosts.c.status, hosts.c.update_count).where(hosts.c.id == host_id)).first()
    if row is None:
        return None
    new = next_status(Status(row.status), event)
    if new is None:
        return None
    values: dict[str, object] = {"status": new, "update_count": row.update_count + 1, "status_changed": now()}
    if event in (Event.READY, Event.PING):
        values["last_ping"] = now()
    if msid is not None:
        values["mgmt_server_id"] = msid
    changed = conn.execute(hosts.update().where(
        hosts.c.id == host_id, hosts.c.status == row.status, hosts.c.update_count == row.update_count,
    ).values(**values)).rowcount
    return new if changed == 1 else None


def hosts_owned_by(conn: Connection, msid: int, statuses: tuple[Status, ...]) -> list[int]:
    return list(conn.scalars(sa.select(hosts.c.id).where(hosts.c.mgmt_server_id == msid,
                                                         hosts.c.status.in_(statuses))))
