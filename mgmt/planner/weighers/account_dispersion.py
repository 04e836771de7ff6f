"""Account dispersion: hosts with fewer of the requesting account's VMs first (userdispersing)."""

from __future__ import annotations

from ..index import CapacityIndex
from ..query import Query
from . import Weigher


def raw(ix: CapacityIndex, i: int, q: Query) -> float:
    return -q.account_vms[i] if q.account_vms is not None else 0.0


WEIGHER = Weigher("account_dispersion", 4, raw)
