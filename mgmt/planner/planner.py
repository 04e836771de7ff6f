"""The deployment planner: a host from the capacity index through the kernel, then a pool for it.

``Planner.plan(profile, plan, avoid)`` returns a ``Destination`` or raises ``NoDestination`` with, per
filter, how many hosts it dropped. ``Planner.explain`` answers the same question with every host's
verdict: the filter that dropped it and why, or its score and the score's parts. When the chosen host
has no pool that fits, its cluster (its own host, for local storage) joins the avoid set and the
planner chooses again. Choosing does not reserve: the caller reserves through ``capacity.reserve``,
which the database arbitrates, and plans again with the host avoided when it lost a race.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import filters as filters_pkg
from . import pools as pools_mod
from .algorithms import ALGORITHMS
from .filters import BY_CODE, FILTERS, affinity, avoid
from .index import CapacityIndex
from .kernel import Kernel, get_kernel
from .model import Avoid, DeploymentPlan, Destination, Explanation, HostVerdict, NoDestination, VmProfile
from .pools import PoolIndex, PoolRequest
from .query import WEIGHERS, Query
from .weighers import BY_NAME as WEIGHERS_BY_NAME
from .weighers import WEIGHER_LIST


@dataclass
class PlannerSettings:
    """The planner's settings, under CloudStack's names in the configuration table."""

    algorithm: str = "random"  # vm.allocation.algorithm
    cluster_order: str = "CPU"  # host.capacityType.to.order.clusters: CPU, RAM, COMBINED
    cpu_to_memory_weight: float = 0.5  # host.capacityType.to.order.clusters.cputomemoryweight
    cpu_threshold: float = 0.85  # cluster.cpu.allocated.capacity.disablethreshold
    mem_threshold: float = 0.85  # cluster.memory.allocated.capacity.disablethreshold
    storage_factor: float = 2.0  # storage.overprovisioning.factor
    pool_threshold: float = 0.85  # pool.storage.capacity.disablethreshold
    filters: list[str] | None = None  # planner.filters; None: all
    weights: array[float] = field(init=False)
    filter_mask: int = field(init=False)
    _other_weights: dict[str, array[float]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"vm.allocation.algorithm {self.algorithm!r} is not one of "
                             f"{', '.join(ALGORITHMS)}")
        if self.cluster_order.upper() not in ("CPU", "RAM", "COMBINED"):
            raise ValueError("host.capacityType.to.order.clusters must be CPU, RAM or COMBINED")
        self.weights = array("d", [0.0] * WEIGHERS)
        for name, weight in ALGORITHMS[self.algorithm].items():
            self.weights[WEIGHERS_BY_NAME[name].code] = weight
        self.filter_mask = filters_pkg.mask(self.filters)

    @property
    def cluster_cpu_weight(self) -> float:
        order = self.cluster_order.upper()
        return 1.0 if order == "CPU" else 0.0 if order == "RAM" else self.cpu_to_memory_weight

    @property
    def needs_account_counts(self) -> bool:
        return self.needs_counts("")

    def resolve(self, algorithm: str) -> str:
        """The algorithm a VM's own (its offering's planner) names: "" is the cloud's; "userconcentratedpod"
        takes the cloud's first-fit or random flavour."""
        if not algorithm:
            return self.algorithm
        if algorithm == "userconcentratedpod":
            flavour = "firstfit" if "firstfit" in self.algorithm else "random"
            return f"userconcentratedpod_{flavour}"
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
        return algorithm

    def weights_for(self, algorithm: str) -> array[float]:
        """The weigher weights of ``algorithm`` (see ``resolve``)."""
        name = self.resolve(algorithm)
        if name == self.algorithm:
            return self.weights
        weights = self._other_weights.get(name)
        if weights is None:
            weights = self._other_weights[name] = array("d", [0.0] * WEIGHERS)
            for weigher, weight in ALGORITHMS[name].items():
                weights[WEIGHERS_BY_NAME[weigher].code] = weight
        return weights

    def needs_counts(self, algorithm: str) -> bool:
        """Whether placing with ``algorithm`` needs the account's VMs per host."""
        weights = self.weights_for(algorithm)
        return any(weights[WEIGHERS_BY_NAME[n].code] for n in ("account_dispersion", "pod_concentration"))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> PlannerSettings:
        names = str(values.get("planner.filters", "") or "")
        return cls(
            algorithm=str(values.get("vm.allocation.algorithm", "random")),
            cluster_order=str(values.get("host.capacityType.to.order.clusters", "CPU")),
            cpu_to_memory_weight=float(
                values.get("host.capacityType.to.order.clusters.cputomemoryweight", 0.5)),
            cpu_threshold=float(values.get("cluster.cpu.allocated.capacity.disablethreshold", 0.85)),
            mem_threshold=float(values.get("cluster.memory.allocated.capacity.disablethreshold", 0.85)),
            storage_factor=float(values.get("storage.overprovisioning.factor", 2.0)),
            pool_threshold=float(values.get("pool.storage.capacity.disablethreshold", 0.85)),
            filters=[n.strip() for n in names.split(",") if n.strip()] or None)


class Planner:
    def __init__(self, index: CapacityIndex, pools: PoolIndex | None = None,
                 settings: PlannerSettings | None = None, *, kernel: Kernel | None = None,
                 rng: random.Random | None = None) -> None:
        self.index = index
        self.pools = pools if pools is not None else PoolIndex()
        self.settings = settings or PlannerSettings()
        self.kernel = kernel or get_kernel()
        self.rng = rng or random.Random()
        self._bound: Any = None
        self._bound_to: tuple[CapacityIndex, int] | None = None  # the index (and its arrays) bound
        self._reasons = bytearray()
        self._scores: array[float] = array("d")

    # --- the host ---------------------------------------------------------------------------------

    def query(self, profile: VmProfile, plan: DeploymentPlan, avoided: Avoid,
              account_vms: Mapping[int, int] | None = None) -> Query:
        """The kernel's request for this VM, scope and avoid set."""
        ix, s = self.index, self.settings
        tags = ix.tag_mask(profile.host_tags)
        hypervisor = ix.hypervisors.get(profile.hypervisor_type) if profile.hypervisor_type else -1
        if hypervisor is None:  # a hypervisor no host runs: a code no host has
            hypervisor = len(ix.hypervisor_names)
        q = Query(zone_id=plan.zone_id, pod_id=plan.pod_id, cluster_id=plan.cluster_id, host_id=plan.host_id,
                  hypervisor=hypervisor, tags=tags if tags is not None else 0,
                  cpus=profile.cpus, speed=profile.cpu_speed_mhz, cpu_mhz=profile.cpu_mhz,
                  memory=profile.memory_bytes, cpu_threshold=s.cpu_threshold, mem_threshold=s.mem_threshold,
                  filters=s.filter_mask, weights=s.weights_for(profile.algorithm),
                  cluster_cpu_weight=s.cluster_cpu_weight,
                  seed=self.rng.getrandbits(64), blocked=self._blocked(profile, avoided))
        if tags is None:  # a tag no host carries: all 64 bits, which no host has unless 64 tags exist
            q.tags = (1 << 64) - 1
        if s.needs_counts(profile.algorithm) and account_vms:
            q.account_vms = array("d", bytes(8 * ix.n))
            q.pod_vms = array("d", bytes(8 * len(ix.pod_ids)))
            for host_id, count in account_vms.items():
                i = ix.position.get(host_id)
                if i is not None:
                    q.account_vms[i] += count
                    q.pod_vms[ix.pod_ix[i]] += count
        return q

    def _blocked(self, profile: VmProfile, avoided: Avoid) -> bytearray | None:
        ix, mask = self.index, self.settings.filter_mask
        use_affinity = mask & (1 << affinity.CODE) and (profile.affinity_hosts or profile.anti_affinity_hosts)
        use_avoid = mask & (1 << avoid.CODE) and (avoided.hosts or avoided.clusters or avoided.pods
                                                   or avoided.zones)
        if not (use_affinity or use_avoid):
            return None
        if use_affinity and profile.affinity_hosts:
            blocked = bytearray([affinity.CODE]) * ix.n
            for host_id in profile.affinity_hosts:
                if (i := ix.position.get(host_id)) is not None:
                    blocked[i] = 0
        else:
            blocked = bytearray(ix.n)
        if use_affinity:
            for host_id in profile.anti_affinity_hosts:
                if (i := ix.position.get(host_id)) is not None:
                    blocked[i] = affinity.CODE
        if use_avoid:  # after affinity: avoid comes first in the filter order, so its reason wins
            positions = [ix.position[h] for h in avoided.hosts if h in ix.position]
            for cluster_id, hosts in ix.cluster_hosts.items():
                if (cluster_id in avoided.clusters or ix.cluster_pod.get(cluster_id) in avoided.pods
                        or ix.cluster_zone.get(cluster_id) in avoided.zones):
                    positions.extend(hosts)
            for i in positions:
                blocked[i] = avoid.CODE
        return blocked

    def choose_host(self, q: Query, counts: array[int] | None = None) -> int:
        """Run the kernel; the best host's position or -1. ``counts`` gets the hosts each filter dropped."""
        ix = self.index
        bound = self._bound_to
        # The binding follows the index itself and its arrays: a reload swaps in another index whose
        # generation counter may well equal the old one's (issue 15's stale planner).
        if bound is None or bound[0] is not ix or bound[1] != ix.generation:
            self._bound, self._bound_to = self.kernel.bind(ix), (ix, ix.generation)
            self._reasons = bytearray(ix.host_capacity)
            self._scores = array("d", bytes(8 * ix.host_capacity))
        return self.kernel.evaluate(self._bound, ix.n, q, self._reasons, self._scores,
                                    counts if counts is not None else array("q", bytes(8 * 16)))

    # --- host and pool ----------------------------------------------------------------------------

    def _pool_request(self, profile: VmProfile, plan: DeploymentPlan, avoided: Avoid) -> PoolRequest:
        s = self.settings
        return PoolRequest(disk_bytes=profile.disk_bytes, template_id=profile.template_id,
                           template_bytes=profile.template_bytes, tags=profile.pool_tags,
                           local=profile.local_storage, avoid=frozenset(avoided.pools),
                           factor=s.storage_factor, threshold=s.pool_threshold, pool_id=plan.pool_id)

    def plan(self, profile: VmProfile, plan: DeploymentPlan, avoided: Avoid | None = None,
             account_vms: Mapping[int, int] | None = None) -> Destination:
        """The best host and pool for the VM, or NoDestination with each filter's count."""
        tried = (avoided or Avoid()).copy()
        counts = array("q", bytes(8 * 16))
        while True:
            q = self.query(profile, plan, tried, account_vms)
            for k in range(len(counts)):
                counts[k] = 0
            i = self.choose_host(q, counts)
            if i < 0:
                removed = {f.name: counts[f.code] for f in FILTERS}
                raise NoDestination(f"no host can take the VM ({profile.cpus} vCPU at "
                                    f"{profile.cpu_speed_mhz} MHz, {profile.memory_bytes // 2**20} MiB)",
                                    removed)
            ix = self.index
            host_id, cluster_id = ix.host_id[i], ix.cluster_id[i]
            if not profile.disk_bytes and not profile.template_bytes and not profile.local_storage:
                pool_id = 0  # nothing to store (a VM whose volumes exist already)
            else:
                fitting = pools_mod.candidates(self.pools, host_id, cluster_id, ix.zone_id[i],
                                               self._pool_request(profile, plan, tried))
                if not fitting:
                    # No pool for this host: its cluster's pools (or, local storage, its own) are out.
                    (tried.hosts if profile.local_storage else tried.clusters).add(
                        host_id if profile.local_storage else cluster_id)
                    continue
                pool_id = fitting[0].pool_id
            return Destination(ix.zone_id[i], ix.pod_id[i], cluster_id, host_id, pool_id)

    # --- explanation -----------------------------------------------------------------------------

    def explain(self, profile: VmProfile, plan: DeploymentPlan, avoided: Avoid | None = None,
                account_vms: Mapping[int, int] | None = None) -> Explanation:
        """Every host's verdict for this request, the destination ``plan`` would give, the pools' verdicts."""
        tried = avoided or Avoid()
        try:
            destination: Destination | None = self.plan(profile, plan, tried, account_vms)
        except NoDestination:
            destination = None
        q = self.query(profile, plan, tried, account_vms)
        counts = array("q", bytes(8 * 16))
        self.choose_host(q, counts)
        ix, reasons = self.index, self._reasons
        candidates = [i for i in range(ix.n) if reasons[i] == 0]
        weighers = [(w, q.weights[w.code]) for w in WEIGHER_LIST if q.weights and q.weights[w.code]]
        raws = {w.name: [w.raw(ix, i, q) for i in candidates] for w, _ in weighers}
        verdicts = []
        for i in range(ix.n):
            code = reasons[i]
            if code:
                f = BY_CODE[code]
                verdicts.append(HostVerdict(ix.host_id[i], f.name, f.reason(ix, i, q)))
        for j, i in enumerate(candidates):
            parts = []
            for w, weight in weighers:
                values = raws[w.name]
                lo, hi = min(values), max(values)
                parts.append((w.name, weight * ((values[j] - lo) / (hi - lo)) if hi > lo else 0.0))
            verdicts.append(HostVerdict(ix.host_id[i], score=self._scores[i], parts=tuple(parts)))
        pools: tuple[tuple[int, str], ...] = ()
        if destination is not None:
            i = ix.position[destination.host_id]
            pools = tuple((p, why or ("chosen" if p == destination.pool_id else "fits"))
                          for p, why in pools_mod.verdicts(self.pools, destination.host_id,
                                                           destination.cluster_id, ix.zone_id[i],
                                                           self._pool_request(profile, plan, tried)))
        return Explanation(destination, self.settings.algorithm,
                           {f.name: counts[f.code] for f in FILTERS}, tuple(verdicts), pools)
