"""Affinity groups: host anti-affinity keeps a group's VMs on different hosts, host affinity on the same
host. The planner marks the hosts each rule excludes; this filter drops them."""

from __future__ import annotations

from ..index import CapacityIndex
from ..query import Query
from . import Filter

CODE = 3


def passes(ix: CapacityIndex, i: int, q: Query) -> bool:
    return q.blocked is None or q.blocked[i] != CODE


def reason(ix: CapacityIndex, i: int, q: Query) -> str:
    return "an affinity group rules this host out"


FILTER = Filter("affinity", CODE, passes, reason)
