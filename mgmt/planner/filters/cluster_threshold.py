"""Cluster disable thresholds: a cluster whose allocated CPU or memory, with this VM, would pass
cluster.cpu.allocated.capacity.disablethreshold or cluster.memory.allocated.capacity.disablethreshold
takes no new VMs."""

from __future__ import annotations

from ..index import CapacityIndex
from ..query import Query
from . import Filter


def fractions(ix: CapacityIndex, i: int, q: Query) -> tuple[float, float]:
    c = ix.cluster_ix[i]
    cpu_cap = ix.c_cpu_total[c] * ix.c_cpu_factor[c]
    mem_cap = ix.c_mem_total[c] * ix.c_mem_factor[c]
    cpu = (ix.c_cpu_alloc[c] + q.cpu_mhz) / cpu_cap if cpu_cap > 0 else 2.0
    mem = (ix.c_mem_alloc[c] + q.memory) / mem_cap if mem_cap > 0 else 2.0
    return cpu, mem


def passes(ix: CapacityIndex, i: int, q: Query) -> bool:
    cpu, mem = fractions(ix, i, q)
    return cpu <= q.cpu_threshold and mem <= q.mem_threshold


def reason(ix: CapacityIndex, i: int, q: Query) -> str:
    cpu, mem = fractions(ix, i, q)
    return f"cluster would be {cpu:.0%} CPU / {mem:.0%} memory allocated, past its disable threshold"


FILTER = Filter("cluster_threshold", 10, passes, reason)
