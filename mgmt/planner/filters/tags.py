"""Host tags: the host carries every tag of the service offering and the template."""

from __future__ import annotations

from ..index import CapacityIndex
from ..query import Query
from . import Filter


def passes(ix: CapacityIndex, i: int, q: Query) -> bool:
    return ix.tags[i] & q.tags == q.tags


def reason(ix: CapacityIndex, i: int, q: Query) -> str:
    missing = q.tags & ~ix.tags[i]
    names = sorted(tag for tag, bit in ix.tag_bits.items() if missing >> bit & 1)
    return f"lacks host tags {', '.join(names)}"


FILTER = Filter("tags", 6, passes, reason)
