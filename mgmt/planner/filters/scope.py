"""Scope: the zone, pod, cluster or host the deployment plan names (0: any)."""

from __future__ import annotations

from ..index import CapacityIndex
from ..query import Query
from . import Filter


def passes(ix: CapacityIndex, i: int, q: Query) -> bool:
    return ((q.zone_id == 0 or ix.zone_id[i] == q.zone_id) and (q.pod_id == 0 or ix.pod_id[i] == q.pod_id)
            and (q.cluster_id == 0 or ix.cluster_id[i] == q.cluster_id)
            and (q.host_id == 0 or ix.host_id[i] == q.host_id))


def reason(ix: CapacityIndex, i: int, q: Query) -> str:
    return "outside the requested zone, pod, cluster or host"


FILTER = Filter("scope", 1, passes, reason)
