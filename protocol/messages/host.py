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


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatPoolTO:
    """A shared primary storage pool the host writes its heartbeat on (and reads its neighbours')."""

    pool_uuid: str
    path: str  # as the pool's row has it: a directory, or ``server:/export`` for NFS
    type: str = "NetworkFilesystem"


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyCommand(Command):
    """The server accepted the host; ``reject_reason`` set means it did not, and says why.

    ``heartbeat_pools``: where the host writes a heartbeat every ``heartbeat_interval`` seconds (none:
    it writes none); ``self_fence_after``: seconds without both the management server and a heartbeat
    written after which the host stops its guests (0: never)."""

    control: ClassVar[bool] = True
    host_id: int
    zone_id: int = 0
    mgmt_servers: tuple[str, ...] = ()
    lb_algorithm: str = "roundrobin"
    reject_reason: str = ""
    heartbeat_pools: tuple[HeartbeatPoolTO, ...] = ()
    heartbeat_interval: float = 0.0
    self_fence_after: float = 0.0


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
    """Asked of a neighbour: is the host with this guid and address alive, as far as you can tell?

    The neighbour watches the host's heartbeat on the pools they share for ``window`` seconds, and the
    files in ``disks`` (the host's VMs' volumes on shared pools): alive when either moved, dead when the
    heartbeat it found stood still and no disk was written, not determined when it found none."""

    host_guid: str
    private_ip: str = ""
    window: float = 0.0
    disks: tuple[str, ...] = ()


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class CheckOnHostAnswer(Answer):
    determined: bool = False
    alive: bool = False


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class FenceCommand(Command):
    """Asked of a neighbour before the host's VMs start elsewhere: mark the host fenced on every pool
    they share (a host that sees the mark stops its guests), then confirm that its heartbeat stands
    still for ``window`` seconds."""

    host_guid: str
    window: float = 0.0


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class FenceAnswer(Answer):
    fenced: bool = False


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class EnrollCommand(Command):
    """An agent without a certificate asks for one: the first and only request on a TLS connection
    that carries no client certificate. ``token`` is a registration token the operator made; ``csr``
    the agent's certificate request (PEM; its key stays on the host). Like a startup it opens the
    handshake; its answer never accepts one, so the connection then closes and the agent comes back
    with its certificate."""

    control: ClassVar[bool] = True
    guid: str
    token: str
    csr: str


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class EnrollAnswer(Answer):
    certificate: str = ""  # PEM, CN = the guid
    ca_certificate: str = ""  # PEM of the cloud's CA


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class RenewCertificateCommand(Command):
    """From an Up agent whose certificate nears its end: a new one for the same guid, from this CSR."""

    csr: str


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class RenewCertificateAnswer(Answer):
    certificate: str = ""
    ca_certificate: str = ""


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class ProvisionCertificateCommand(Command):
    """From the server (the provisionCertificate API): make a new key and answer with its CSR."""


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class ProvisionCertificateAnswer(Answer):
    csr: str = ""


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class SetupCertificateCommand(Command):
    """From the server: the certificate for the key the last ProvisionCertificateCommand made; the agent
    keeps both and, with ``reconnect``, reconnects with them at once."""

    certificate: str
    ca_certificate: str
    reconnect: bool = False
