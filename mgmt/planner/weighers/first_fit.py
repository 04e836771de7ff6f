"""First fit: the host earliest in the index (which is ordered by cluster, then host id) first."""

from __future__ import annotations

from ..index import CapacityIndex
from ..query import Query
from . import Weigher


def raw(ix: CapacityIndex, i: int, q: Query) -> float:
    return -float(i)


WEIGHER = Weigher("first_fit", 2, raw)
