"""What the planner is asked and what it answers: the VM's needs, the caller's scope, the avoid set, the
destination, and the explanation of a choice."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InsufficientCapacity


@dataclass(frozen=True)
class VmProfile:
    """The VM's needs, from its service offering, template and disks."""

    cpus: int
    cpu_speed_mhz: int
    memory_bytes: int
    hypervisor_type: str = ""  # empty: any
    host_tags: frozenset[str] = frozenset()  # the offering's and the template's, all required
    disk_bytes: int = 0  # the root volume (and any data disks) to place on one pool
    pool_tags: frozenset[str] = frozenset()
    local_storage: bool = False  # the offering asks for the host's own storage
    template_id: int = 0  # its copy on a pool saves the copy's space
    template_bytes: int = 0
    account_id: int = 0
    vm_id: int = 0
    affinity_hosts: frozenset[int] = frozenset()  # host affinity: hosts where the group's VMs run
    anti_affinity_hosts: frozenset[int] = frozenset()  # host anti-affinity: hosts to stay away from
    # the host order for this VM (an offering's deployment planner): a vm.allocation.algorithm name, or
    # "userconcentratedpod" (its random or firstfit flavour, after the cloud's algorithm); "": the cloud's
    algorithm: str = ""

    @property
    def cpu_mhz(self) -> int:
        return self.cpus * self.cpu_speed_mhz


@dataclass(frozen=True)
class DeploymentPlan:
    """Where the caller wants it: 0 means anywhere at that level."""

    zone_id: int
    pod_id: int = 0
    cluster_id: int = 0
    host_id: int = 0
    pool_id: int = 0


@dataclass
class Avoid:
    """Places a previous attempt ruled out (CloudStack's ExcludeList)."""

    zones: set[int] = field(default_factory=set)
    pods: set[int] = field(default_factory=set)
    clusters: set[int] = field(default_factory=set)
    hosts: set[int] = field(default_factory=set)
    pools: set[int] = field(default_factory=set)

    def copy(self) -> Avoid:
        return Avoid(set(self.zones), set(self.pods), set(self.clusters), set(self.hosts), set(self.pools))


@dataclass(frozen=True)
class Destination:
    zone_id: int
    pod_id: int
    cluster_id: int
    host_id: int
    pool_id: int


@dataclass(frozen=True)
class HostVerdict:
    """Why one host was dropped (``filter`` and ``reason``), or its score and the score's parts."""

    host_id: int
    filter: str = ""
    reason: str = ""
    score: float = 0.0
    parts: tuple[tuple[str, float], ...] = ()  # (weigher, weighted normalized value)


@dataclass(frozen=True)
class Explanation:
    destination: Destination | None
    algorithm: str
    removed: dict[str, int]  # per filter, how many hosts it dropped
    hosts: tuple[HostVerdict, ...]
    pools: tuple[tuple[int, str], ...] = ()  # (pool id, why dropped or "chosen") for the chosen host


class NoDestination(InsufficientCapacity):
    """No host (or no pool) can take the VM; ``removed`` says, per filter, how many it dropped."""

    def __init__(self, message: str, removed: dict[str, int]) -> None:
        summary = ", ".join(f"{name}: {n}" for name, n in removed.items() if n)
        super().__init__(f"{message} ({summary})" if summary else message)
        self.removed = removed
