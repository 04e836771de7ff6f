"""Status: the host is Up, Enabled, and its cluster, pod and zone take new VMs."""

from __future__ import annotations

from ..index import CLUSTER_ENABLED, ENABLED, READY, UP, CapacityIndex
from ..query import Query
from . import Filter


def passes(ix: CapacityIndex, i: int, q: Query) -> bool:
    return ix.flags[i] & READY == READY


def reason(ix: CapacityIndex, i: int, q: Query) -> str:
    flags = ix.flags[i]
    return ("not Up" if not flags & UP else "disabled" if not flags & ENABLED
            else "its cluster, pod or zone is disabled" if not flags & CLUSTER_ENABLED else "")


FILTER = Filter("status", 4, passes, reason)
