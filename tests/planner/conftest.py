"""Planner tests run against both kernels: the Cython one and the Python reference."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from mgmt.planner.index import CapacityIndex, HostFacts
from mgmt.planner.kernel import Kernel, get_kernel
from mgmt.planner.planner import Planner, PlannerSettings
from mgmt.planner.pools import PoolIndex

GiB = 2**30


@pytest.fixture(params=["python", "native"])
def kernel(request: pytest.FixtureRequest) -> Kernel:
    return get_kernel(request.param)


def host(
    host_id: int,
    cluster_id: int = 1,
    *,
    pod_id: int = 0,
    zone_id: int = 1,
    cores: int = 8,
    speed: int = 2000,
    mem_gib: int = 32,
    cpu_alloc: int = 0,
    mem_alloc_gib: float = 0,
    tags: Iterable[str] = (),
    hypervisor: str = "KVM",
    up: bool = True,
    enabled: bool = True,
    cluster_enabled: bool = True,
) -> HostFacts:
    """A small fake host: 8 cores at 2 GHz and 32 GiB unless told otherwise; pod = cluster by default."""
    return HostFacts(
        host_id,
        zone_id,
        pod_id or cluster_id,
        cluster_id,
        hypervisor,
        frozenset(tags),
        cores,
        speed,
        cores * speed,
        mem_gib * GiB,
        cpu_alloc,
        int(mem_alloc_gib * GiB),
        up,
        enabled,
        cluster_enabled,
    )


def make_planner(
    kernel: Kernel,
    hosts: Iterable[HostFacts],
    *,
    pools: PoolIndex | None = None,
    factors: dict[int, tuple[float, float]] | None = None,
    seed: int = 1,
    **settings: object,
) -> Planner:
    ix = CapacityIndex(capacity=4)  # small: adding hosts grows the arrays, as in production
    for facts in hosts:
        cpu, mem = (factors or {}).get(facts.cluster_id, (1.0, 1.0))
        ix.set_host(facts, cpu_factor=cpu, mem_factor=mem)
    return Planner(
        ix,
        pools,
        PlannerSettings(**settings),
        kernel=kernel,  # type: ignore[arg-type]
        rng=random.Random(seed),
    )
