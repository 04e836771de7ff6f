"""Host messages: the startup handshake, liveness pings and health checks."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

from .base import Answer, Command, answer, command


class PowerState(enum.StrEnum):
    """A VM's power state as a host reports it."""

    ON = "PowerOn"
    OFF = "PowerOff"
    UNKNOWN = "PowerUnknown"


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class StartupRoutingCommand(Command):
    """The agent's first message: who the host is and what it has."""

    control: ClassVar[bool] = True
    guid: str
    name: str
    zone: str
    pod: str
    cluster: str
    cpus: int
    cpu_speed_mhz: int
    cpu_sockets: int = 1
    memory_bytes: int
    hypervisor_type: str
    hypervisor_version: str = ""
    host_tags: tuple[str, ...] = ()
    private_ip: str = ""
    private_mac: str = ""
    agent_version: str = ""
    mgmt_servers: tuple[str, ...] = ()
    power_report: dict[str, PowerState] = field(default_factory=dict)


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class StartupStorageCommand(Command):
    """Sent with the routing startup when the host has local storage."""

    control: ClassVar[bool] = True
    guid: str
    pool_uuid: str
    name: str = ""
    path: str
    pool_type: str = "Filesystem"
    capacity_bytes: int
    available_bytes: int


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class StartupAnswer(Answer):
    host_id: int = 0
    ping_interval: float = 60.0  # seconds; fractions allowed (tests)


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyCommand(Command):
    """The server accepted the host; ``reject_reason`` set means it did not, and says why."""

    control: ClassVar[bool] = True
    host_id: int
    zone_id: int = 0
    mgmt_servers: tuple[str, ...] = ()
    lb_algorithm: str = "roundrobin"
    reject_reason: str = ""


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyAnswer(Answer):
    pass


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class PingRoutingCommand(Command):
    """Liveness, every ping interval, carrying the power state of every VM on the host."""

    control: ClassVar[bool] = True
    host_id: int
    power_report: dict[str, PowerState] = field(default_factory=dict)


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class PingAnswer(Answer):
    """``send_startup`` asks the agent to redo its startup on this connection."""

    send_startup: bool = False


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class CheckHealthCommand(Command):
    pass


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class CheckHealthAnswer(Answer):
    pass


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class CheckOnHostCommand(Command):
    """Asked of a neighbour: is the host with this guid and address alive, as far as you can tell?"""

    host_guid: str
    private_ip: str = ""


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class CheckOnHostAnswer(Answer):
    determined: bool = False
    alive: bool = False
