"""Host weighers, one per file. Each gives a raw value per candidate (higher is better); the kernel
normalizes each weigher's values over the candidates to [0, 1] (all equal: 0), multiplies by the
weigher's weight for the allocation algorithm, and sums (Nova's scheme). Ties go to the lower position.

Each module's ``WEIGHER`` holds its name, its code (position in ``Query.weights``) and the reference
``raw``; the Cython kernel computes the same values in the same order of operations, so both kernels
give bit-identical scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..index import CapacityIndex
from ..query import WEIGHERS, Query


@dataclass(frozen=True)
class Weigher:
    name: str
    code: int
    raw: Callable[[CapacityIndex, int, Query], float]


from . import (  # noqa: E402 - the modules use Weigher
    account_dispersion,
    cluster_fill,
    first_fit,
    free_capacity,
    pod_concentration,
    random_spread,
)

WEIGHER_LIST: tuple[Weigher, ...] = tuple(sorted(
    (m.WEIGHER for m in (cluster_fill, free_capacity, first_fit, random_spread, account_dispersion,
                         pod_concentration)), key=lambda w: w.code))
BY_NAME = {w.name: w for w in WEIGHER_LIST}
assert [w.code for w in WEIGHER_LIST] == list(range(WEIGHERS))
