"""What each zone has and uses: memory and CPU (allocated over the overprovisioning factors), primary
storage used and allocated, guest addresses and CPU cores, as CloudStack's capacity types."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.schema import (
    clusters,
    configuration_scoped,
    host_capacity,
    hosts,
    ip_ranges,
    networks,
    nics,
    pods,
    storage_pools,
    zones,
)
from ..planner import pools

if TYPE_CHECKING:
    from ..db.database import Database

# CloudStack's capacity types
MEMORY, CPU, STORAGE, STORAGE_ALLOCATED, GUEST_IPS, CPU_CORES = 0, 1, 2, 3, 8, 19


@dataclass(frozen=True)
class ZoneCapacity:
    type: int  # one of the capacity types above
    zone_uuid: str
    zone_name: str
    used: int
    total: int
    pod_uuid: str | None = None  # a pod's or a cluster's figures (listCapacity podid, clusterid)
    pod_name: str | None = None
    cluster_uuid: str | None = None
    cluster_name: str | None = None

    @property
    def percent_used(self) -> float:
        return 100.0 * self.used / self.total if self.total else 0.0


def zone_figures(conn: Connection, cpu_factor: float, mem_factor: float, zone_uuid: str,
                 pod_uuid: str = "", cluster_uuid: str = "") -> list[ZoneCapacity]:
    """Each live zone's figures (or ``zone_uuid``'s), every capacity type, zone by zone; with
    ``pod_uuid`` or ``cluster_uuid``, that pod's or cluster's (its hosts and its own pools; guest
    addresses are the zone's alone)."""
    zone_where: list[sa.ColumnElement[bool]] = [zones.c.removed.is_(None)]
    if zone_uuid:
        zone_where.append(zones.c.uuid == zone_uuid)
    narrow: dict[str, Any] = {}
    if cluster_uuid:
        row = conn.execute(sa.select(clusters.c.id, clusters.c.uuid, clusters.c.name, clusters.c.zone_id,
                                     pods.c.uuid.label("pod_uuid"), pods.c.name.label("pod_name"))
                           .join(pods, pods.c.id == clusters.c.pod_id)
                           .where(clusters.c.uuid == cluster_uuid, clusters.c.removed.is_(None))).first()
        if row is None:
            return []
        zone_where.append(zones.c.id == row.zone_id)
        narrow = {"cluster_id": row.id, "pod_uuid": row.pod_uuid, "pod_name": row.pod_name,
                  "cluster_uuid": row.uuid, "cluster_name": row.name}
    elif pod_uuid:
        pod = conn.execute(sa.select(pods.c.id, pods.c.uuid, pods.c.name, pods.c.zone_id).where(
            pods.c.uuid == pod_uuid, pods.c.removed.is_(None))).first()
        if pod is None:
            return []
        zone_where.append(zones.c.id == pod.zone_id)
        narrow = {"pod_id": pod.id, "pod_uuid": pod.uuid, "pod_name": pod.name}
    host_scope = [hosts.c.cluster_id == narrow["cluster_id"]] if "cluster_id" in narrow else \
        [hosts.c.pod_id == narrow["pod_id"]] if "pod_id" in narrow else []
    pool_scope = [storage_pools.c.cluster_id == narrow["cluster_id"]] if "cluster_id" in narrow else \
        [storage_pools.c.pod_id == narrow["pod_id"]] if "pod_id" in narrow else []
    names = {k: v for k, v in narrow.items() if k.endswith(("_uuid", "_name"))}
    out: list[ZoneCapacity] = []
    for zone in conn.execute(sa.select(zones).where(*zone_where).order_by(zones.c.id)):
        hc = conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(host_capacity.c.memory_total), 0),
                sa.func.coalesce(
                    sa.func.sum(host_capacity.c.memory_used + host_capacity.c.memory_reserved), 0
                ),
                sa.func.coalesce(sa.func.sum(host_capacity.c.cpu_mhz_total), 0),
                sa.func.coalesce(
                    sa.func.sum(host_capacity.c.cpu_mhz_used + host_capacity.c.cpu_mhz_reserved), 0
                ),
                sa.func.coalesce(sa.func.sum(host_capacity.c.cpu_cores), 0),
                sa.func.coalesce(sa.func.sum(host_capacity.c.cores_used), 0),
            )
            .join(hosts, hosts.c.id == host_capacity.c.host_id)
            .where(hosts.c.zone_id == zone.id, hosts.c.removed.is_(None), *host_scope)
        ).one()
        pools = conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(storage_pools.c.capacity_bytes), 0),
                sa.func.coalesce(sa.func.sum(storage_pools.c.used_bytes), 0),
                sa.func.coalesce(sa.func.sum(storage_pools.c.reserved_bytes), 0),
            ).where(storage_pools.c.zone_id == zone.id, storage_pools.c.removed.is_(None), *pool_scope)
        ).one()
        ip_total = 0
        for start, end in conn.execute(
            sa.select(ip_ranges.c.start_ip, ip_ranges.c.end_ip)
            .join(networks, networks.c.id == ip_ranges.c.network_id)
            .where(networks.c.zone_id == zone.id, networks.c.removed.is_(None))
        ):
            ip_total += int(ipaddress.ip_address(end)) - int(ipaddress.ip_address(start)) + 1
        ips_used = (
            conn.scalar(
                sa.select(sa.func.count())
                .select_from(nics)
                .join(networks, networks.c.id == nics.c.network_id)
                .where(networks.c.zone_id == zone.id, nics.c.ip_address.is_not(None))
            )
            or 0
        )
        figures = [
            (MEMORY, int(hc[1]), int(float(hc[0]) * mem_factor)),  # (PostgreSQL's sums are Decimal)
            (CPU, int(hc[3]), int(float(hc[2]) * cpu_factor)),
            (STORAGE, int(pools[1]), int(pools[0])),
            (STORAGE_ALLOCATED, int(pools[1] + pools[2]), int(pools[0])),
            (GUEST_IPS, int(ips_used), ip_total),
            (CPU_CORES, int(hc[5]), int(hc[4])),
        ]
        if narrow:
            figures = [f for f in figures if f[0] != GUEST_IPS]
        out += [ZoneCapacity(kind, zone.uuid, zone.name, used, total, **names)
                for kind, used, total in figures]
    return out


class Capacity:
    def __init__(self, db: Database, values: Mapping[str, Any]) -> None:
        self.db = db
        self.cpu_factor = float(values.get("cpu.overprovisioning.factor", 1.0))
        self.mem_factor = float(values.get("mem.overprovisioning.factor", 1.0))
        self.storage_factor = float(values.get("storage.overprovisioning.factor", 2.0))

    def storage_overprovision(self, pool_type: str, scope: str, own: float | None = None) -> float:
        """The overprovisioning factor the planner applies to a pool of this type and scope (``own``:
        the pool's own storage.overprovisioning.factor, when it has one)."""
        return pools.overprovision(pool_type, scope, self.storage_factor if own is None else own)

    async def pool_factors(self, pool_uuids: list[str]) -> dict[str, float]:
        """The pools' own storage.overprovisioning.factor, for those that have one."""
        cs, sp = configuration_scoped, storage_pools

        def read(conn: Connection) -> dict[str, float]:
            rows = conn.execute(sa.select(sp.c.uuid, cs.c.value).join(sp, sp.c.id == cs.c.scope_id).where(
                cs.c.scope == "StoragePool", cs.c.name == "storage.overprovisioning.factor",
                sp.c.uuid.in_(pool_uuids)))
            return {uuid: float(value) for uuid, value in rows}

        return await self.db.read(read) if pool_uuids else {}

    async def of_zones(self, zone_uuid: str = "", *, pod_uuid: str = "",
                       cluster_uuid: str = "") -> list[ZoneCapacity]:
        """Every capacity type of every live zone (or of ``zone_uuid``'s), zone by zone; or of one pod
        or cluster."""
        return await self.db.read(zone_figures, self.cpu_factor, self.mem_factor, zone_uuid, pod_uuid,
                                  cluster_uuid)
