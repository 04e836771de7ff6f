"""Cluster fill: emptier clusters first, by allocated CPU, memory or a mix
(host.capacityType.to.order.clusters), as CloudStack orders clusters."""

from __future__ import annotations

from ..index import CapacityIndex
from ..query import Query
from . import Weigher


def raw(ix: CapacityIndex, i: int, q: Query) -> float:
    return -ix.cluster_fraction(ix.cluster_ix[i], q.cluster_cpu_weight)


WEIGHER = Weigher("cluster_fill", 0, raw)
