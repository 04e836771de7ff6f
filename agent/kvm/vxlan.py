"""Guest network plumbing on a KVM host: one Linux bridge per isolated network, a VXLAN device under it.

This is what CloudStack's KVM agent does with its VXLAN isolation method (802.1Q devices are not
available on the machines Cumulo is built on; VXLAN and bridges are). For VNI ``n``:

- ``vxlan<n>``: a VXLAN device with id ``n``, UDP port 4789, over the host's underlay device, flooding
  to the multicast group ``239.<n >> 16 & 255>.<n >> 8 & 255>.<n & 255>`` (so hosts find each other
  without a controller) or, when peers are named, to those addresses by static forwarding entries;
- ``brvx-<n>``: a bridge with the VXLAN device as a port; guests' taps join it (libvirt's
  ``<interface type='bridge'>``).

``implement`` is idempotent (a host that restarts finds its bridges and keeps them) and ``shutdown``
removes both devices once no guest port is left on the bridge. Everything goes through iproute2 (``ip``,
``bridge``), optionally inside a network namespace (``netns``), which is how the tests run it.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from typing import Any

VNI_MAX = (1 << 24) - 1
PORT = 4789
_DEVICE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


class PlumbingError(RuntimeError):
    """A device could not be made or removed; the message has iproute2's reason."""


@dataclass(frozen=True)
class GuestNetwork:
    """The devices of one isolated network on this host."""

    vni: int
    bridge: str
    vxlan: str


def devices(vni: int) -> GuestNetwork:
    if not 1 <= vni <= VNI_MAX:
        raise PlumbingError(f"VNI {vni} is out of range (1 to {VNI_MAX})")
    return GuestNetwork(vni, f"brvx-{vni}", f"vxlan{vni}")


def multicast_group(vni: int) -> str:
    return f"239.{vni >> 16 & 255}.{vni >> 8 & 255}.{vni & 255}"


def _run(netns: str, *args: str, tool: str = "ip") -> str:
    command = [tool, *(["-n", netns] if netns else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PlumbingError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _links(netns: str) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in json.loads(_run(netns, "-j", "-d", "link", "show") or "[]")}


def _flood_entries(netns: str, vxlan: str) -> set[str]:
    entries = json.loads(_run(netns, "-j", "fdb", "show", "dev", vxlan, tool="bridge") or "[]")
    return {str(e.get("dst")) for e in entries if e.get("mac") == "00:00:00:00:00:00"}


def implement(vni: int, *, underlay: str, local_ip: str, peers: tuple[str, ...] = (), mtu: int = 1450,
              netns: str = "") -> GuestNetwork:
    """Make (or find) the network's bridge and VXLAN device, both up; the devices."""
    net = devices(vni)
    if not _DEVICE.match(underlay):
        raise PlumbingError(f"not a device name: {underlay!r}")
    links = _links(netns)
    if underlay not in links:
        raise PlumbingError(f"no underlay device {underlay} on this host")
    if net.vxlan not in links:
        args = ["link", "add", net.vxlan, "type", "vxlan", "id", str(vni), "dstport", str(PORT),
                "local", local_ip, "dev", underlay, "ttl", "10"]
        if not peers:
            args += ["group", multicast_group(vni)]
        _run(netns, *args)
    else:
        found = links[net.vxlan].get("linkinfo")
        info: dict[str, Any] = found if isinstance(found, dict) else {}
        data = info.get("info_data")
        data = data if isinstance(data, dict) else {}
        if info.get("info_kind") != "vxlan" or data.get("id") != vni:
            raise PlumbingError(f"{net.vxlan} exists but is not the VXLAN device of VNI {vni}")
    for peer in peers:  # unicast flooding: one all-zero forwarding entry per peer host
        if peer not in _flood_entries(netns, net.vxlan):
            _run(netns, "fdb", "append", "00:00:00:00:00:00", "dev", net.vxlan, "dst", peer, tool="bridge")
    if net.bridge not in links:
        _run(netns, "link", "add", net.bridge, "type", "bridge")
    _run(netns, "link", "set", net.vxlan, "mtu", str(mtu), "master", net.bridge, "up")
    _run(netns, "link", "set", net.bridge, "mtu", str(mtu), "up")
    return net


def ports(vni: int, *, netns: str = "") -> list[str]:
    """The devices on the network's bridge other than its VXLAN device (guests' taps)."""
    net = devices(vni)
    return sorted(name for name, link in _links(netns).items()
                  if link.get("master") == net.bridge and name != net.vxlan)


def shutdown(vni: int, *, netns: str = "") -> bool:
    """Remove the network's devices when no guest is on its bridge: whether they are gone."""
    net = devices(vni)
    if ports(vni, netns=netns):
        return False
    links = _links(netns)
    for name in (net.bridge, net.vxlan):
        if name in links:
            _run(netns, "link", "del", name)
    return True
