"""Random: a value per host drawn from the request's seed (splitmix64 of seed xor host id), so the
two kernels agree and a seed replays a choice."""

from __future__ import annotations

from ..index import CapacityIndex
from ..query import Query
from . import Weigher

M64 = (1 << 64) - 1


def mix(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def raw(ix: CapacityIndex, i: int, q: Query) -> float:
    return (mix((q.seed ^ ix.host_id[i]) & M64) >> 11) * (1.0 / 9007199254740992.0)


WEIGHER = Weigher("random", 3, raw)
