"""Guest network plumbing for real: two hosts (network namespaces made here, joined by a veth pair as their
underlay), a bridge and a VXLAN device per network on each, traffic across them on the same VNI only."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from agent.kvm import vxlan

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2 (network namespaces)")


def sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


@pytest.fixture
def hosts() -> Iterator[tuple[str, str]]:
    """Two namespaces, a (192.168.77.1) and b (192.168.77.2), on one veth pair."""
    tag = uuid.uuid4().hex[:6]
    a, b = f"cumulo-a-{tag}", f"cumulo-b-{tag}"
    try:
        for ns in (a, b):
            assert sh("ip", "netns", "add", ns).returncode == 0
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        assert sh("ip", "link", "add", f"u{tag}a", "netns", a, "type", "veth", "peer", "name", f"u{tag}b",
                  "netns", b).returncode == 0
        for ns, dev, address in ((a, f"u{tag}a", "192.168.77.1/24"), (b, f"u{tag}b", "192.168.77.2/24")):
            sh("ip", "-n", ns, "addr", "add", address, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield a, b
    finally:
        for ns in (a, b):
            sh("ip", "netns", "del", ns)


def ping(ns: str, address: str) -> bool:
    """Whether any of three echo requests is answered (one lost to a slow first ARP is not a verdict)."""
    return sh("ip", "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "3", address).returncode == 0


def guest(host: str, bridge: str, name: str, address: str, made: list[str]) -> str:
    """A guest of ``host``: a namespace of its own, its veth's other end a port of ``bridge``."""
    ns = f"{host}-{name}"
    assert sh("ip", "netns", "add", ns).returncode == 0
    made.append(ns)
    port = f"{name}{host.rsplit('-', 1)[1]}"
    assert sh("ip", "-n", host, "link", "add", port, "type", "veth", "peer", "name", "eth0",
              "netns", ns).returncode == 0
    assert sh("ip", "-n", host, "link", "set", port, "master", bridge, "up").returncode == 0
    sh("ip", "-n", ns, "addr", "add", address, "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    return ns


@pytest.mark.parametrize("mode", ["multicast", "peers"])
def test_two_hosts_reach_each_other_on_one_vni_and_not_on_another(hosts: tuple[str, str], mode: str) -> None:
    a, b = hosts
    tag = a.rsplit("-", 1)[1]
    peers_of = {a: ("192.168.77.2",), b: ("192.168.77.1",)} if mode == "peers" else {a: (), b: ()}
    local = {a: "192.168.77.1", b: "192.168.77.2"}
    underlay = {a: f"u{tag}a", b: f"u{tag}b"}
    for ns in (a, b):
        net = vxlan.implement(4242, underlay=underlay[ns], local_ip=local[ns], peers=peers_of[ns], netns=ns)
        assert net == vxlan.GuestNetwork(4242, "brvx-4242", "vxlan4242")
        again = vxlan.implement(4242, underlay=underlay[ns], local_ip=local[ns], peers=peers_of[ns], netns=ns)
        assert again == net  # idempotent: a restarted agent finds its devices
    other = vxlan.implement(4243, underlay=underlay[b], local_ip=local[b], peers=peers_of[b], netns=b)
    made: list[str] = []
    try:
        one = guest(a, "brvx-4242", "g1", "10.42.0.1/24", made)
        guest(b, "brvx-4242", "g2", "10.42.0.2/24", made)
        guest(b, other.bridge, "g3", "10.42.0.3/24", made)
        assert ping(one, "10.42.0.2")  # a guest on the other host, same VNI: through the underlay
        assert not ping(one, "10.42.0.3")  # the same subnet on VNI 4243: another network, unreachable
    finally:
        for ns in made:
            sh("ip", "netns", "del", ns)


def test_shutdown_waits_for_the_last_guest_port(hosts: tuple[str, str]) -> None:
    a, _b = hosts
    tag = a.rsplit("-", 1)[1]
    net = vxlan.implement(77, underlay=f"u{tag}a", local_ip="192.168.77.1", netns=a)
    made = sh("ip", "-n", a, "link", "add", "guest0", "type", "veth", "peer", "name", "guest0p")
    assert made.returncode == 0
    assert sh("ip", "-n", a, "link", "set", "guest0", "master", net.bridge).returncode == 0
    assert vxlan.ports(77, netns=a) == ["guest0"]
    assert vxlan.shutdown(77, netns=a) is False  # a guest is still on it
    sh("ip", "-n", a, "link", "del", "guest0")
    assert vxlan.shutdown(77, netns=a) is True
    links = sh("ip", "-n", a, "link", "show").stdout
    assert "brvx-77" not in links and "vxlan77" not in links
    assert vxlan.shutdown(77, netns=a) is True  # nothing left: still fine


def test_bad_input_is_refused_before_anything_is_made(hosts: tuple[str, str]) -> None:
    a, _b = hosts
    for vni in (0, 1 << 24):
        with pytest.raises(vxlan.PlumbingError):
            vxlan.implement(vni, underlay="lo", local_ip="127.0.0.1", netns=a)
    for underlay in ("no-such-dev", "bad name; rm", "x" * 16):
        with pytest.raises(vxlan.PlumbingError):
            vxlan.implement(5, underlay=underlay, local_ip="127.0.0.1", netns=a)
    assert "vxlan5" not in sh("ip", "-n", a, "link", "show").stdout
    assert sh("ip", "-n", a, "link", "add", "vxlan9", "type", "bridge").returncode == 0  # a stranger's device
    with pytest.raises(vxlan.PlumbingError, match="not the VXLAN device of VNI 9"):
        vxlan.implement(9, underlay="lo", local_ip="127.0.0.1", netns=a)
