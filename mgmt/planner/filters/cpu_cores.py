"""CPU cores: the host has at least as many cores as the VM has vCPUs, each at least as fast."""

from __future__ import annotations

from ..index import CapacityIndex
from ..query import Query
from . import Filter


def passes(ix: CapacityIndex, i: int, q: Query) -> bool:
    return ix.cores[i] >= q.cpus and ix.speed[i] >= q.speed


def reason(ix: CapacityIndex, i: int, q: Query) -> str:
    return f"{ix.cores[i]} cores at {ix.speed[i]} MHz; the VM needs {q.cpus} at {q.speed} MHz"


FILTER = Filter("cpu_cores", 7, passes, reason)
