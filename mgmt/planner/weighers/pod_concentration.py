"""Pod concentration: pods holding more of the requesting account's VMs first (userconcentratedpod)."""

from __future__ import annotations

from ..index import CapacityIndex
from ..query import Query
from . import Weigher


def raw(ix: CapacityIndex, i: int, q: Query) -> float:
    return q.pod_vms[ix.pod_ix[i]] if q.pod_vms is not None else 0.0


WEIGHER = Weigher("pod_concentration", 5, raw)
