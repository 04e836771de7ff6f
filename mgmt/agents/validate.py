"""Bounds on everything an agent says about itself, checked where it enters (before the database or the
planner sees it).

The protocol layer checks types; this checks that the values are ones a real host can have and the
server can store and index: lengths of names, counts of tags and VMs, integers inside the ranges the
database columns and the planner's 64-bit arrays hold, addresses that parse. A startup or ping that
fails closes its own connection with the reason logged; nothing else is affected.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Mapping

from protocol.messages import PingRoutingCommand, PowerState, StartupRoutingCommand, StartupStorageCommand

MAX_NAME = 255  # guid, host name, zone/pod/cluster names, instance names
MAX_VERSION = 64
MAX_TAGS_PER_HOST = 32
MAX_TAG = 64
MAX_MGMT_SERVERS = 16
MAX_VMS_PER_HOST = 10_000  # names in one power report
MAX_CPUS = 65_536
MAX_CPU_MHZ = 1_000_000
MAX_MEMORY = 2**50  # 1 PiB
MAX_POOL_BYTES = 2**60  # 1 EiB
MAX_PATH = 4096
POOL_TYPES = frozenset({"Filesystem", "NetworkFilesystem", "SharedMountPoint", "LVM", "RBD", "CLVM"})

_PRINTABLE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")  # ASCII, no control chars, trimmed
_TAG = re.compile(r"[A-Za-z0-9_.:/+-]+")
_HYPERVISOR = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")


class InvalidAgentMessage(ValueError):
    """What the agent sent cannot be accepted; the message says which field and why."""


def _text(field: str, value: str, limit: int = MAX_NAME, *, empty: bool = False) -> None:
    if not value:
        if empty:
            return
        raise InvalidAgentMessage(f"{field} is empty")
    if len(value) > limit:
        raise InvalidAgentMessage(f"{field} is {len(value)} characters long (at most {limit})")
    if not _PRINTABLE.fullmatch(value):
        raise InvalidAgentMessage(f"{field} must be printable ASCII without surrounding spaces")


def _int(field: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise InvalidAgentMessage(f"{field} = {value} is outside {low}..{high}")


def power_report(report: Mapping[str, PowerState]) -> None:
    if len(report) > MAX_VMS_PER_HOST:
        raise InvalidAgentMessage(f"a power report names {len(report)} VMs (at most {MAX_VMS_PER_HOST})")
    for name in report:
        _text("a power report's VM name", name)


def guid(value: str) -> None:
    _text("guid", value)


def startup(command: StartupRoutingCommand) -> None:
    """Raise InvalidAgentMessage unless every field of the routing startup is within bounds."""
    _text("guid", command.guid)
    _text("name", command.name)
    for field in ("zone", "pod", "cluster"):
        _text(field, getattr(command, field))
    _int("cpus", command.cpus, 1, MAX_CPUS)
    _int("cpu_sockets", command.cpu_sockets, 1, MAX_CPUS)
    _int("cpu_speed_mhz", command.cpu_speed_mhz, 1, MAX_CPU_MHZ)
    _int("memory_bytes", command.memory_bytes, 1, MAX_MEMORY)
    if not _HYPERVISOR.fullmatch(command.hypervisor_type):
        raise InvalidAgentMessage(f"hypervisor_type {command.hypervisor_type[:40]!r} is not a name")
    _text("hypervisor_version", command.hypervisor_version, MAX_VERSION, empty=True)
    _text("agent_version", command.agent_version, MAX_VERSION, empty=True)
    if len(command.host_tags) > MAX_TAGS_PER_HOST:
        raise InvalidAgentMessage(f"{len(command.host_tags)} host tags (at most {MAX_TAGS_PER_HOST})")
    for tag in command.host_tags:
        if len(tag) > MAX_TAG or not _TAG.fullmatch(tag):
            raise InvalidAgentMessage(f"host tag {tag[:40]!r} is not a tag (letters, digits, _.:/+-; "
                                      f"at most {MAX_TAG})")
    if command.private_ip:
        try:
            ipaddress.ip_address(command.private_ip)
        except ValueError:
            raise InvalidAgentMessage(f"private_ip {command.private_ip[:60]!r} is not an address") from None
    if command.private_mac and not _MAC.fullmatch(command.private_mac):
        raise InvalidAgentMessage(f"private_mac {command.private_mac[:40]!r} is not a MAC address")
    if len(command.mgmt_servers) > MAX_MGMT_SERVERS:
        raise InvalidAgentMessage(f"{len(command.mgmt_servers)} management servers listed")
    for server in command.mgmt_servers:
        _text("a management server's address", server)
    power_report(command.power_report)


def storage(command: StartupStorageCommand, guid: str) -> None:
    """The local pool a host declares: a real uuid, a path, sizes in range, its own guid."""
    if command.guid != guid:
        raise InvalidAgentMessage("the storage startup names another host's guid")
    try:
        uuid.UUID(command.pool_uuid)
    except ValueError:
        raise InvalidAgentMessage(f"pool_uuid {command.pool_uuid[:60]!r} is not a uuid") from None
    _text("pool name", command.name, empty=True)
    _text("pool path", command.path, MAX_PATH)
    if command.pool_type not in POOL_TYPES:
        raise InvalidAgentMessage(f"pool_type {command.pool_type[:40]!r} is not one of {sorted(POOL_TYPES)}")
    _int("capacity_bytes", command.capacity_bytes, 0, MAX_POOL_BYTES)
    _int("available_bytes", command.available_bytes, 0, MAX_POOL_BYTES)


def ping(command: PingRoutingCommand, host_id: int) -> None:
    if command.host_id != host_id:
        raise InvalidAgentMessage(f"a ping for host {command.host_id} on host {host_id}'s connection")
    power_report(command.power_report)
