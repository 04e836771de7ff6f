"""One placement request as the kernel reads it: plain numbers, bit masks and per-host arrays.

``Planner`` builds it from a VM profile, a deployment plan and an avoid set; both kernels take it.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

WEIGHERS = 6  # length of ``weights``; positions are the weigher codes in weighers/


@dataclass
class Query:
    zone_id: int = 0  # 0: any (so for pod, cluster, host)
    pod_id: int = 0
    cluster_id: int = 0
    host_id: int = 0
    hypervisor: int = -1  # code in the index; -1: any
    tags: int = 0  # host-tag bits every candidate must have
    cpus: int = 0
    speed: int = 0  # MHz per core
    cpu_mhz: int = 0
    memory: int = 0
    cpu_threshold: float = 0.85  # cluster.cpu.allocated.capacity.disablethreshold
    mem_threshold: float = 0.85  # cluster.memory.allocated.capacity.disablethreshold
    filters: int = -1  # bit (1 << code) set for each enabled filter
    weights: array[float] | None = None  # per weigher code; 0 turns a weigher off
    cluster_cpu_weight: float = 1.0  # ordering clusters: 1 CPU, 0 memory, between: a mix
    seed: int = 0  # for the random weigher, per request
    blocked: bytearray | None = None  # per host: 0, or the code of the filter that excluded it
    account_vms: array[float] | None = None  # per host: VMs of the requesting account
    pod_vms: array[float] | None = None  # per pod position: VMs of the requesting account

    def enabled(self, code: int) -> bool:
        return bool(self.filters & (1 << code))
