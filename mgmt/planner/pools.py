"""Storage pools for the chosen host: host-local, then cluster-scope, then zone-scope pools; within a
scope, most free first. A pool must be Up, not avoided, carry the disk offering's tags and have room
for the volumes (plus the template's copy when the template is not on it yet) within
``storage.overprovisioning.factor`` (thin pools) and ``pool.storage.capacity.disablethreshold``.

Pools are few next to hosts (a handful per cluster and zone, one per host with local storage), so this
stays in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

THIN = frozenset({"NetworkFilesystem", "RBD", "SharedMountPoint", "Filesystem", "CLVM_thin"})


@dataclass
class Pool:
    pool_id: int
    zone_id: int
    pod_id: int
    cluster_id: int
    host_id: int  # 0 unless host-local
    scope: str  # HOST, CLUSTER, ZONE
    pool_type: str
    capacity: int
    allocated: int = 0  # used + reserved bytes
    tags: frozenset[str] = frozenset()
    up: bool = True
    templates: set[int] = field(default_factory=set)  # templates with a Ready copy here
    factor: float | None = None  # its own storage.overprovisioning.factor (updateConfiguration storageid)
    threshold: float | None = None  # its zone's pool.storage.capacity.disablethreshold (... zoneid)


@dataclass
class PoolIndex:
    pools: dict[int, Pool] = field(default_factory=dict)
    by_host: dict[int, list[int]] = field(default_factory=dict)
    by_cluster: dict[int, list[int]] = field(default_factory=dict)
    by_zone: dict[int, list[int]] = field(default_factory=dict)

    def set_pool(self, pool: Pool) -> None:
        old = self.pools.get(pool.pool_id)
        if old is not None:
            for group in (self.by_host, self.by_cluster, self.by_zone):
                for ids in group.values():
                    if pool.pool_id in ids:
                        ids.remove(pool.pool_id)
        self.pools[pool.pool_id] = pool
        if pool.scope == "HOST":
            self.by_host.setdefault(pool.host_id, []).append(pool.pool_id)
        elif pool.scope == "CLUSTER":
            self.by_cluster.setdefault(pool.cluster_id, []).append(pool.pool_id)
        else:
            self.by_zone.setdefault(pool.zone_id, []).append(pool.pool_id)

    def allocate(self, pool_id: int, nbytes: int) -> None:
        pool = self.pools.get(pool_id)
        if pool is not None:
            pool.allocated += nbytes


@dataclass(frozen=True)
class PoolRequest:
    disk_bytes: int
    template_id: int
    template_bytes: int
    tags: frozenset[str]
    local: bool
    avoid: frozenset[int]
    factor: float  # storage.overprovisioning.factor
    threshold: float  # pool.storage.capacity.disablethreshold
    pool_id: int = 0  # the deployment plan names a pool


def needed(pool: Pool, req: PoolRequest) -> int:
    """Bytes the VM's volumes take on ``pool``: the disks, plus the template's copy if missing."""
    copy = req.template_bytes if req.template_id and req.template_id not in pool.templates else 0
    return req.disk_bytes + copy


def overprovision(pool_type: str, scope: str, factor: float) -> float:
    """The factor a pool's capacity is multiplied by: ``storage.overprovisioning.factor`` for thin
    shared pools, 1 for the others and for a host's own."""
    return factor if pool_type in THIN and scope != "HOST" else 1.0


def limit(pool: Pool, req: PoolRequest) -> float:
    factor = pool.factor if pool.factor is not None else req.factor
    return pool.capacity * overprovision(pool.pool_type, pool.scope, factor)


def why_not(pool: Pool, req: PoolRequest) -> str:
    """Empty when the pool can take the volumes, else the reason."""
    if req.pool_id and pool.pool_id != req.pool_id:
        return "not the pool the deployment plan names"
    if not pool.up:
        return "not Up"
    if pool.pool_id in req.avoid:
        return "in the avoid set of an earlier attempt"
    if not req.tags <= pool.tags:
        return f"lacks pool tags {', '.join(sorted(req.tags - pool.tags))}"
    need, cap = needed(pool, req), limit(pool, req)
    if cap <= 0 or pool.allocated + need > cap:
        return f"{pool.allocated + need} bytes would exceed its {cap:.0f}"
    threshold = pool.threshold if pool.threshold is not None else req.threshold
    if (pool.allocated + need) / cap > threshold:
        return (f"would be {(pool.allocated + need) / cap:.0%} allocated, past "
                f"pool.storage.capacity.disablethreshold {threshold:g}")
    return ""


def candidates(pools: PoolIndex, host_id: int, cluster_id: int, zone_id: int, req: PoolRequest
               ) -> list[Pool]:
    """The pools that could hold the VM's volumes for a host, best first, and nothing else."""
    scopes = [pools.by_host.get(host_id, [])] if req.local else \
        [pools.by_cluster.get(cluster_id, []), pools.by_zone.get(zone_id, [])]
    chosen: list[Pool] = []
    for ids in scopes:
        fitting = [pools.pools[p] for p in ids if not why_not(pools.pools[p], req)]
        fitting.sort(key=lambda p: (-(limit(p, req) - p.allocated), p.pool_id))
        chosen.extend(fitting)
    return chosen


def verdicts(pools: PoolIndex, host_id: int, cluster_id: int, zone_id: int, req: PoolRequest
             ) -> list[tuple[int, str]]:
    """Every pool in reach of the host with why it cannot be used ("" when it can)."""
    ids = pools.by_host.get(host_id, []) if req.local else \
        pools.by_cluster.get(cluster_id, []) + pools.by_zone.get(zone_id, [])
    return [(p, why_not(pools.pools[p], req)) for p in ids]
