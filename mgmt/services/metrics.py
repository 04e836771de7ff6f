"""The cloud's figures, as CloudStack's metrics commands and the Prometheus endpoint show them: the VMs'
latest statistics (``vm_stats``, which the collector keeps), what hosts, clusters and zones have, give out
and use, the pools' space, counts of the whole infrastructure, the management servers and the database.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.schema import (
    alerts,
    clusters,
    host_capacity,
    hosts,
    management_servers,
    pods,
    service_offerings,
    storage_pools,
    vm_stats,
    vms,
    zones,
)

if TYPE_CHECKING:
    from ..db.database import Database

RUNNING = "Running"


DEPLOY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass
class Latency:
    """A histogram of durations (seconds): counts per upper bound, their sum and count."""

    bounds: tuple[float, ...] = DEPLOY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(DEPLOY_BUCKETS) + 1))  # the last: +Inf
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        i = next((i for i, bound in enumerate(self.bounds) if seconds <= bound), len(self.bounds))
        self.counts[i] += 1
        self.total += seconds
        self.count += 1


@dataclass
class Usage:
    """What the running VMs of a host (or of a cluster's, a zone's hosts) use, from their statistics."""

    cpu_mhz: float = 0.0  # CPU in use, MHz
    memory_bytes: int = 0  # memory in use inside the guests
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0
    running: int = 0  # VMs running
    total: int = 0  # VMs placed there (running or not)

    def add(self, other: Usage) -> None:
        self.cpu_mhz += other.cpu_mhz
        self.memory_bytes += other.memory_bytes
        self.net_rx_bytes += other.net_rx_bytes
        self.net_tx_bytes += other.net_tx_bytes
        self.running += other.running
        self.total += other.total


@dataclass
class Capacity:
    """A host's, cluster's or zone's CPU and memory: what it has, what VMs hold, what they use."""

    cpu_mhz: int = 0
    cpu_allocated_mhz: int = 0
    memory_bytes: int = 0
    memory_allocated_bytes: int = 0
    hosts: int = 0
    hosts_up: int = 0
    usage: Usage = field(default_factory=Usage)


def _usage_by_host(conn: Connection, host_ids: Iterable[int] | None = None) -> dict[int, Usage]:
    speed = sa.func.coalesce(vms.c.cpu_speed_mhz, service_offerings.c.cpu_speed_mhz)
    query = (sa.select(vms.c.host_id,
                       sa.func.sum(vm_stats.c.cpu_utilization / 100.0 * vm_stats.c.vcpus * speed),
                       sa.func.sum((vm_stats.c.memory_kbs - vm_stats.c.memory_free_kbs) * 1024),
                       sa.func.sum(vm_stats.c.net_rx_bytes), sa.func.sum(vm_stats.c.net_tx_bytes),
                       sa.func.count())
             .join(vm_stats, vm_stats.c.vm_id == vms.c.id)
             .join(service_offerings, service_offerings.c.id == vms.c.service_offering_id)
             .where(vms.c.state == RUNNING, vms.c.removed.is_(None), vms.c.host_id.is_not(None))
             .group_by(vms.c.host_id))
    placed = (sa.select(vms.c.host_id, sa.func.count(), sa.func.sum(sa.case((vms.c.state == RUNNING, 1),
                                                                             else_=0)))
              .where(vms.c.removed.is_(None), vms.c.host_id.is_not(None)).group_by(vms.c.host_id))
    if host_ids is not None:
        ids = list(host_ids)
        query = query.where(vms.c.host_id.in_(ids))
        placed = placed.where(vms.c.host_id.in_(ids))
    out: dict[int, Usage] = {}
    for host_id, cpu, memory, rx, tx, _count in conn.execute(query):
        out[host_id] = Usage(float(cpu or 0), max(0, int(memory or 0)), int(rx or 0), int(tx or 0))
    for host_id, total, running in conn.execute(placed):
        usage = out.setdefault(host_id, Usage())
        usage.total, usage.running = int(total), int(running or 0)
    return out


def _host_usage(conn: Connection, host_uuids: list[str]) -> dict[str, Usage]:
    ids = dict(conn.execute(sa.select(hosts.c.id, hosts.c.uuid).where(hosts.c.uuid.in_(host_uuids))).all())
    return {ids[i]: u for i, u in _usage_by_host(conn, list(ids)).items()}


def _capacities(conn: Connection, level: str) -> dict[str, Capacity]:
    """Each cluster's or zone's (``level``) capacity, summed over its hosts (not removed), by its uuid."""
    parent = clusters if level == "cluster" else zones
    column = hosts.c.cluster_id if level == "cluster" else hosts.c.zone_id
    usage = _usage_by_host(conn)
    out: dict[str, Capacity] = {}
    rows = conn.execute(sa.select(parent.c.uuid, hosts.c.id, hosts.c.status, host_capacity)
                        .join(host_capacity, host_capacity.c.host_id == hosts.c.id)
                        .join(parent, parent.c.id == column)
                        .where(hosts.c.removed.is_(None)))
    for row in rows:
        cap = out.setdefault(row[0], Capacity())
        cap.cpu_mhz += row.cpu_mhz_total
        cap.cpu_allocated_mhz += row.cpu_mhz_used + row.cpu_mhz_reserved
        cap.memory_bytes += row.memory_total
        cap.memory_allocated_bytes += row.memory_used + row.memory_reserved
        cap.hosts += 1
        cap.hosts_up += row.status == "Up"
        if row.id in usage:
            cap.usage.add(usage[row.id])
    return out


def _infrastructure(conn: Connection) -> dict[str, int]:
    def count(table: sa.Table, *where: Any) -> int:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(table).where(
            table.c.removed.is_(None), *where)) or 0)

    return {
        "zones": count(zones), "pods": count(pods), "clusters": count(clusters),
        "hosts": count(hosts), "storagepools": count(storage_pools),
        "managementservers": int(conn.scalar(sa.select(sa.func.count()).select_from(management_servers).where(
            management_servers.c.state == "Up")) or 0),
        "alerts": int(conn.scalar(sa.select(sa.func.count()).select_from(alerts).where(
            alerts.c.archived.is_(False))) or 0),
    }


def _database(conn: Connection) -> dict[str, Any]:
    if conn.dialect.name == "postgresql":
        row = conn.execute(sa.text(
            "SELECT version(), (SELECT sum(numbackends) FROM pg_stat_database), "
            "(SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database), "
            "extract(epoch FROM now() - pg_postmaster_start_time()), inet_server_addr()")).one()
        return {"hostname": str(row[4] or "localhost"), "version": str(row[0]).split(" on ")[0],
                "connections": int(row[1] or 0), "queries": int(row[2] or 0), "uptime": int(row[3] or 0),
                "dbislocal": row[4] is None or str(row[4]).startswith("127.")}
    return {"hostname": "localhost", "version": f"SQLite {sqlite3.sqlite_version}", "connections": 1,
            "queries": 0, "uptime": 0, "dbislocal": True}


def _vm_figures(conn: Connection) -> list[Any]:
    """Every running VM's latest statistics, with its names (for the Prometheus endpoint)."""
    return list(conn.execute(
        sa.select(vms.c.uuid, vms.c.instance_name, vms.c.display_name, vms.c.account_id, vm_stats)
        .join(vm_stats, vm_stats.c.vm_id == vms.c.id)
        .where(vms.c.state == RUNNING, vms.c.removed.is_(None))))


def _counts(conn: Connection) -> dict[str, dict[str, int]]:
    def grouped(column: Any, table: sa.Table) -> dict[str, int]:
        return {str(k): int(n) for k, n in conn.execute(
            sa.select(column, sa.func.count()).select_from(table).where(table.c.removed.is_(None))
            .group_by(column))}

    return {"vms": grouped(vms.c.state, vms), "hosts": grouped(hosts.c.status, hosts)}


def _stats_of(conn: Connection, vm_ids: list[int]) -> dict[int, Any]:
    if not vm_ids:
        return {}
    return {r.vm_id: r for r in conn.execute(sa.select(vm_stats).where(vm_stats.c.vm_id.in_(vm_ids)))}


def process_figures() -> dict[str, Any]:
    """This management server's process and machine, as listManagementServersMetrics shows them."""
    load1 = os.getloadavg()[0]
    figures: dict[str, Any] = {"availableprocessors": os.cpu_count() or 1,
                               "systemloadaverage": round(load1, 2),
                               "osdistribution": platform.platform(), "kernelversion": platform.release(),
                               "pythonversion": platform.python_version()}
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[1:2]}
        figures["systemmemorytotal"] = info.get("MemTotal", 0)
        figures["systemmemoryfree"] = info.get("MemAvailable", info.get("MemFree", 0))
        figures["systemmemoryused"] = figures["systemmemorytotal"] - figures["systemmemoryfree"]
        with open("/proc/self/statm") as f:
            figures["heapmemoryused"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        with open("/proc/uptime") as f:
            figures["lastboottime"] = datetime.fromtimestamp(time.time() - float(f.read().split()[0]), UTC)
    except (OSError, ValueError, IndexError):
        pass
    return figures


class Metrics:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def vm_stats(self, vm_ids: list[int]) -> dict[int, Any]:
        """The latest statistics of these VMs (those that have any)."""
        return await self.db.read(_stats_of, vm_ids)

    async def host_usage(self, host_uuids: list[str]) -> dict[str, Usage]:
        """What the running VMs of these hosts use, by host uuid."""
        return await self.db.read(_host_usage, host_uuids)

    async def capacities(self, level: str) -> dict[str, Capacity]:
        """Each cluster's or zone's capacity and use, by uuid."""
        return await self.db.read(_capacities, level)

    async def infrastructure(self) -> dict[str, int]:
        return await self.db.read(_infrastructure)

    async def database(self) -> dict[str, Any]:
        return await self.db.read(_database)

    async def vm_figures(self) -> list[Any]:
        return await self.db.read(_vm_figures)

    async def counts(self) -> dict[str, dict[str, int]]:
        return await self.db.read(_counts)

    @staticmethod
    def process() -> dict[str, Any]:
        return process_figures()

    @staticmethod
    def clock() -> datetime:
        return datetime.now(UTC)
