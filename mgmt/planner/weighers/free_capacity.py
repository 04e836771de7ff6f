"""Free capacity: the host with the largest free fraction of CPU and memory (averaged) first."""

from __future__ import annotations

from ..index import CapacityIndex
from ..query import Query
from . import Weigher


def raw(ix: CapacityIndex, i: int, q: Query) -> float:
    c = ix.cluster_ix[i]
    cpu_cap = ix.cpu_total[i] * ix.c_cpu_factor[c]
    mem_cap = ix.mem_total[i] * ix.c_mem_factor[c]
    cpu = (cpu_cap - ix.cpu_alloc[i]) / cpu_cap if cpu_cap > 0 else 0.0
    mem = (mem_cap - ix.mem_alloc[i]) / mem_cap if mem_cap > 0 else 0.0
    return (cpu + mem) * 0.5


WEIGHER = Weigher("free_capacity", 1, raw)
