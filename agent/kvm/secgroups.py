"""Security groups on a KVM host, with nftables: what a VM's NIC lets through, and that it sends only as
itself.

Two tables, made once and shared by every VM on the host:

- ``bridge cumulo``: anti-spoofing, per bridge port (the VM's tap): frames from the port must carry the
  NIC's MAC, its IPv4 packets the NIC's address, its ARP the NIC's address; anything else is dropped.
  A map from port name to the port's chain (``iifname vmap @spoof``).
- ``inet cumulo``: the rules, stateful, per VM address (bridged IPv4 reaches the inet hooks through
  ``br_netfilter``: ``net.bridge.bridge-nf-call-iptables=1``, set here; nftables has no match on the
  bridge port in the inet family, and conntrack is not available in the bridge family). Traffic to the
  address goes through its ``to-`` chain (replies to what it sent, then its ingress rules, then drop),
  traffic from it through its ``from-`` chain (everything, or with egress rules only replies and what
  they allow). Maps from address to chain (``ip daddr vmap @to_vm``, ``ip saddr vmap @from_vm``).

``apply`` replaces one NIC's chains and map entries in one ``nft -f`` transaction (all or nothing);
``remove`` takes them away. Everything runs through the ``nft`` tool, optionally in a network namespace.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess

from protocol.messages import SecurityRuleTO, SecurityTO

_PORT = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
BASE = """\
table inet cumulo {
  map to_vm { type ipv4_addr : verdict; }
  map from_vm { type ipv4_addr : verdict; }
  chain forward {
    type filter hook forward priority 0; policy accept;
    ip daddr vmap @to_vm
    ip saddr vmap @from_vm
  }
}
table bridge cumulo {
  map spoof { type ifname : verdict; }
  chain forward {
    type filter hook forward priority 0; policy accept;
    iifname vmap @spoof
  }
}
"""


class FirewallError(RuntimeError):
    """nft refused the rules (the message has its reason) or the NIC's facts are not valid."""


def _run(netns: str, *args: str, script: str | None = None) -> str:
    command = [*(["ip", "netns", "exec", netns] if netns else []), *args]
    done = subprocess.run(command, input=script, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise FirewallError(f"{' '.join(args[:2])}: {done.stderr.strip()[:2000] or done.returncode}")
    return done.stdout


def _names(address: str) -> str:
    return address.replace(".", "_")


def _match(rule: SecurityRuleTO, direction: str) -> str:
    """The nft expression of one rule (without its verdict)."""
    try:
        cidrs = ", ".join(str(ipaddress.IPv4Network(c, strict=False)) for c in rule.cidrs)
    except ValueError:
        raise FirewallError(f"not IPv4 CIDRs: {rule.cidrs[:4]!r}") from None
    if not cidrs:
        raise FirewallError("a rule without addresses")
    where = f"ip {'saddr' if direction == 'ingress' else 'daddr'} {{ {cidrs} }}"
    if rule.protocol in ("tcp", "udp"):
        ports = (str(rule.start_port) if rule.start_port == rule.end_port
                 else f"{rule.start_port}-{rule.end_port}")
        return f"{where} {rule.protocol} dport {ports}"
    if rule.protocol == "icmp":
        match = f"{where} meta l4proto icmp"
        if rule.icmp_type >= 0:
            match += f" icmp type {rule.icmp_type}"
            if rule.icmp_code >= 0:
                match += f" icmp code {rule.icmp_code}"
        return match
    return where  # all


def script(port: str, mac: str, address: str, security: SecurityTO, *, present: bool = False) -> str:
    """The ``nft -f`` script that gives one NIC its rules (``present``: it had rules here before)."""
    if not _PORT.match(port) or not _MAC.match(mac.lower()):
        raise FirewallError(f"not a port and MAC: {port!r} {mac!r}")
    try:
        ip = str(ipaddress.IPv4Address(address))
    except ValueError:
        raise FirewallError(f"not an IPv4 address: {address!r}") from None
    key = _names(ip)
    lines = [BASE]
    if present:
        lines += remove_script(port, ip).splitlines()
    lines += [
        f"add chain bridge cumulo spoof-{port}",
        f"add rule bridge cumulo spoof-{port} ether saddr != {mac.lower()} drop",
        f"add rule bridge cumulo spoof-{port} ether type ip ip saddr != {ip} drop",
        f"add rule bridge cumulo spoof-{port} ether type arp arp saddr ip != {ip} drop",
        f"add element bridge cumulo spoof {{ \"{port}\" : jump spoof-{port} }}",
        f"add chain inet cumulo to-{key}",
        f"add rule inet cumulo to-{key} ct state established,related accept",
        *(f"add rule inet cumulo to-{key} {_match(r, 'ingress')} accept" for r in security.ingress),
        f"add rule inet cumulo to-{key} drop",
        f"add chain inet cumulo from-{key}",
    ]
    if security.egress_filtered:
        lines += [
            f"add rule inet cumulo from-{key} ct state established,related accept",
            *(f"add rule inet cumulo from-{key} {_match(r, 'egress')} accept" for r in security.egress),
            f"add rule inet cumulo from-{key} drop",
        ]
    else:
        lines.append(f"add rule inet cumulo from-{key} accept")
    lines += [
        f"add element inet cumulo to_vm {{ {ip} : jump to-{key} }}",
        f"add element inet cumulo from_vm {{ {ip} : jump from-{key} }}",
    ]
    return "\n".join(lines) + "\n"


def remove_script(port: str, address: str) -> str:
    key = _names(address)
    return "\n".join([
        f"delete element bridge cumulo spoof {{ \"{port}\" }}",
        f"delete element inet cumulo to_vm {{ {address} }}",
        f"delete element inet cumulo from_vm {{ {address} }}",
        f"delete chain bridge cumulo spoof-{port}",
        f"delete chain inet cumulo to-{key}",
        f"delete chain inet cumulo from-{key}",
    ]) + "\n"


def _present(netns: str, address: str) -> bool:
    try:
        listed = json.loads(_run(netns, "nft", "-j", "list", "map", "inet", "cumulo", "to_vm"))
    except FirewallError:
        return False  # no table yet
    for item in listed.get("nftables", []):
        for element in item.get("map", {}).get("elem", []) or []:
            if isinstance(element, list) and element and element[0] == address:
                return True
    return False


def apply(port: str, mac: str, address: str, security: SecurityTO, *, netns: str = "") -> int:
    """Give the NIC on bridge port ``port`` its rules (replacing what it had), in one transaction; how
    many rules the host now has for it."""
    _run(netns, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1")
    text = script(port, mac, address, security, present=_present(netns, address))
    _run(netns, "nft", "-f", "-", script=text)
    return len(security.ingress) + len(security.egress)


def remove(port: str, address: str, *, netns: str = "") -> bool:
    """Take the NIC's rules away (its VM left the host); whether it had any."""
    if not _present(netns, address):
        return False
    _run(netns, "nft", "-f", "-", script=remove_script(port, address))
    return True
