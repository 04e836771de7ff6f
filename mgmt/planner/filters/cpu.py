"""CPU capacity: used + reserved + requested MHz <= total x cpu.overprovisioning.factor (the cluster's
override when it has one)."""

from __future__ import annotations

from ..index import CapacityIndex
from ..query import Query
from . import Filter


def limit(ix: CapacityIndex, i: int) -> float:
    return ix.cpu_total[i] * ix.c_cpu_factor[ix.cluster_ix[i]]


def passes(ix: CapacityIndex, i: int, q: Query) -> bool:
    return float(ix.cpu_alloc[i] + q.cpu_mhz) <= limit(ix, i)


def reason(ix: CapacityIndex, i: int, q: Query) -> str:
    return f"CPU: {ix.cpu_alloc[i]} + {q.cpu_mhz} MHz > {limit(ix, i):g} MHz"


FILTER = Filter("cpu", 8, passes, reason)
