"""Planner benchmark: decisions per second and latency, Cython kernel against the Python reference.

    python -m benchmarks.planner --hosts 10000 --json FILE [--decisions N] [--algorithm NAME]

A realistic inventory: zones of pods of clusters of 16-64 hosts, mixed fill (0-90% allocated), host
tags on some hosts, one disabled cluster, hosts in Alert; cluster pools and a zone pool. Requests mix
small, medium and large offerings, some with host tags, some with anti-affinity groups, some scoped to
a pod or cluster, some with an avoid set. A decision is ``Planner.plan`` (host, then pool); after
each, the choice is allocated in the index, as a deploy would, so the inventory fills as it runs.
Both kernels run the same sequence with the same seeds; the benchmark fails unless they choose the
same destination every time (the Python reference runs ``--check`` decisions; the native kernel all).

Output: ``{"hosts": N, "native": {"decisions_per_s": F, "p50_us": F, "p99_us": F}, "python": {...},
"python_fused": {...}, "native_same_decisions": {...}, "speedup": F, "speedup_vs_fused": F}``. The
reference kernel keeps a function per filter; ``python_fused`` is the fused pure-Python loop (what one
writes without Cython), the honest baseline: ``speedup_vs_fused`` compares it with the native kernel on
the same decisions (``native_same_decisions``, equal samples for the percentiles).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from dataclasses import dataclass

from mgmt.planner.index import CapacityIndex, HostFacts
from mgmt.planner.kernel import get_kernel
from mgmt.planner.model import Avoid, DeploymentPlan, Destination, NoDestination, VmProfile
from mgmt.planner.planner import Planner, PlannerSettings
from mgmt.planner.pools import Pool, PoolIndex

GiB = 2**30
TAGS = ("ssd", "gpu", "highmem", "dpdk", "sriov", "nvme")
OFFERINGS = [(1, 1000, 1 * GiB), (2, 2000, 4 * GiB), (4, 2000, 8 * GiB), (8, 2400, 32 * GiB)]


@dataclass
class Inventory:
    index: CapacityIndex
    pools: PoolIndex
    zones: list[int]
    pods: list[int]
    clusters: list[int]
    hosts: list[int]


def build(n_hosts: int, seed: int = 7) -> Inventory:
    rng = random.Random(seed)
    ix, pools = CapacityIndex(), PoolIndex()
    zones: list[int] = [1, 2]
    pods: list[int] = []
    clusters: list[int] = []
    hosts: list[int] = []
    host_id = cluster_id = pod_id = pool_id = 0
    while len(hosts) < n_hosts:
        zone = zones[len(clusters) % len(zones)]
        if len(clusters) % 4 == 0:
            pod_id += 1
            pods.append(pod_id)
        cluster_id += 1
        clusters.append(cluster_id)
        cpu_factor = rng.choice([1.0, 1.0, 2.0, 4.0])
        disabled = cluster_id == 3
        for _ in range(min(rng.randint(16, 64), n_hosts - len(hosts))):
            host_id += 1
            hosts.append(host_id)
            cores = rng.choice([16, 32, 64])
            mem = rng.choice([128, 256, 512]) * GiB
            fill = rng.uniform(0.0, 0.9)
            tags = frozenset(t for t in TAGS if rng.random() < 0.15)
            ix.set_host(
                HostFacts(
                    host_id,
                    zone,
                    pod_id,
                    cluster_id,
                    "KVM",
                    tags,
                    cores,
                    2400,
                    cores * 2400,
                    mem,
                    cpu_alloc=int(cores * 2400 * fill),
                    mem_alloc=int(mem * fill),
                    up=rng.random() > 0.02,
                    cluster_enabled=not disabled,
                ),
                cpu_factor=cpu_factor,
            )
        for _ in range(2):
            pool_id += 1
            pools.set_pool(
                Pool(
                    pool_id,
                    zone,
                    pod_id,
                    cluster_id,
                    0,
                    "CLUSTER",
                    "NetworkFilesystem",
                    100 * 2**40,
                    int(rng.uniform(0, 0.8) * 100 * 2**40),
                    frozenset({"fast"}) if pool_id % 2 else frozenset(),
                )
            )
    for zone in zones:
        pool_id += 1
        pools.set_pool(Pool(pool_id, zone, 0, 0, 0, "ZONE", "NetworkFilesystem", 500 * 2**40))
    return Inventory(ix, pools, zones, pods, clusters, hosts)


def requests(inv: Inventory, n: int, seed: int = 11) -> list[tuple[VmProfile, DeploymentPlan, Avoid]]:
    rng = random.Random(seed)
    groups = [frozenset(rng.sample(inv.hosts, min(len(inv.hosts), 8))) for _ in range(5)]
    out = []
    for _ in range(n):
        cpus, speed, mem = rng.choice(OFFERINGS)
        tags = frozenset(rng.sample(TAGS, 1)) if rng.random() < 0.2 else frozenset()
        anti = rng.choice(groups) if rng.random() < 0.1 else frozenset()
        profile = VmProfile(
            cpus,
            speed,
            mem,
            "KVM",
            tags,
            disk_bytes=20 * GiB,
            template_id=1,
            template_bytes=2 * GiB,
            account_id=rng.randint(1, 50),
            anti_affinity_hosts=anti,
        )
        r = rng.random()
        zone = rng.choice(inv.zones)
        plan = DeploymentPlan(
            zone,
            pod_id=rng.choice(inv.pods) if r < 0.1 else 0,
            cluster_id=rng.choice(inv.clusters) if 0.1 <= r < 0.15 else 0,
        )
        avoid = Avoid(hosts=set(rng.sample(inv.hosts, 3))) if rng.random() < 0.1 else Avoid()
        out.append((profile, plan, avoid))
    return out


def run(kernel: str, n_hosts: int, n: int, algorithm: str) -> tuple[list[Destination | None], list[float]]:
    inv = build(n_hosts)
    planner = Planner(
        inv.index,
        inv.pools,
        PlannerSettings(algorithm=algorithm),
        kernel=get_kernel(kernel),
        rng=random.Random(5),
    )
    chosen: list[Destination | None] = []
    times: list[float] = []
    gc.collect()
    gc.disable()
    try:
        for profile, plan, avoid in requests(inv, n):
            start = time.perf_counter()
            try:
                dest: Destination | None = planner.plan(profile, plan, avoid)
            except NoDestination:
                dest = None
            times.append(time.perf_counter() - start)
            chosen.append(dest)
            if dest is not None:  # as a deploy would: the index learns the allocation
                inv.index.allocate(dest.host_id, profile.cpu_mhz, profile.memory_bytes)
                inv.pools.allocate(dest.pool_id, profile.disk_bytes)
    finally:
        gc.enable()
    return chosen, times


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1e6

    return {
        "decisions": len(times),
        "decisions_per_s": len(times) / sum(times),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "max_us": ordered[-1] * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.planner")
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--decisions", type=int, default=20000, help="native kernel decisions")
    parser.add_argument("--check", type=int, default=300, help="decisions the Python reference makes")
    parser.add_argument("--algorithm", default="random")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    check = min(args.check, args.decisions)
    native, native_times = run("native", args.hosts, args.decisions, args.algorithm)
    python, python_times = run("python", args.hosts, check, args.algorithm)
    fused, fused_times = run("python_fused", args.hosts, check, args.algorithm)
    for name, chosen in (("python", python), ("python_fused", fused)):
        if native[:check] != chosen:
            first = next(k for k, (a, b) in enumerate(zip(native, chosen, strict=False)) if a != b)
            print(f"MISMATCH at decision {first}: native {native[first]} {name} {chosen[first]}",
                  file=sys.stderr)
            return 1
    result = {
        "hosts": args.hosts,
        "algorithm": args.algorithm,
        "identical_decisions": check,
        "placed": sum(d is not None for d in native),
        "native": summary(native_times),
        "python": summary(python_times),
        "python_fused": summary(fused_times),
        # the native kernel on exactly the decisions the Python kernels made: equal samples for p99
        "native_same_decisions": summary(native_times[:check]),
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
    }
    result["speedup"] = result["native"]["decisions_per_s"] / result["python"]["decisions_per_s"]
    # the honest ratio: against the fused pure-Python kernel, on the same decisions
    same = result["native_same_decisions"]["decisions_per_s"]
    result["speedup_vs_fused"] = same / result["python_fused"]["decisions_per_s"]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
