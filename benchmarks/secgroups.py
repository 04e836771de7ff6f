"""Security rules applied on a host: how fast nftables takes a VM's rules, with 1,000 of them on the host.

    python -m benchmarks.secgroups [--rules 1000] [--vms 100] [--json FILE]

In a network namespace made here (standing for a host; needs root and nft): ``--vms`` NICs, each given
``--rules / --vms`` ingress rules (TCP ports from a /24 each) with ``agent.kvm.secgroups.apply`` (one
``nft -f`` transaction per NIC, as at a VM's start), then every NIC's rules replaced (as after a rule
change), then one NIC given all ``--rules`` at once. Reports rules per second for each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import uuid
from typing import Any

from agent.kvm import secgroups
from protocol.messages import SecurityRuleTO, SecurityTO


def rules(n: int, offset: int = 0) -> SecurityTO:
    return SecurityTO(ingress=tuple(
        SecurityRuleTO(protocol="tcp", start_port=1000 + i + offset, end_port=1000 + i + offset,
                       cidrs=(f"10.{(i // 250) % 250}.{i % 250}.0/24",))
        for i in range(n)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    ns = f"cumulo-bench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        per_vm = max(1, args.rules // args.vms)
        nics = [(f"cu{i:012x}", f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}", f"172.16.{i >> 8}.{i & 255}")
                for i in range(1, args.vms + 1)]
        result: dict[str, Any] = {"vms": args.vms, "rules": per_vm * args.vms}
        started = time.perf_counter()
        for port, mac, address in nics:
            secgroups.apply(port, mac, address, rules(per_vm), netns=ns)
        took = time.perf_counter() - started
        result["start_s"] = round(took, 3)
        result["start_rules_per_s"] = round(per_vm * args.vms / took, 1)
        started = time.perf_counter()
        for port, mac, address in nics:
            secgroups.apply(port, mac, address, rules(per_vm, 1), netns=ns)
        took = time.perf_counter() - started
        result["replace_s"] = round(took, 3)
        result["replace_rules_per_s"] = round(per_vm * args.vms / took, 1)
        started = time.perf_counter()
        secgroups.apply("cubig", "02:00:00:01:00:01", "172.17.0.1", rules(args.rules), netns=ns)
        took = time.perf_counter() - started
        result["one_vm_all_rules_s"] = round(took, 3)
        result["one_vm_rules_per_s"] = round(args.rules / took, 1)
        return result
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.secgroups",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
