"""The capacity index: every host's placement facts as flat arrays (struct of arrays), kept up to date
incrementally, which the kernel reads without making a Python object per host.

Per host (position ``i``): ids of host, zone, pod and cluster; the cluster's and pod's position; status
flags; hypervisor code; host-tag bits; cores and cpu speed; CPU MHz and memory, total and allocated
(used + reserved). Per cluster (position ``c``): totals and allocated sums of its hosts, and its CPU and
memory over-commit factors. Arrays have spare room; adding past it makes new, larger arrays (the kernel
binds to arrays, so it is told through ``generation``).

The index is a hint for choosing: the database arbitrates every reservation (``capacity.py``).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

# Host status flags: all three are needed for a host to take VMs.
UP, ENABLED, CLUSTER_ENABLED = 1, 2, 4
READY = UP | ENABLED | CLUSTER_ENABLED
MAX_TAGS = 64  # host tags are bits of one 64-bit word
MAX_FACT = 2**50  # per-host numbers (1 PiB of memory); sums over a cluster stay inside a 64-bit word
MAX_FACTOR = 1000.0

HOST_ARRAYS = {  # name -> array typecode
    "host_id": "q", "zone_id": "q", "pod_id": "q", "cluster_id": "q", "cluster_ix": "i", "pod_ix": "i",
    "flags": "B", "hypervisor": "b", "tags": "Q", "cores": "q", "speed": "q",
    "cpu_total": "q", "cpu_alloc": "q", "mem_total": "q", "mem_alloc": "q",
}
CLUSTER_ARRAYS = {
    "c_cpu_total": "q", "c_cpu_alloc": "q", "c_mem_total": "q", "c_mem_alloc": "q",
    "c_cpu_factor": "d", "c_mem_factor": "d",
}


@dataclass(frozen=True)
class HostFacts:
    host_id: int
    zone_id: int
    pod_id: int
    cluster_id: int
    hypervisor_type: str
    tags: frozenset[str]
    cores: int
    speed_mhz: int
    cpu_total: int  # MHz
    mem_total: int  # bytes
    cpu_alloc: int = 0  # used + reserved
    mem_alloc: int = 0
    up: bool = True
    enabled: bool = True
    cluster_enabled: bool = True


class CapacityIndex:
    # per host (see HOST_ARRAYS)
    host_id: array[int]
    zone_id: array[int]
    pod_id: array[int]
    cluster_id: array[int]
    cluster_ix: array[int]
    pod_ix: array[int]
    flags: array[int]
    hypervisor: array[int]
    tags: array[int]
    cores: array[int]
    speed: array[int]
    cpu_total: array[int]
    cpu_alloc: array[int]
    mem_total: array[int]
    mem_alloc: array[int]
    # per cluster (see CLUSTER_ARRAYS)
    c_cpu_total: array[int]
    c_cpu_alloc: array[int]
    c_mem_total: array[int]
    c_mem_alloc: array[int]
    c_cpu_factor: array[float]
    c_mem_factor: array[float]

    def __init__(self, capacity: int = 1024) -> None:
        self.n = 0
        self.generation = 0  # bumped whenever the arrays are replaced
        self.position: dict[int, int] = {}  # host id -> i
        self.cluster_position: dict[int, int] = {}  # cluster id -> c
        self.cluster_ids: list[int] = []
        self.cluster_hosts: dict[int, list[int]] = {}  # cluster id -> host positions
        self.cluster_pod: dict[int, int] = {}  # cluster id -> pod id
        self.cluster_zone: dict[int, int] = {}  # cluster id -> zone id
        self.pod_position: dict[int, int] = {}
        self.pod_ids: list[int] = []
        self.hypervisors: dict[str, int] = {}
        self.tag_bits: dict[str, int] = {}
        self.hypervisor_names: list[str] = []
        self.dropped_tags: dict[int, set[str]] = {}  # host id -> tags past MAX_TAGS, not indexed
        self._allocate(capacity, 16)

    # --- arrays ----------------------------------------------------------------------------------

    def _allocate(self, hosts: int, clusters: int) -> None:
        def grown(name: str, code: str, size: int, used: int) -> array[int] | array[float]:
            new = array(code, bytes(array(code).itemsize * size))
            old = getattr(self, name, None)
            if old is not None:
                new[:used] = old[:used]
            return new

        for name, code in HOST_ARRAYS.items():
            setattr(self, name, grown(name, code, hosts, self.n))
        for name, code in CLUSTER_ARRAYS.items():
            setattr(self, name, grown(name, code, clusters, len(self.cluster_ids)))
        self.host_capacity, self.cluster_capacity = hosts, clusters
        self.generation += 1

    def _cluster(self, cluster_id: int, cpu_factor: float, mem_factor: float) -> int:
        c = self.cluster_position.get(cluster_id)
        if c is None:
            c = len(self.cluster_ids)
            if c >= self.cluster_capacity:
                self._allocate(self.host_capacity, self.cluster_capacity * 2)
            self.cluster_ids.append(cluster_id)
            self.cluster_position[cluster_id] = c
            self.cluster_hosts[cluster_id] = []
        self.c_cpu_factor[c], self.c_mem_factor[c] = cpu_factor, mem_factor
        return c

    def _pod(self, pod_id: int) -> int:
        p = self.pod_position.get(pod_id)
        if p is None:
            p = self.pod_position[pod_id] = len(self.pod_ids)
            self.pod_ids.append(pod_id)
        return p

    def hypervisor_code(self, name: str) -> int:
        """The code of a hypervisor type (interned on first sight)."""
        code = self.hypervisors.get(name)
        if code is None:
            code = self.hypervisors[name] = len(self.hypervisor_names)
            self.hypervisor_names.append(name)
        return code

    def tag_mask(self, tags: frozenset[str] | set[str]) -> int | None:
        """The bits of ``tags``; None when one is unknown (no host has it). Hosts' tags are interned by
        ``set_host``."""
        mask = 0
        for tag in tags:
            bit = self.tag_bits.get(tag)
            if bit is None:
                return None
            mask |= 1 << bit
        return mask

    # --- changes ---------------------------------------------------------------------------------

    def set_host(self, facts: HostFacts, *, cpu_factor: float = 1.0, mem_factor: float = 1.0) -> int:
        """Add the host or replace its facts; returns its position.

        Raises ``ValueError`` (and changes nothing) when a fact does not fit the index: a number outside
        its array's range. A tag past the 64 the index holds is left out of the host's bits (the host
        then takes no VM that asks for it: fewer placements, never a wrong one) and listed in
        ``dropped_tags``.
        """
        numbers = {"host_id": facts.host_id, "zone_id": facts.zone_id, "pod_id": facts.pod_id,
                   "cluster_id": facts.cluster_id, "cores": facts.cores, "speed": facts.speed_mhz,
                   "cpu_total": facts.cpu_total, "mem_total": facts.mem_total,
                   "cpu_alloc": facts.cpu_alloc, "mem_alloc": facts.mem_alloc}
        for name, value in numbers.items():
            if not 0 <= value <= MAX_FACT:
                raise ValueError(f"host {facts.host_id}: {name} = {value} is outside 0..{MAX_FACT}")
        if not (0 < cpu_factor <= MAX_FACTOR and 0 < mem_factor <= MAX_FACTOR):
            raise ValueError(f"host {facts.host_id}: over-commit factors {cpu_factor}, {mem_factor} "
                             f"are outside (0, {MAX_FACTOR}]")
        tags = self._tag_bits_for_host(facts)
        i = self.position.get(facts.host_id)
        if i is not None:
            self._move_alloc(i, -self.cpu_total[i], -self.cpu_alloc[i], -self.mem_total[i],
                             -self.mem_alloc[i])
            old_cluster = self.cluster_ids[self.cluster_ix[i]]
            if old_cluster != facts.cluster_id:
                self.cluster_hosts[old_cluster].remove(i)
        else:
            i = self.n
            if i >= self.host_capacity:
                self._allocate(self.host_capacity * 2, self.cluster_capacity)
            self.n += 1
            self.position[facts.host_id] = i
            old_cluster = 0
        c = self._cluster(facts.cluster_id, cpu_factor, mem_factor)
        self.cluster_pod[facts.cluster_id], self.cluster_zone[facts.cluster_id] = facts.pod_id, facts.zone_id
        if old_cluster != facts.cluster_id:
            self.cluster_hosts[facts.cluster_id].append(i)
        flags = (UP if facts.up else 0) | (ENABLED if facts.enabled else 0) | \
            (CLUSTER_ENABLED if facts.cluster_enabled else 0)
        values = {
            "host_id": facts.host_id, "zone_id": facts.zone_id, "pod_id": facts.pod_id,
            "cluster_id": facts.cluster_id, "cluster_ix": c, "pod_ix": self._pod(facts.pod_id),
            "flags": flags, "hypervisor": self.hypervisor_code(facts.hypervisor_type),
            "tags": tags, "cores": facts.cores, "speed": facts.speed_mhz,
            "cpu_total": facts.cpu_total, "cpu_alloc": 0, "mem_total": facts.mem_total, "mem_alloc": 0,
        }
        for name, value in values.items():
            getattr(self, name)[i] = value
        self._move_alloc(i, facts.cpu_total, facts.cpu_alloc, facts.mem_total, facts.mem_alloc)
        return i

    def _tag_bits_for_host(self, facts: HostFacts) -> int:
        mask = 0
        for tag in sorted(facts.tags):
            bit = self.tag_bits.get(tag)
            if bit is None:
                if len(self.tag_bits) >= MAX_TAGS:
                    self.dropped_tags.setdefault(facts.host_id, set()).add(tag)
                    continue
                bit = self.tag_bits[tag] = len(self.tag_bits)
            mask |= 1 << bit
        return mask

    def _move_alloc(self, i: int, cpu_total: int, cpu_alloc: int, mem_total: int, mem_alloc: int) -> None:
        c = self.cluster_ix[i]
        self.cpu_alloc[i] += cpu_alloc
        self.mem_alloc[i] += mem_alloc
        self.c_cpu_total[c] += cpu_total
        self.c_cpu_alloc[c] += cpu_alloc
        self.c_mem_total[c] += mem_total
        self.c_mem_alloc[c] += mem_alloc

    def allocate(self, host_id: int, cpu_mhz: int, mem_bytes: int) -> None:
        """Add (or, negative, remove) an allocation on a host, after the database recorded it."""
        i = self.position.get(host_id)
        if i is not None:
            self._move_alloc(i, 0, cpu_mhz, 0, mem_bytes)

    def set_allocated(self, host_id: int, cpu_alloc: int, mem_alloc: int) -> None:
        """Set a host's allocated totals (from the database)."""
        i = self.position.get(host_id)
        if i is not None:
            self._move_alloc(i, 0, cpu_alloc - self.cpu_alloc[i],
                             0, mem_alloc - self.mem_alloc[i])

    def set_flags(self, host_id: int, *, up: bool | None = None, enabled: bool | None = None) -> None:
        i = self.position.get(host_id)
        if i is None:
            return
        flags = self.flags[i]
        if up is not None:
            flags = flags | UP if up else flags & ~UP
        if enabled is not None:
            flags = flags | ENABLED if enabled else flags & ~ENABLED
        self.flags[i] = flags

    def set_cluster_enabled(self, cluster_id: int, enabled: bool) -> None:
        for i in self.cluster_hosts.get(cluster_id, ()):
            flags = self.flags[i]
            self.flags[i] = flags | CLUSTER_ENABLED if enabled else flags & ~CLUSTER_ENABLED

    # --- reading ---------------------------------------------------------------------------------

    def cluster_fraction(self, c: int, cpu_weight: float) -> float:
        """Allocated fraction of a cluster: CPU and memory mixed by ``cpu_weight`` (1: CPU only)."""
        cpu_cap = self.c_cpu_total[c] * self.c_cpu_factor[c]
        mem_cap = self.c_mem_total[c] * self.c_mem_factor[c]
        cpu = self.c_cpu_alloc[c] / cpu_cap if cpu_cap > 0 else 1.0
        mem = self.c_mem_alloc[c] / mem_cap if mem_cap > 0 else 1.0
        return cpu_weight * cpu + (1.0 - cpu_weight) * mem
