"""Hypervisor: the host runs the hypervisor the template needs."""

from __future__ import annotations

from ..index import CapacityIndex
from ..query import Query
from . import Filter


def passes(ix: CapacityIndex, i: int, q: Query) -> bool:
    return q.hypervisor < 0 or ix.hypervisor[i] == q.hypervisor


def reason(ix: CapacityIndex, i: int, q: Query) -> str:
    return f"runs {ix.hypervisor_names[ix.hypervisor[i]]}"


FILTER = Filter("hypervisor", 5, passes, reason)
