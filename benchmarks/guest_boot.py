"""Seconds from the deployVirtualMachine call to the guest's marker line on its console, for real guests.

``python -m benchmarks.guest_boot [--runs N] [--json FILE]`` brings up the management server and one
libvirt agent on an embedded QEMU root (the integration test's harness, ``tests/kvm/harness.py``), then
deploys the tiny busybox guest ``--runs`` times with the domain type forced to ``kvm`` and then to
``qemu`` (TCG), each time timing:

- ``api``: the deploy call through ``cs`` until its job reports the VM Running (planner, template copy on
  the first run, overlay, domain started);
- ``network``: until ``getVirtualMachineConsoleLog`` shows the line the guest prints once it applied
  its config drive (host name, static address on its NIC, user data), polled every 50 ms;
- ``marker``: until it shows the guest's marker line (printed right after).

A guest that prints no marker within ``--timeout`` seconds counts as failed (with KVM this happens on
machines whose /dev/kvm cannot run guests); the remaining runs of that domain type are skipped then.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from functools import partial
from typing import Any

from agent.configdrive import SUMMARY
from tests.kvm.harness import KvmCloud, guest_template, missing_tools, short_workdir, wait_for


def _applied(cloud: KvmCloud, vm_id: str) -> bool:
    return SUMMARY in cloud.console(vm_id)


def measure(domain_type: str, runs: int, timeout: float) -> dict[str, Any]:
    cloud = KvmCloud(short_workdir(), guest_template(), domain_types=(domain_type,))
    results: dict[str, Any] = {"domain_type": domain_type, "runs": [], "failed": ""}
    try:
        cloud.start()
        for i in range(runs):
            t0 = time.perf_counter()
            vm = cloud.deploy(f"boot-{domain_type}-{i}")
            api = time.perf_counter() - t0
            try:
                wait_for("the config drive applied", partial(_applied, cloud, str(vm["id"])), timeout, 0.05)
                network = time.perf_counter() - t0
                cloud.wait_for_marker(vm, boot=1, timeout=timeout)
            except TimeoutError:
                tail = cloud.console(vm["id"], lines=5).strip().splitlines()
                results["failed"] = (
                    f"no marker within {timeout:g} s; last console line: "
                    f"{tail[-1] if tail else '(nothing)'!r}"
                )
                cloud.cs.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)
                break
            marker = time.perf_counter() - t0
            results["runs"].append(
                {"api": round(api, 3), "network": round(network, 3), "marker": round(marker, 3)}
            )
            print(f"{domain_type}: run {i + 1}: deploy job {api:.2f} s, network configured {network:.2f} s, "
                  f"marker {marker:.2f} s", flush=True)
            cloud.cs.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)
    finally:
        cloud.close()
        shutil.rmtree(cloud.work, ignore_errors=True)
    networks = [r["network"] for r in results["runs"]]
    if networks:
        results["network_median"] = round(statistics.median(networks), 3)
    markers = [r["marker"] for r in results["runs"]]
    if markers:
        results["marker_median"] = round(statistics.median(markers), 3)
        results["marker_min"] = min(markers)
        results["marker_max"] = max(markers)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.guest_boot", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=5, help="deploys per domain type (default 5)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a marker")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    missing = missing_tools()
    if missing:
        print(f"real guests need {', '.join(missing)} (make test installs them)", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "kvm": measure("kvm", args.runs, args.timeout),
        "tcg": measure("qemu", args.runs, args.timeout),
        "target_kvm_marker_seconds": 3.0,
    }
    for name in ("kvm", "tcg"):
        r = report[name]
        if r["runs"]:
            print(
                f"{name}: marker median {r['marker_median']:.2f} s (min {r['marker_min']:.2f}, "
                f"max {r['marker_max']:.2f}) over {len(r['runs'])} deploys"
            )
        if r["failed"]:
            print(f"{name}: {r['failed']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
