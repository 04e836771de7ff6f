"""Building the capacity and pool indexes from the database (at start-up, and to resynchronize)."""

from __future__ import annotations

import contextlib

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.schema import (
    clusters,
    configuration_scoped,
    host_capacity,
    hosts,
    pods,
    storage_pools,
    template_copies,
    zones,
)
from .index import CapacityIndex, HostFacts
from .pools import Pool, PoolIndex


def load_index(conn: Connection, cpu_factor: float, mem_factor: float) -> CapacityIndex:
    """Every live host with its capacity, in cluster then host order; factors are the cloud-wide
    cpu.overprovisioning.factor and mem.overprovisioning.factor (a cluster's own override wins)."""
    ix = CapacityIndex()
    for facts, cpu, mem in host_facts(conn, cpu_factor, mem_factor):
        with contextlib.suppress(ValueError):  # a host the index cannot hold (Placement logs why)
            ix.set_host(facts, cpu_factor=cpu, mem_factor=mem)
    return ix


def host_facts(conn: Connection, cpu_factor: float, mem_factor: float, host_ids: list[int] | None = None
               ) -> list[tuple[HostFacts, float, float]]:
    """Live hosts (or those of ``host_ids``) as index facts with their cluster's CPU and memory factors."""
    hc, c, p, z = host_capacity, clusters, pods, zones
    rows = conn.execute(
        sa.select(hosts.c.id, hosts.c.zone_id, hosts.c.pod_id, hosts.c.cluster_id, hosts.c.hypervisor_type,
                  hosts.c.host_tags, hosts.c.status, hosts.c.resource_state, hc.c.cpu_cores,
                  hc.c.cpu_mhz_total, hc.c.cpu_mhz_used, hc.c.cpu_mhz_reserved, hc.c.memory_total,
                  hc.c.memory_used, hc.c.memory_reserved, c.c.cpu_overcommit, c.c.mem_overcommit,
                  c.c.allocation_state.label("cluster_state"), p.c.allocation_state.label("pod_state"),
                  z.c.allocation_state.label("zone_state"))
        .join(hc, hc.c.host_id == hosts.c.id).join(c, c.c.id == hosts.c.cluster_id)
        .join(p, p.c.id == hosts.c.pod_id).join(z, z.c.id == hosts.c.zone_id)
        .where(hosts.c.removed.is_(None), hosts.c.status != "Removed",
               hosts.c.id.in_(host_ids) if host_ids is not None else sa.true())
        .order_by(hosts.c.cluster_id, hosts.c.id))
    return [
        (HostFacts(
            host_id=r.id, zone_id=r.zone_id, pod_id=r.pod_id, cluster_id=r.cluster_id,
            hypervisor_type=r.hypervisor_type, tags=frozenset(t for t in r.host_tags.split(",") if t),
            cores=r.cpu_cores, speed_mhz=r.cpu_mhz_total // max(r.cpu_cores, 1), cpu_total=r.cpu_mhz_total,
            mem_total=r.memory_total, cpu_alloc=r.cpu_mhz_used + r.cpu_mhz_reserved,
            mem_alloc=r.memory_used + r.memory_reserved, up=r.status == "Up",
            enabled=r.resource_state == "Enabled",
            cluster_enabled=r.cluster_state == r.pod_state == r.zone_state == "Enabled"),
         r.cpu_overcommit or cpu_factor, r.mem_overcommit or mem_factor) for r in rows]


def load_pools(conn: Connection) -> PoolIndex:
    copies: dict[int, set[int]] = {}
    tc = template_copies
    for pool_id, template_id in conn.execute(sa.select(tc.c.pool_id, tc.c.template_id)
                                             .where(tc.c.state == "Ready")):
        copies.setdefault(pool_id, set()).add(template_id)
    index = PoolIndex()
    sp, cs = storage_pools, configuration_scoped
    scoped: dict[tuple[str, int], float] = {}  # (scope, id) -> a pool's factor, a zone's threshold
    for scope, scope_id, value in conn.execute(sa.select(cs.c.scope, cs.c.scope_id, cs.c.value).where(sa.or_(
            sa.and_(cs.c.scope == "StoragePool", cs.c.name == "storage.overprovisioning.factor"),
            sa.and_(cs.c.scope == "Zone", cs.c.name == "pool.storage.capacity.disablethreshold")))):
        with contextlib.suppress(ValueError):  # (checked when set)
            scoped[(scope, scope_id)] = float(value)
    for r in conn.execute(sa.select(sp).where(sp.c.removed.is_(None)).order_by(sp.c.id)):
        index.set_pool(Pool(r.id, r.zone_id, r.pod_id or 0, r.cluster_id or 0, r.host_id or 0, r.scope,
                            r.pool_type, r.capacity_bytes, r.used_bytes + r.reserved_bytes,
                            frozenset(t for t in r.tags.split(",") if t), r.status == "Up",
                            copies.get(r.id, set()), scoped.get(("StoragePool", r.id)),
                            scoped.get(("Zone", r.zone_id))))
    return index
