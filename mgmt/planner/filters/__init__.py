"""Host filters, one per file, in the order the kernel applies them: a host's reason is the first
filter that drops it. Each module's ``FILTER`` holds its name (as in the ``planner.filters`` setting),
its code (its position in the kernel), the reference ``passes`` and the ``reason`` an explanation shows.

The Cython kernel (``native/plannerkernel.pyx``) does the same tests fused into one loop; the
reference kernel calls ``passes``; property tests hold them to the same answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..index import CapacityIndex
from ..query import Query


@dataclass(frozen=True)
class Filter:
    name: str
    code: int
    passes: Callable[[CapacityIndex, int, Query], bool]
    reason: Callable[[CapacityIndex, int, Query], str]


from . import (  # noqa: E402 - the modules use Filter
    affinity,
    avoid,
    cluster_threshold,
    cpu,
    cpu_cores,
    hypervisor,
    memory,
    scope,
    status,
    tags,
)

FILTERS: tuple[Filter, ...] = tuple(sorted(
    (m.FILTER for m in (scope, avoid, affinity, status, hypervisor, tags, cpu_cores, cpu, memory,
                        cluster_threshold)), key=lambda f: f.code))
BY_NAME = {f.name: f for f in FILTERS}
BY_CODE = {f.code: f for f in FILTERS}
ALL = sum(1 << f.code for f in FILTERS)


def mask(names: list[str] | None) -> int:
    """The enabled-filter bits for these names (None: all)."""
    if names is None:
        return ALL
    unknown = sorted(set(names) - set(BY_NAME))
    if unknown:
        raise ValueError(f"unknown planner filters {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    return sum(1 << BY_NAME[n].code for n in names)
