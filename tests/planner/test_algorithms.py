"""vm.allocation.algorithm and cluster ordering, as orders over small fake inventories."""

from __future__ import annotations

import pytest

from mgmt.planner.index import HostFacts
from mgmt.planner.kernel import Kernel
from mgmt.planner.model import DeploymentPlan, VmProfile

from .conftest import GiB, host, make_planner

SMALL = VmProfile(cpus=1, cpu_speed_mhz=1000, memory_bytes=GiB)


def two_clusters() -> list[HostFacts]:
    """Cluster 1 is 50% CPU allocated, cluster 2 25%; in cluster 2, host 3 comes first and host 4 is
    the freer."""
    return [host(1, 1, cpu_alloc=8000), host(2, 1, cpu_alloc=8000), host(3, 2, cpu_alloc=6000),
            host(4, 2, cpu_alloc=2000)]


@pytest.mark.parametrize(("algorithm", "expected"), [("firstfit", 3), ("firstfitleastconsumed", 4)])
def test_first_fit_algorithms_take_the_emptiest_cluster(kernel: Kernel, algorithm: str,
                                                        expected: int) -> None:
    planner = make_planner(kernel, two_clusters(), algorithm=algorithm)
    assert planner.plan(SMALL, DeploymentPlan(1)).host_id == expected


@pytest.mark.parametrize(("order", "expected"), [("CPU", 1), ("RAM", 3), ("COMBINED", 1)])
def test_clusters_are_ordered_by_cpu_memory_or_both(kernel: Kernel, order: str, expected: int) -> None:
    # Cluster 1: 10% CPU, 60% memory. Cluster 2: 40% CPU, 20% memory. COMBINED (0.5/0.5): 35% vs 30%
    # would favour cluster 2, so weight CPU at 0.9: 15% vs 38%, cluster 1.
    planner = make_planner(
        kernel,
        [host(1, 1, cpu_alloc=1600, mem_alloc_gib=19.2), host(3, 2, cpu_alloc=6400, mem_alloc_gib=6.4)],
        algorithm="firstfit",
        cluster_order=order,
        cpu_to_memory_weight=0.9,
    )
    assert planner.plan(SMALL, DeploymentPlan(1)).host_id == expected


def test_userdispersing_spreads_an_accounts_vms(kernel: Kernel) -> None:
    planner = make_planner(kernel, [host(h, h) for h in (1, 2, 3)], algorithm="userdispersing")
    assert planner.plan(SMALL, DeploymentPlan(1), account_vms={1: 3, 2: 1, 3: 2}).host_id == 2


def test_userconcentratedpod_keeps_an_account_in_its_pod(kernel: Kernel) -> None:
    planner = make_planner(
        kernel,
        [host(1, 1, pod_id=10), host(2, 2, pod_id=20), host(3, 3, pod_id=20)],
        algorithm="userconcentratedpod_firstfit",
    )
    assert planner.plan(SMALL, DeploymentPlan(1), account_vms={1: 1, 3: 2}).host_id == 2
    assert planner.plan(SMALL, DeploymentPlan(1), account_vms={1: 5, 3: 2}).host_id == 1


def test_random_spreads_and_replays_with_the_same_seed(kernel: Kernel) -> None:
    hosts = [host(h, h) for h in range(1, 21)]
    first = make_planner(kernel, hosts, seed=3)
    chosen = [first.plan(SMALL, DeploymentPlan(1)).host_id for _ in range(40)]
    assert len(set(chosen)) > 5  # spread, not one favourite
    again = make_planner(kernel, hosts, seed=3)
    assert [again.plan(SMALL, DeploymentPlan(1)).host_id for _ in range(40)] == chosen


def test_unknown_algorithm_is_refused(kernel: Kernel) -> None:
    with pytest.raises(ValueError, match=r"vm\.allocation\.algorithm 'best' is not one of random, firstfit"):
        make_planner(kernel, [], algorithm="best")


def test_the_explanation_breaks_scores_into_weighers(kernel: Kernel) -> None:
    planner = make_planner(
        kernel, [host(1, 1, cpu_alloc=8000), host(2, 2, cpu_alloc=2000)], algorithm="firstfitleastconsumed"
    )
    explanation = planner.explain(SMALL, DeploymentPlan(1))
    scores = {v.host_id: (v.score, dict(v.parts)) for v in explanation.hosts}
    assert scores[2] == (1001.0, {"cluster_fill": 1000.0, "free_capacity": 1.0})
    assert scores[1] == (0.0, {"cluster_fill": 0.0, "free_capacity": 0.0})
    assert explanation.algorithm == "firstfitleastconsumed"
