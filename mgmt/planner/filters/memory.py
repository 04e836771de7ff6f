"""Memory capacity: used + reserved + requested <= total x mem.overprovisioning.factor (the cluster's
override when it has one)."""

from __future__ import annotations

from ..index import CapacityIndex
from ..query import Query
from . import Filter


def limit(ix: CapacityIndex, i: int) -> float:
    return ix.mem_total[i] * ix.c_mem_factor[ix.cluster_ix[i]]


def passes(ix: CapacityIndex, i: int, q: Query) -> bool:
    return float(ix.mem_alloc[i] + q.memory) <= limit(ix, i)


def reason(ix: CapacityIndex, i: int, q: Query) -> str:
    mib = 2**20
    return f"memory: {ix.mem_alloc[i] // mib} + {q.memory // mib} MiB > {limit(ix, i) / mib:.0f} MiB"


FILTER = Filter("memory", 9, passes, reason)
