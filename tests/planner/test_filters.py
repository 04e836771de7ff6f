"""Each filter on small fake inventories: who is dropped, why, and what is left to choose from."""

from __future__ import annotations

import pytest

from mgmt.planner.index import CapacityIndex
from mgmt.planner.kernel import Kernel
from mgmt.planner.model import Avoid, DeploymentPlan, Explanation, NoDestination, VmProfile
from mgmt.planner.planner import Planner

from .conftest import GiB, host, make_planner

SMALL = VmProfile(cpus=2, cpu_speed_mhz=1000, memory_bytes=2 * GiB)


ZONE1 = DeploymentPlan(1)


def verdicts(planner: Planner, profile: VmProfile = SMALL, plan: DeploymentPlan = ZONE1,
             avoid: Avoid | None = None) -> tuple[Explanation, dict[int, tuple[str, str]]]:
    """The explanation, and for each dropped host: (filter, reason)."""
    explanation = planner.explain(profile, plan, avoid)
    return explanation, {v.host_id: (v.filter, v.reason) for v in explanation.hosts if v.filter}


def test_every_filter_drops_its_host_with_a_reason(kernel: Kernel) -> None:
    planner = make_planner(
        kernel,
        [
            host(1),
            host(2, zone_id=2),
            host(3, up=False),
            host(4, enabled=False),
            host(5, hypervisor="XenServer"),
            host(6, cores=1),
            host(7, speed=500),
            host(8, cpu_alloc=15_000),
            host(9, mem_alloc_gib=31),
            host(10, cluster_id=2, tags=["ssd"]),
            host(11, cluster_enabled=False, cluster_id=3),
        ],
        algorithm="firstfit",
    )
    profile = VmProfile(2, 1000, 2 * GiB, "KVM")
    explanation, dropped = verdicts(planner, profile, DeploymentPlan(1), Avoid(hosts={10}))
    assert {h: f for h, (f, _r) in dropped.items()} == {
        2: "scope",
        3: "status",
        4: "status",
        5: "hypervisor",
        6: "cpu_cores",
        7: "cpu_cores",
        8: "cpu",
        9: "memory",
        10: "avoid",
        11: "status",
    }
    assert dropped[3][1] == "not Up" and dropped[4][1] == "disabled"
    assert dropped[11][1] == "its cluster, pod or zone is disabled"
    assert dropped[5][1] == "runs XenServer"
    assert dropped[8][1] == "CPU: 15000 + 2000 MHz > 16000 MHz"
    assert dropped[9][1] == "memory: 31744 + 2048 MiB > 32768 MiB"
    assert explanation.destination is not None and explanation.destination.host_id == 1
    assert explanation.removed["status"] == 3 and explanation.removed["cpu_cores"] == 2


def test_tags_must_all_be_present_and_unknown_tags_match_nobody(kernel: Kernel) -> None:
    planner = make_planner(kernel, [host(1, tags=["ssd"]), host(2, tags=["ssd", "gpu"]), host(3)])
    assert (
        planner.plan(VmProfile(1, 1000, GiB, host_tags=frozenset({"ssd", "gpu"})), DeploymentPlan(1)).host_id
        == 2
    )
    _, dropped = verdicts(planner, VmProfile(1, 1000, GiB, host_tags=frozenset({"gpu"})))
    assert dropped[1] == ("tags", "lacks host tags gpu") and dropped[3][0] == "tags"
    with pytest.raises(NoDestination) as e:
        planner.plan(VmProfile(1, 1000, GiB, host_tags=frozenset({"fpga"})), DeploymentPlan(1))
    assert e.value.removed["tags"] == 3
    assert "tags: 3" in str(e.value)


def test_overcommit_factors_come_from_the_cluster(kernel: Kernel) -> None:
    # Both hosts have 16,000 MHz with 15,000 allocated; cluster 2 over-commits CPU 2x.
    planner = make_planner(
        kernel, [host(1, 1, cpu_alloc=15_000), host(2, 2, cpu_alloc=15_000)], factors={2: (2.0, 1.0)}
    )
    assert planner.plan(SMALL, DeploymentPlan(1)).host_id == 2
    _, dropped = verdicts(planner)
    assert dropped == {1: ("cpu", "CPU: 15000 + 2000 MHz > 16000 MHz")}


def test_a_cluster_past_its_disable_threshold_takes_nothing(kernel: Kernel) -> None:
    # Cluster 1: 2 hosts x 16,000 MHz, 26,000 allocated: with 2,000 more it is past 0.85.
    # Cluster 2: one host, 10,000 allocated: 12,000 / 16,000 = 0.75 with the VM.
    hosts = [host(1, 1, cpu_alloc=13_000), host(2, 1, cpu_alloc=13_000), host(3, 2, cpu_alloc=10_000)]
    planner = make_planner(kernel, hosts)
    explanation, dropped = verdicts(planner)
    assert dropped == {
        h: ("cluster_threshold", "cluster would be 88% CPU / 3% memory allocated, past its disable threshold")
        for h in (1, 2)
    }
    assert explanation.destination is not None and explanation.destination.host_id == 3
    relaxed = make_planner(kernel, hosts, cpu_threshold=0.9)
    assert relaxed.explain(SMALL, DeploymentPlan(1)).removed["cluster_threshold"] == 0


def test_scope_narrows_to_pod_cluster_or_host(kernel: Kernel) -> None:
    planner = make_planner(kernel, [host(1, 1, pod_id=10), host(2, 2, pod_id=10), host(3, 3, pod_id=20)])
    assert planner.plan(SMALL, DeploymentPlan(1, pod_id=20)).host_id == 3
    assert planner.plan(SMALL, DeploymentPlan(1, cluster_id=2)).host_id == 2
    assert planner.plan(SMALL, DeploymentPlan(1, host_id=1)).host_id == 1
    with pytest.raises(NoDestination):
        planner.plan(SMALL, DeploymentPlan(1, pod_id=99))


def test_avoid_sets_cover_hosts_clusters_pods_and_zones(kernel: Kernel) -> None:
    planner = make_planner(
        kernel,
        [
            host(1, 1, pod_id=10),
            host(2, 2, pod_id=10),
            host(3, 3, pod_id=20),
            host(4, 4, pod_id=30, zone_id=2),
        ],
    )
    assert planner.plan(SMALL, DeploymentPlan(1), Avoid(pods={10})).host_id == 3
    assert planner.plan(SMALL, DeploymentPlan(0), Avoid(zones={1})).host_id == 4
    assert planner.plan(SMALL, DeploymentPlan(1), Avoid(clusters={1, 3})).host_id == 2
    _, dropped = verdicts(planner, avoid=Avoid(hosts={1, 2, 3}))
    assert {h: f for h, (f, _) in dropped.items()} == {1: "avoid", 2: "avoid", 3: "avoid", 4: "scope"}


def test_affinity_groups(kernel: Kernel) -> None:
    planner = make_planner(kernel, [host(h) for h in (1, 2, 3)], algorithm="firstfit")
    anti = VmProfile(1, 1000, GiB, anti_affinity_hosts=frozenset({1, 2}))
    assert planner.plan(anti, DeploymentPlan(1)).host_id == 3
    together = VmProfile(1, 1000, GiB, affinity_hosts=frozenset({2}))
    assert planner.plan(together, DeploymentPlan(1)).host_id == 2
    _, dropped = verdicts(planner, together, avoid=Avoid(hosts={1}))
    assert dropped == {
        1: ("avoid", "in the avoid set of an earlier attempt"),  # avoid is the earlier filter
        3: ("affinity", "an affinity group rules this host out"),
    }
    with pytest.raises(NoDestination) as e:
        planner.plan(VmProfile(1, 1000, GiB, anti_affinity_hosts=frozenset({1, 2, 3})), DeploymentPlan(1))
    assert e.value.removed["affinity"] == 3


def test_filters_can_be_turned_off_by_configuration(kernel: Kernel) -> None:
    planner = make_planner(
        kernel, [host(1, tags=[]), host(2, up=False)], filters=["scope", "avoid", "affinity", "cpu", "memory"]
    )
    assert planner.plan(VmProfile(1, 1000, GiB, host_tags=frozenset({"x"})), DeploymentPlan(1)).host_id in (
        1,
        2,
    )
    with pytest.raises(ValueError, match="unknown planner filters nonsense"):
        make_planner(kernel, [], filters=["nonsense"])


def test_the_index_grows_and_follows_changes(kernel: Kernel) -> None:
    planner = make_planner(kernel, [host(h, h, mem_alloc_gib=31) for h in range(1, 20)])
    with pytest.raises(NoDestination):
        planner.plan(SMALL, DeploymentPlan(1))
    planner.index.allocate(7, 0, -10 * GiB)  # a VM on host 7 was released
    assert planner.plan(SMALL, DeploymentPlan(1)).host_id == 7
    planner.index.set_flags(7, up=False)
    with pytest.raises(NoDestination):
        planner.plan(SMALL, DeploymentPlan(1))
    planner.index.set_host(host(40, cluster_id=5))  # a new host, arrays grown under the bound kernel
    assert planner.plan(SMALL, DeploymentPlan(1)).host_id == 40


def test_capacity_filled_exactly_to_the_limit_still_fits(kernel: Kernel) -> None:
    planner = make_planner(
        kernel, [host(1, cpu_alloc=14_000, mem_alloc_gib=30)], cpu_threshold=1.0, mem_threshold=1.0
    )
    assert planner.plan(SMALL, DeploymentPlan(1)).host_id == 1  # 14,000 + 2,000 = 16,000; 30 + 2 = 32 GiB
    with pytest.raises(NoDestination):
        planner.plan(VmProfile(2, 1000, 2 * GiB + 1), DeploymentPlan(1))


def test_a_new_index_is_read_even_when_its_generation_matches_the_old(kernel: Kernel) -> None:
    """Issue 15's stale planner: a reload swaps in a new index whose generation counter starts where the
    old one's did; the kernel must read the new arrays, not keep its binding to the old ones."""
    planner = make_planner(kernel, [host(1), host(2)])
    assert planner.plan(SMALL, ZONE1).host_id in (1, 2)
    fresh = CapacityIndex()
    for facts in (host(1, enabled=False), host(2, up=False)):
        fresh.set_host(facts)
    assert fresh.generation == planner.index.generation  # the trap: same number, other arrays
    planner.index = fresh
    with pytest.raises(NoDestination):
        planner.plan(SMALL, ZONE1)
