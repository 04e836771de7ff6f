"""Choosing a pool for the chosen host: scope order, tags, capacity with over-provisioning and the
disable threshold, the template's copy, and a new host when a cluster has no pool that fits."""

from __future__ import annotations

import pytest

from mgmt.planner.kernel import Kernel
from mgmt.planner.model import Avoid, DeploymentPlan, NoDestination, VmProfile
from mgmt.planner.pools import Pool, PoolIndex

from .conftest import GiB, host, make_planner

TiB = 2**40


def pools(*items: Pool) -> PoolIndex:
    index = PoolIndex()
    for pool in items:
        index.set_pool(pool)
    return index


def vm(disk_gib: int = 20, **kw: object) -> VmProfile:
    return VmProfile(1, 1000, GiB, disk_bytes=disk_gib * GiB, template_id=7, template_bytes=2 * GiB, **kw)  # type: ignore[arg-type]


def test_cluster_pools_before_zone_pools_and_the_freest_first(kernel: Kernel) -> None:
    index = pools(
        Pool(1, 1, 1, 1, 0, "CLUSTER", "NetworkFilesystem", TiB, TiB // 2),
        Pool(2, 1, 1, 1, 0, "CLUSTER", "NetworkFilesystem", TiB, TiB // 4),
        Pool(3, 1, 0, 0, 0, "ZONE", "NetworkFilesystem", 100 * TiB),
    )
    planner = make_planner(kernel, [host(1, 1)], pools=index)
    assert planner.plan(vm(), DeploymentPlan(1)).pool_id == 2
    assert planner.plan(vm(), DeploymentPlan(1), Avoid(pools={1, 2})).pool_id == 3
    assert planner.plan(vm(), DeploymentPlan(1, pool_id=1)).pool_id == 1


def test_pool_tags_capacity_threshold_and_template_copy(kernel: Kernel) -> None:
    # 100 GiB NFS pool, thin: 200 GiB of room at factor 2, 170 GiB under the 0.85 threshold.
    small = Pool(1, 1, 1, 1, 0, "CLUSTER", "NetworkFilesystem", 100 * GiB, 150 * GiB)
    tagged = Pool(2, 1, 1, 1, 0, "CLUSTER", "NetworkFilesystem", TiB, 0, frozenset({"ssd"}))
    planner = make_planner(kernel, [host(1, 1)], pools=pools(small, tagged))
    assert planner.plan(vm(18), DeploymentPlan(1)).pool_id == 2  # most free first
    assert planner.plan(vm(18, pool_tags=frozenset({"ssd"})), DeploymentPlan(1)).pool_id == 2
    explanation = planner.explain(vm(18), DeploymentPlan(1), Avoid(pools={2}))
    assert explanation.destination is not None and explanation.destination.pool_id == 1
    small.templates.add(7)  # with the template there already, 20 GiB more fits under the threshold
    assert planner.explain(vm(20), DeploymentPlan(1), Avoid(pools={2})).destination.pool_id == 1  # type: ignore[union-attr]
    small.templates.clear()
    why = dict(planner.explain(vm(20), DeploymentPlan(1, host_id=1)).pools)
    assert why[1] == "would be 86% allocated, past pool.storage.capacity.disablethreshold 0.85"


def test_a_cluster_without_a_fitting_pool_sends_the_vm_elsewhere(kernel: Kernel) -> None:
    index = pools(
        Pool(1, 1, 1, 1, 0, "CLUSTER", "NetworkFilesystem", 10 * GiB),
        Pool(2, 1, 2, 2, 0, "CLUSTER", "NetworkFilesystem", TiB),
    )
    planner = make_planner(
        kernel, [host(1, 1), host(2, 2, cpu_alloc=4000)], pools=index, algorithm="firstfit"
    )
    destination = planner.plan(vm(50), DeploymentPlan(1))
    assert (destination.host_id, destination.pool_id) == (2, 2)
    with pytest.raises(NoDestination):
        planner.plan(vm(5000), DeploymentPlan(1))


def test_local_storage_uses_the_hosts_own_pool(kernel: Kernel) -> None:
    index = pools(
        Pool(1, 1, 1, 1, 1, "HOST", "Filesystem", 30 * GiB),
        Pool(2, 1, 1, 1, 2, "HOST", "Filesystem", TiB),
        Pool(3, 1, 1, 1, 0, "CLUSTER", "NetworkFilesystem", TiB),
    )
    planner = make_planner(kernel, [host(1, 1), host(2, 1)], pools=index, algorithm="firstfit")
    # Host 1 first by position, but its 30 GiB local pool (no over-provisioning) cannot take 40 GiB.
    destination = planner.plan(vm(38, local_storage=True), DeploymentPlan(1))
    assert (destination.host_id, destination.pool_id) == (2, 2)
    assert planner.plan(vm(38), DeploymentPlan(1)).pool_id == 3
