"""Virtual-machine messages and the transfer objects that describe a VM to its hypervisor."""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import Answer, Command, answer, command
from .host import PowerState


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskTO:
    """A disk as the hypervisor attaches it."""

    volume_uuid: str
    type: str = "ROOT"  # ROOT or DATADISK
    device_id: int = 0
    path: str = ""  # '': the volume named ``volume_uuid`` on its pool (created in the same request)
    pool_uuid: str = ""
    pool_path: str = ""
    size_bytes: int = 0
    format: str = "qcow2"
    cache_mode: str = "none"  # the disk cache: none, writeback or writethrough
    # libvirt's <iotune> limits: read_bytes_sec, write_iops_sec_max, ... (element name -> value)
    iotune: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityRuleTO:
    """Traffic one rule lets through: a protocol (tcp, udp, icmp, all), a port range or an ICMP type and
    code (-1: any), and the addresses it comes from (ingress) or goes to (egress), as CIDRs."""

    protocol: str
    start_port: int = 0
    end_port: int = 0
    icmp_type: int = -1
    icmp_code: int = -1
    cidrs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityTO:
    """What a NIC's security groups let through, resolved for its host. Nothing gets in but what an
    ingress rule allows; everything gets out unless there are egress rules (``egress_filtered``), then
    only what they allow. A NIC sends only from its own MAC and address (anti-spoofing)."""

    ingress: tuple[SecurityRuleTO, ...] = ()
    egress: tuple[SecurityRuleTO, ...] = ()
    egress_filtered: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class NicTO:
    """A network interface with its address, as the hypervisor and the guest see it."""

    uuid: str
    device_id: int = 0
    mac: str
    ip: str = ""
    netmask: str = ""
    gateway: str = ""
    dns: tuple[str, ...] = ()
    broadcast_uri: str = ""  # vlan://100, untagged...
    bridge: str = ""
    is_default: bool = True
    security: SecurityTO | None = None  # None: not filtered (a network without security groups)
    rate_mbps: int = 0  # the NIC's rate limit each way, in Mb/s (0: none)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigDriveTO:
    """The files of a VM's config drive (OpenStack's layout, as CloudStack's ConfigDrive provider writes
    it): the agent makes an ISO 9660 image labelled ``label`` holding them and attaches it as a CD-ROM.
    ``files`` maps a path inside the image (``openstack/latest/meta_data.json``) to its bytes, Base64."""

    label: str = "config-2"
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualMachineTO:
    """Everything a hypervisor needs to start a VM."""

    name: str
    uuid: str
    display_name: str = ""
    vcpus: int
    cpu_speed_mhz: int = 0
    memory_bytes: int
    os_type: str = ""
    arch: str = "x86_64"
    boot_args: str = ""
    kernel: str = ""
    initrd: str = ""
    disks: tuple[DiskTO, ...] = ()
    nics: tuple[NicTO, ...] = ()
    details: dict[str, str] = field(default_factory=dict)
    config_drive: ConfigDriveTO | None = None
    cpu_cap: bool = False  # cap the guest's CPU time at cpu_speed_mhz per vCPU (limitcpuuse)


@dataclass(frozen=True, slots=True, kw_only=True)
class VmStats:
    """A guest's counters as its host sees them: cumulative since it started (CPU time, disk and network
    bytes and operations) and its memory now."""

    cpu_utilization: float = 0.0  # (older agents) a percentage; the server works it out from cpu_time_ns
    vcpus: int = 0
    cpu_time_ns: int = 0
    memory_kbs: int = 0  # the guest's memory
    memory_free_kbs: int = 0  # unused inside the guest (the balloon driver's figure; 0: unknown)
    memory_target_kbs: int = 0  # what the balloon aims at
    disk_read_bytes: int = 0
    disk_write_bytes: int = 0
    disk_read_ios: int = 0
    disk_write_ios: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class StartCommand(Command):
    vm: VirtualMachineTO
    host_guid: str = ""


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class StartAnswer(Answer):
    vm_name: str = ""


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class StopCommand(Command):
    """Graceful shutdown for up to ``graceful_seconds``, then power off; ``forced`` skips the wait."""

    vm_name: str
    forced: bool = False
    graceful_seconds: int = 60


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class StopAnswer(Answer):
    pass


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class RebootCommand(Command):
    vm_name: str


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class RebootAnswer(Answer):
    pass


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class PrepareForMigrationCommand(Command):
    """Sent to the destination host before a migration so it can set up disks and networks."""

    vm: VirtualMachineTO


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class PrepareForMigrationAnswer(Answer):
    """The destination is ready; how the source reaches its hypervisor, and where the VM's console goes
    there (empty: the source decides)."""

    dest_uri: str = ""
    console_log: str = ""
    config_drive: str = ""  # the VM's config drive image on the destination (written there), if it has one


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class MigrateCommand(Command):
    """Sent to the source host: move ``vm_name`` live to the destination."""

    vm_name: str
    dest_ip: str = ""
    dest_uri: str = ""
    dest_guid: str = ""
    dest_console_log: str = ""  # the console log's path on the destination (PrepareForMigrationAnswer)
    dest_config_drive: str = ""  # the config drive image's path there (PrepareForMigrationAnswer)
    live: bool = True


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class MigrateAnswer(Answer):
    pass


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class CheckVirtualMachineCommand(Command):
    vm_name: str


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class CheckVirtualMachineAnswer(Answer):
    power_state: PowerState = PowerState.UNKNOWN


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class GetVmStatsCommand(Command):
    vm_names: tuple[str, ...]


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class GetVmStatsAnswer(Answer):
    stats: dict[str, VmStats] = field(default_factory=dict)


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class GetVmConsoleLogCommand(Command):
    """The last ``lines`` lines of a VM's serial console (from its last run when it is stopped)."""

    vm_name: str
    lines: int = 100


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class GetVmConsoleLogAnswer(Answer):
    log: str = ""
    exists: bool = False  # whether this host has a console log for the VM at all


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class CleanupVmCommand(Command):
    """Sent to a VM's last host when it is expunged: forget its domain and console log."""

    vm_name: str


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityGroupRulesCommand(Command):
    """A running VM's security rules changed (a rule of its groups, or the members of a group they
    name): apply ``nics``' rules (matched by MAC) on the host."""

    vm_name: str
    nics: tuple[NicTO, ...]
