"""Security groups on a host, for real: a bridge in a network namespace made here, guests as namespaces
of their own on its ports, nftables rules per NIC; pings show what gets through."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from agent.kvm import secgroups
from protocol.messages import SecurityRuleTO, SecurityTO

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None,
    reason="needs root, iproute2 and nftables (network namespaces)")

MACS = {"a": "02:00:00:00:0a:01", "b": "02:00:00:00:0a:02", "c": "02:00:00:00:0a:03"}
ADDRESSES = {"a": "10.7.0.1", "b": "10.7.0.2", "c": "10.7.0.3"}


def sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


@pytest.fixture
def host() -> Iterator[tuple[str, dict[str, str]]]:
    """A host namespace with a bridge and three guests (namespaces a, b, c), each on its own port."""
    tag = uuid.uuid4().hex[:6]
    h = f"cumulo-h-{tag}"
    guests = {name: f"cumulo-{name}-{tag}" for name in ADDRESSES}
    try:
        assert sh("ip", "netns", "add", h).returncode == 0
        sh("ip", "-n", h, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", h, "link", "set", "br0", "up")
        for name, ns in guests.items():
            assert sh("ip", "netns", "add", ns).returncode == 0
            port = f"p{name}{tag}"
            assert sh("ip", "-n", h, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                      "netns", ns).returncode == 0
            sh("ip", "-n", h, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", ns, "link", "set", "eth0", "address", MACS[name])
            sh("ip", "-n", ns, "addr", "add", f"{ADDRESSES[name]}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        yield h, guests
    finally:
        for ns in (h, *guests.values()):
            sh("ip", "netns", "del", ns)


def ping(ns: str, address: str) -> bool:
    """Whether any of three echo requests is answered (one lost to a slow first ARP is not a verdict)."""
    return sh("ip", "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", address).returncode == 0


def port(host: str, name: str) -> str:
    return f"p{name}{host.rsplit('-', 1)[1]}"


def test_ingress_rules_replies_anti_spoofing_and_removal(host: tuple[str, dict[str, str]]) -> None:
    h, g = host
    assert ping(g["a"], ADDRESSES["b"])  # no rules: a plain bridge
    nothing_in = SecurityTO()
    for name in ("a", "b"):
        assert secgroups.apply(port(h, name), MACS[name], ADDRESSES[name], nothing_in, netns=h) == 0
    assert not ping(g["a"], ADDRESSES["b"])  # nothing gets in to b
    assert not ping(g["b"], ADDRESSES["a"])  # nor to a

    icmp_from_a = SecurityTO(ingress=(SecurityRuleTO(protocol="icmp", cidrs=(f"{ADDRESSES['a']}/32",)),))
    secgroups.apply(port(h, "b"), MACS["b"], ADDRESSES["b"], icmp_from_a, netns=h)  # replaces b's rules
    assert ping(g["a"], ADDRESSES["b"])  # allowed in to b; the reply gets back in to a (established)
    assert not ping(g["c"], ADDRESSES["b"])  # c is not in the rule

    # a spoofs c's address: its port drops it even though b would let c's ICMP in
    secgroups.apply(port(h, "b"), MACS["b"], ADDRESSES["b"], SecurityTO(ingress=(
        SecurityRuleTO(protocol="icmp", cidrs=("10.7.0.0/24",)),)), netns=h)
    assert ping(g["a"], ADDRESSES["b"])
    sh("ip", "-n", g["a"], "addr", "del", f"{ADDRESSES['a']}/24", "dev", "eth0")
    sh("ip", "-n", g["a"], "addr", "add", "10.7.0.9/24", "dev", "eth0")
    assert not ping(g["a"], ADDRESSES["b"])

    assert secgroups.remove(port(h, "b"), ADDRESSES["b"], netns=h) is True
    assert secgroups.remove(port(h, "b"), ADDRESSES["b"], netns=h) is False
    assert ping(g["c"], ADDRESSES["b"])  # b unfiltered again


def test_egress_rules_filter_what_leaves(host: tuple[str, dict[str, str]]) -> None:
    h, g = host
    only_to_c = SecurityTO(egress=(SecurityRuleTO(protocol="icmp", cidrs=(f"{ADDRESSES['c']}/32",)),),
                           egress_filtered=True)
    secgroups.apply(port(h, "b"), MACS["b"], ADDRESSES["b"], only_to_c, netns=h)
    assert ping(g["b"], ADDRESSES["c"])  # allowed out; the reply is established traffic
    assert not ping(g["b"], ADDRESSES["a"])  # not allowed out


def test_bad_facts_are_refused_before_nft_runs() -> None:
    for args in (("p 1", MACS["a"], "10.0.0.1"), ("p1", "zz:00:00:00:00:01", "10.0.0.1"),
                 ("p1", MACS["a"], "10.0.0.300"), ("p1;drop", MACS["a"], "10.0.0.1")):
        with pytest.raises(secgroups.FirewallError):
            secgroups.script(*args, SecurityTO())
    for cidrs in (("10.0.0.300/8",), ("; flush ruleset",), ()):  # from a frame: never into the script
        with pytest.raises(secgroups.FirewallError):
            secgroups.script("p1", MACS["a"], "10.0.0.1", SecurityTO(ingress=(
                SecurityRuleTO(protocol="tcp", start_port=22, end_port=22, cidrs=cidrs),)))
