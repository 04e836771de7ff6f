"""The Cython kernel and the Python reference give the same answer, bit for bit, on random inventories
and requests: the same best host, every host's reason, every candidate's score, every filter's count."""

from __future__ import annotations

import random
from array import array

from hypothesis import given, settings, target
from hypothesis import strategies as st

from mgmt.planner.algorithms import ALGORITHMS
from mgmt.planner.index import CapacityIndex, HostFacts
from mgmt.planner.kernel import get_kernel
from mgmt.planner.model import Avoid, DeploymentPlan, VmProfile
from mgmt.planner.planner import Planner, PlannerSettings

GiB = 2**30
TAGS = ["ssd", "gpu", "fast"]

# An inventory from a seed and a size (drawn by hypothesis; built with random, which is much faster
# than drawing every host's fields): mixed fills past 100%, tags, other hypervisors, hosts down or
# disabled, a disabled cluster.
inventory_st = st.tuples(st.integers(0, 2**32), st.integers(0, 120))


def random_hosts(seed: int, n: int) -> list[tuple]:  # type: ignore[type-arg]
    rng = random.Random(seed)
    return [
        (
            rng.randint(1, 6),
            rng.randint(1, 3),
            rng.choice([1, 1, 1, 2]),
            rng.choice([4, 8, 16, 64]),
            rng.choice([1000, 2000, 2400]),
            rng.choice([8, 32, 256]),
            rng.uniform(0, 1.1),
            rng.uniform(0, 1.1),
            frozenset(t for t in TAGS if rng.random() < 0.3),
            rng.choice(["KVM", "KVM", "XenServer"]),
            rng.choice(["ok", "ok", "ok", "ok", "down", "disabled"]),
        )
        for _ in range(n)
    ]


request_st = st.fixed_dictionaries(
    {
        "cpus": st.one_of(st.integers(1, 4), st.integers(1, 16)),
        "speed": st.sampled_from([500, 1000, 1000, 2000, 3000]),
        "mem_gib": st.one_of(st.integers(1, 8), st.integers(1, 64)),
        "tags": st.one_of(
            st.just(frozenset()), st.frozensets(st.sampled_from([*TAGS, "unknown"]), max_size=2)
        ),
        "hypervisor": st.sampled_from(["", "", "KVM", "KVM", "XenServer", "Hyperv"]),
        "zone": st.sampled_from([0, 0, 1, 2]),
        "pod": st.sampled_from([0, 0, 0, 1, 2]),
        "cluster": st.sampled_from([0, 0, 0, 0, 3]),
        "avoid_hosts": st.frozensets(st.integers(1, 60), max_size=5),
        "avoid_clusters": st.frozensets(st.integers(1, 6), max_size=2),
        "anti": st.frozensets(st.integers(1, 60), max_size=5),
        # Host affinity narrows the candidates to a few hosts: only now and then, so scores get compared.
        "affinity": st.one_of(
            st.just(frozenset()),
            st.just(frozenset()),
            st.just(frozenset()),
            st.frozensets(st.integers(1, 60), max_size=3),
        ),
        "algorithm": st.sampled_from(sorted(ALGORITHMS)),
        "order": st.sampled_from(["CPU", "RAM", "COMBINED"]),
        "threshold": st.sampled_from([0.85, 1.0, 1.5]),
        "seed": st.integers(0, 2**64 - 1),
        "account": st.dictionaries(st.integers(1, 60), st.integers(1, 5), max_size=6),
    }
)


def build(hosts: list[tuple], factors: dict[int, tuple[float, float]]) -> CapacityIndex:  # type: ignore[type-arg]
    ix = CapacityIndex(capacity=8)
    for n, (cluster, pod, zone, cores, speed, gib, cpu_fill, mem_fill, tags, hyp, state) in enumerate(
        hosts, start=1
    ):
        ix.set_host(
            HostFacts(
                n,
                zone,
                pod * 10 + zone,
                cluster * 100 + pod * 10 + zone,
                hyp,
                tags,
                cores,
                speed,
                cores * speed,
                gib * GiB,
                int(cores * speed * cpu_fill),
                int(gib * GiB * mem_fill),
                state != "down",
                state != "disabled",
                cluster != 5,
            ),
            cpu_factor=factors.get(cluster, (1.0, 1.0))[0],
            mem_factor=factors.get(cluster, (1.0, 1.0))[1],
        )
    return ix


@settings(max_examples=400)
@given(
    inventory_st,
    request_st,
    st.dictionaries(
        st.integers(1, 6), st.tuples(st.sampled_from([1.0, 1.5, 4.0]), st.sampled_from([1.0, 2.0]))
    ),
)
def test_both_kernels_decide_identically(inventory: tuple[int, int], r: dict, factors: dict) -> None:  # type: ignore[type-arg]
    hosts = random_hosts(*inventory)
    results = []
    for name in ("python", "python_fused", "native"):
        ix = build(hosts, factors)
        planner = Planner(
            ix,
            settings=PlannerSettings(
                algorithm=r["algorithm"],
                cluster_order=r["order"],
                cpu_threshold=r["threshold"],
                mem_threshold=r["threshold"],
            ),
            kernel=get_kernel(name),
            rng=random.Random(r["seed"]),
        )
        profile = VmProfile(
            r["cpus"],
            r["speed"],
            r["mem_gib"] * GiB,
            r["hypervisor"],
            r["tags"],
            affinity_hosts=r["affinity"],
            anti_affinity_hosts=r["anti"],
        )
        zone = r["zone"]
        plan = DeploymentPlan(
            zone,
            pod_id=r["pod"] * 10 + zone if r["pod"] and zone else 0,
            cluster_id=r["cluster"] * 100 + 10 + zone if r["cluster"] and zone else 0,
        )
        q = planner.query(
            profile,
            plan,
            Avoid(
                hosts=set(r["avoid_hosts"]),
                clusters={
                    c * 100 + p * 10 + z for c in r["avoid_clusters"] for p in (1, 2, 3) for z in (1, 2)
                },
            ),
            r["account"],
        )
        counts = array("q", bytes(8 * 16))
        best = planner.choose_host(q, counts)
        reasons = bytes(planner._reasons[: ix.n])
        scores = [planner._scores[i] for i in range(ix.n) if reasons[i] == 0]
        results.append((best, reasons, scores, list(counts)))
    target(float(len(results[0][2])))  # steer towards many candidates: more scores to compare
    assert results[0] == results[1] == results[2]
