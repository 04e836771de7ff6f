"""Avoid: places an earlier attempt ruled out (zones, pods, clusters, hosts), marked per host."""

from __future__ import annotations

from ..index import CapacityIndex
from ..query import Query
from . import Filter

CODE = 2


def passes(ix: CapacityIndex, i: int, q: Query) -> bool:
    return q.blocked is None or q.blocked[i] != CODE


def reason(ix: CapacityIndex, i: int, q: Query) -> str:
    return "in the avoid set of an earlier attempt"


FILTER = Filter("avoid", CODE, passes, reason)
