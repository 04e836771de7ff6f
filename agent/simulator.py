"""SimulatorResource: a hypervisor host in memory that answers every command with the right effects.

It keeps the host's VMs and the volumes on its local pool, refuses what a real host would refuse (not
enough memory, pool full, unknown VM), and obeys the fault rules of ``agent.faults``. Simulated hosts
in one process share a registry by guid, so a migration moves the VM to its destination.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar

import trio

from protocol.messages import (
    Answer,
    AttachCommand,
    CheckHealthAnswer,
    CheckHealthCommand,
    CheckVirtualMachineAnswer,
    CheckVirtualMachineCommand,
    CleanupVmCommand,
    Command,
    CreateAnswer,
    CreateCommand,
    DestroyCommand,
    DettachCommand,
    GetStorageStatsAnswer,
    GetStorageStatsCommand,
    GetVmConsoleLogAnswer,
    GetVmConsoleLogCommand,
    GetVmStatsAnswer,
    GetVmStatsCommand,
    HeartbeatPoolTO,
    MigrateAnswer,
    MigrateCommand,
    PowerState,
    PrepareForMigrationAnswer,
    PrepareForMigrationCommand,
    PrimaryStorageDownloadAnswer,
    PrimaryStorageDownloadCommand,
    RebootAnswer,
    RebootCommand,
    SecurityGroupRulesCommand,
    StartAnswer,
    StartCommand,
    StartupRoutingCommand,
    StartupStorageCommand,
    StopAnswer,
    StopCommand,
    VirtualMachineTO,
    VmStats,
)

from . import configdrive
from .configdrive import ConfigDriveError
from .faults import FaultError, FaultTable
from .resource import DropConnection, Placement, ServerResource, error_answer, handles

log = logging.getLogger(__name__)

GIB = 1024**3
TEMPLATE_SIZE = 2 * GIB  # what a simulated template download occupies on the pool
CONSOLE_LINES = 100  # console lines a simulated host keeps per VM
_UUID = re.compile(r"^[0-9a-fA-F-]{36}$")  # a pool uuid, as a directory name


@dataclass(frozen=True, slots=True)
class HostSpec:
    """The size of a simulated host."""

    cpus: int = 16
    cpu_speed_mhz: int = 2400
    memory_bytes: int = 64 * GIB
    pool_bytes: int = 2048 * GIB


@dataclass
class SimVm:
    to: VirtualMachineTO
    state: PowerState = PowerState.ON
    boots: int = 1
    started: float = 0.0  # trio's clock when it (last) started: its synthetic counters grow from there


def synthetic_stats(vm: SimVm, now: float) -> VmStats:
    """Plausible counters for a simulated guest, growing with the time it has run: its vCPUs a tenth
    busy (more while it "boots", its first 10 s), a quarter of its memory free, steady disk and network
    traffic."""
    up = max(0.0, now - vm.started)
    vcpus = vm.to.vcpus
    busy = min(up, 10.0) * 0.6 + max(0.0, up - 10.0) * 0.1  # vCPU-seconds per vCPU
    memory = vm.to.memory_bytes // 1024
    return VmStats(vcpus=vcpus, cpu_time_ns=int(busy * vcpus * 1e9), memory_kbs=memory,
                   memory_free_kbs=memory // 4, memory_target_kbs=memory,
                   disk_read_bytes=int(up * 256 * 1024) + (vm.boots << 20),
                   disk_write_bytes=int(up * 64 * 1024),
                   disk_read_ios=int(up * 16), disk_write_ios=int(up * 4),
                   net_rx_bytes=int(up * 2048), net_tx_bytes=int(up * 1024))


@dataclass
class SimHost:
    """The in-memory hypervisor: VMs by name, volumes and templates by path on the local pool."""

    spec: HostSpec
    vms: dict[str, SimVm] = field(default_factory=dict)
    incoming: dict[str, VirtualMachineTO] = field(default_factory=dict)
    volumes: dict[str, int] = field(default_factory=dict)  # path -> bytes
    preallocation: dict[str, str] = field(default_factory=dict)  # path -> how it was made (off: absent)
    consoles: dict[str, deque[str]] = field(default_factory=dict)  # VM name -> its last console lines

    def console(self, name: str, line: str) -> None:
        self.consoles.setdefault(name, deque(maxlen=CONSOLE_LINES)).append(line)

    def memory_used(self) -> int:
        return sum(vm.to.memory_bytes for vm in self.vms.values() if vm.state is PowerState.ON)

    def pool_used(self) -> int:
        return sum(self.volumes.values())

    def networks(self) -> dict[int, list[str]]:
        """The isolated networks this host has built (a bridge and a VXLAN device each, on a real host):
        VXLAN id -> the VMs on it. A network is built with its first VM here and torn down with its last."""
        built: dict[int, list[str]] = {}
        for name, vm in sorted(self.vms.items()):
            for nic in vm.to.nics:
                if nic.broadcast_uri.startswith("vxlan://"):
                    built.setdefault(int(nic.broadcast_uri.removeprefix("vxlan://")), []).append(name)
        return built


class SimulatorResource(ServerResource):
    hypervisor_type = "Simulator"
    registry: ClassVar[dict[str, SimulatorResource]] = {}  # guid -> resource, for migrations
    # Shared (cluster- and zone-wide) pools, as one NFS export every simulated host of the process
    # mounts: path -> bytes. The host's own local pool is in its SimHost.
    shared: ClassVar[dict[str, int]] = {}

    def __init__(self, spec: HostSpec | None = None, faults: FaultTable | None = None,
                 pool_path: str = "/var/lib/cumulo/sim-pool", storage_root: str = "") -> None:
        self.host = SimHost(spec or HostSpec())
        self.faults = faults if faults is not None else FaultTable()
        self.pool_path = pool_path
        # A real directory standing for the shared pools every simulated host mounts (one
        # subdirectory per pool): heartbeats go there, so the investigators' code is the real one.
        self.storage_root = storage_root
        self.guid = ""

    async def startup_commands(self, placement: Placement) -> list[Command]:
        self.guid = placement.guid
        SimulatorResource.registry[placement.guid] = self
        spec = self.host.spec
        pool_uuid = _stable_uuid(placement.guid + "/local-pool")
        return [
            StartupRoutingCommand(
                guid=placement.guid, name=placement.name, zone=placement.zone, pod=placement.pod,
                cluster=placement.cluster, cpus=spec.cpus, cpu_speed_mhz=spec.cpu_speed_mhz,
                memory_bytes=spec.memory_bytes, hypervisor_type=self.hypervisor_type,
                hypervisor_version="cumulo-sim-1", host_tags=placement.host_tags,
                private_ip=placement.private_ip, private_mac=_mac_for(placement.guid),
                power_report=await self.power_report(),
            ),
            StartupStorageCommand(
                guid=placement.guid, pool_uuid=pool_uuid, name=f"{placement.name}-local",
                path=self.pool_path, pool_type="Filesystem", capacity_bytes=spec.pool_bytes,
                available_bytes=spec.pool_bytes - self.host.pool_used(),
            ),
        ]

    def pinging(self) -> bool:
        return not self.faults.stop_pinging

    def reachable(self) -> bool:
        return not self.faults.partitioned

    def heartbeat_dir(self, pool: HeartbeatPoolTO) -> str | None:
        if not self.storage_root or not _UUID.match(pool.pool_uuid):
            return None
        path = os.path.join(self.storage_root, pool.pool_uuid)
        os.makedirs(path, exist_ok=True)
        return path

    def storage_reachable(self) -> bool:
        return not self.faults.stop_heartbeat

    async def stop_all_guests(self, why: str) -> int:
        stopped = [name for name, vm in self.host.vms.items() if vm.state is PowerState.ON]
        for name in stopped:
            self.host.vms[name].state = PowerState.OFF
        return len(stopped)

    async def power_report(self) -> dict[str, PowerState]:
        for name in list(self.faults.power_off):  # powered off behind the server's back
            vm = self.host.vms.get(name)
            if vm is not None:
                vm.state = PowerState.OFF
            self.faults.power_off.discard(name)
        return {name: vm.state for name, vm in self.host.vms.items()}

    async def execute(self, command: Command) -> Answer:
        rule = self.faults.match(type(command).__name__)
        if rule is not None:
            if rule.action == "fail":
                return Answer(result=False, details=rule.details)
            if rule.action == "drop":
                raise DropConnection(type(command).__name__)
            if rule.action == "wait":
                await trio.sleep(rule.wait_ms / 1000)
            elif rule.action == "error":
                return error_answer(command, FaultError(rule.details))
        return await super().execute(command)

    # --- VMs -------------------------------------------------------------------------------------

    @handles(StartCommand)
    async def start(self, cmd: StartCommand) -> Answer:
        vm = cmd.vm
        existing = self.host.vms.get(vm.name)
        if existing is not None and existing.state is PowerState.ON:
            return StartAnswer(vm_name=vm.name)  # starting a running VM is a no-op, as on KVM
        free = self.host.spec.memory_bytes - self.host.memory_used()
        if vm.memory_bytes > free:
            return StartAnswer(result=False, vm_name=vm.name,
                               details=f"not enough memory: {vm.memory_bytes} bytes asked, {free} free")
        if not all(d.path for d in vm.disks):  # created in this request: named by uuid on its pool
            vm = dataclasses.replace(vm, disks=tuple(
                d if d.path else dataclasses.replace(
                    d, path=f"{d.pool_path or self.pool_path}/{d.volume_uuid}")
                for d in vm.disks))
        missing = [d.path for d in vm.disks if d.path not in self._volumes(d.pool_path)]
        if missing:
            return StartAnswer(result=False, vm_name=vm.name, details=f"disk not found: {missing[0]}")
        drive = ""
        if vm.config_drive is not None:  # what a real guest prints once it applied its config drive
            try:
                drive = configdrive.summary(vm.config_drive)
            except ConfigDriveError as e:
                return StartAnswer(result=False, vm_name=vm.name, details=str(e))
        self.host.vms[vm.name] = sim = SimVm(vm, boots=existing.boots + 1 if existing else 1,
                                             started=trio.current_time())
        self.host.console(vm.name, f"simulated guest {vm.name}: booted (boot {sim.boots})")
        if drive:
            self.host.console(vm.name, drive)
        return StartAnswer(vm_name=vm.name)

    @handles(SecurityGroupRulesCommand)
    async def security_rules(self, cmd: SecurityGroupRulesCommand) -> Answer:
        """New security rules for a running VM's NICs (matched by MAC): what a real host turns into
        nftables rules on the VM's bridge ports, kept here on the VM's transfer object."""
        sim = self.host.vms.get(cmd.vm_name)
        if sim is None:
            return Answer(result=False, details=f"VM {cmd.vm_name} is not running on this host")
        by_mac = {n.mac: n for n in cmd.nics}
        sim.to = dataclasses.replace(sim.to, nics=tuple(
            dataclasses.replace(n, security=by_mac[n.mac].security) if n.mac in by_mac else n
            for n in sim.to.nics))
        return Answer()

    @handles(StopCommand)
    async def stop(self, cmd: StopCommand) -> Answer:
        if self.host.vms.pop(cmd.vm_name, None) is not None:  # stopping an absent VM succeeds: it is stopped
            self.host.console(cmd.vm_name, f"simulated guest {cmd.vm_name}: powered off")
        return StopAnswer()

    @handles(RebootCommand)
    async def reboot(self, cmd: RebootCommand) -> Answer:
        vm = self.host.vms.get(cmd.vm_name)
        if vm is None or vm.state is not PowerState.ON:
            return RebootAnswer(result=False, details=f"VM {cmd.vm_name} is not running on this host")
        vm.boots += 1
        self.host.console(cmd.vm_name, f"simulated guest {cmd.vm_name}: rebooted (boot {vm.boots})")
        return RebootAnswer()

    @handles(PrepareForMigrationCommand)
    async def prepare_for_migration(self, cmd: PrepareForMigrationCommand) -> Answer:
        free = self.host.spec.memory_bytes - self.host.memory_used()
        if cmd.vm.memory_bytes > free:
            return PrepareForMigrationAnswer(result=False, details=f"not enough memory for {cmd.vm.name}")
        self.host.incoming[cmd.vm.name] = cmd.vm
        return PrepareForMigrationAnswer()

    @handles(MigrateCommand)
    async def migrate(self, cmd: MigrateCommand) -> Answer:
        vm = self.host.vms.get(cmd.vm_name)
        if vm is None:
            return MigrateAnswer(result=False, details=f"VM {cmd.vm_name} is not on this host")
        dest = SimulatorResource.registry.get(cmd.dest_guid)
        if dest is None or cmd.vm_name not in dest.host.incoming:
            return MigrateAnswer(result=False,
                                 details=f"destination {cmd.dest_guid or cmd.dest_ip} is not prepared for it")
        dest.host.vms[cmd.vm_name] = SimVm(dest.host.incoming.pop(cmd.vm_name), boots=vm.boots)
        del self.host.vms[cmd.vm_name]
        return MigrateAnswer()

    @handles(AttachCommand)
    async def attach(self, cmd: AttachCommand) -> Answer:
        vm = self.host.vms.get(cmd.vm_name)
        if vm is None or vm.state is not PowerState.ON:
            return Answer(result=False, details=f"VM {cmd.vm_name} is not running on this host")
        if cmd.disk.path not in self._volumes(cmd.disk.pool_path):
            return Answer(result=False, details=f"disk not found: {cmd.disk.path}")
        if any(d.device_id == cmd.disk.device_id and d.path != cmd.disk.path for d in vm.to.disks):
            return Answer(result=False, details=f"device {cmd.disk.device_id} of {cmd.vm_name} is taken")
        if all(d.path != cmd.disk.path for d in vm.to.disks):
            vm.to = dataclasses.replace(vm.to, disks=(*vm.to.disks, cmd.disk))
        return Answer()

    @handles(DettachCommand)
    async def dettach(self, cmd: DettachCommand) -> Answer:
        vm = self.host.vms.get(cmd.vm_name)
        if vm is None or vm.state is not PowerState.ON:
            return Answer(result=False, details=f"VM {cmd.vm_name} is not running on this host")
        vm.to = dataclasses.replace(vm.to, disks=tuple(d for d in vm.to.disks if d.path != cmd.disk.path))
        return Answer()

    @handles(GetVmConsoleLogCommand)
    async def console_log(self, cmd: GetVmConsoleLogCommand) -> Answer:
        lines = self.host.consoles.get(cmd.vm_name)
        if lines is None:
            return GetVmConsoleLogAnswer()
        kept = list(lines)[-max(1, cmd.lines):]
        return GetVmConsoleLogAnswer(log="".join(f"{line}\n" for line in kept), exists=True)

    @handles(CleanupVmCommand)
    async def cleanup_vm(self, cmd: CleanupVmCommand) -> Answer:
        self.host.vms.pop(cmd.vm_name, None)
        self.host.consoles.pop(cmd.vm_name, None)
        return Answer()

    @handles(CheckVirtualMachineCommand)
    async def check_vm(self, cmd: CheckVirtualMachineCommand) -> Answer:
        vm = self.host.vms.get(cmd.vm_name)
        return CheckVirtualMachineAnswer(power_state=vm.state if vm else PowerState.OFF)

    @handles(GetVmStatsCommand)
    async def vm_stats(self, cmd: GetVmStatsCommand) -> Answer:
        stats = {}
        now = trio.current_time()
        for name in cmd.vm_names:
            vm = self.host.vms.get(name)
            if vm is not None and vm.state is PowerState.ON:
                stats[name] = synthetic_stats(vm, now)
        return GetVmStatsAnswer(stats=stats)

    # --- host ------------------------------------------------------------------------------------

    @handles(CheckHealthCommand)
    async def check_health(self, cmd: CheckHealthCommand) -> Answer:
        return CheckHealthAnswer()

    # --- storage ---------------------------------------------------------------------------------

    def _volumes(self, pool_path: str) -> dict[str, int]:
        """The volumes of a pool: this host's local one, or a shared one."""
        local = not pool_path or pool_path == self.pool_path
        return self.host.volumes if local else SimulatorResource.shared

    @handles(PrimaryStorageDownloadCommand)
    async def download_template(self, cmd: PrimaryStorageDownloadCommand) -> Answer:
        path = f"{cmd.pool_path or self.pool_path}/template-{cmd.template_uuid}"
        pool = self._volumes(cmd.pool_path)
        if path not in pool:
            failure = self._no_room(TEMPLATE_SIZE, cmd.pool_path)
            if failure:
                return PrimaryStorageDownloadAnswer(result=False, details=failure)
            pool[path] = TEMPLATE_SIZE
        return PrimaryStorageDownloadAnswer(install_path=path, size_bytes=TEMPLATE_SIZE)

    @handles(GetStorageStatsCommand)
    async def storage_stats(self, cmd: GetStorageStatsCommand) -> Answer:
        if not cmd.pool_path.startswith("/") and ":" not in cmd.pool_path:
            return GetStorageStatsAnswer(result=False, details=f"{cmd.pool_path!r} is not a pool path")
        if cmd.pool_path == self.pool_path:
            return GetStorageStatsAnswer(capacity_bytes=self.host.spec.pool_bytes,
                                         used_bytes=self.host.pool_used())
        prefix = cmd.pool_path.rstrip("/") + "/"
        used = sum(size for path, size in SimulatorResource.shared.items() if path.startswith(prefix))
        return GetStorageStatsAnswer(capacity_bytes=SHARED_POOL_BYTES, used_bytes=used)

    @handles(CreateCommand)
    async def create_volume(self, cmd: CreateCommand) -> Answer:
        pool = self._volumes(cmd.pool_path)
        if cmd.template_path and cmd.template_path not in pool:
            return CreateAnswer(result=False, details=f"template not on this pool: {cmd.template_path}")
        size = cmd.size_bytes or (pool[cmd.template_path] if cmd.template_path else 0)
        if size <= 0:
            return CreateAnswer(result=False, details="a volume needs a size or a template")
        path = f"{cmd.pool_path or self.pool_path}/{cmd.volume_uuid}"
        if path in pool:
            return CreateAnswer(path=path, size_bytes=pool[path])  # retried: same volume
        failure = self._no_room(size, cmd.pool_path)
        if failure:
            return CreateAnswer(result=False, details=failure)
        if cmd.preallocation not in ("off", "metadata", "full"):
            return CreateAnswer(result=False, details=f"preallocation {cmd.preallocation!r} is not off, "
                                                      "metadata or full")
        pool[path] = size
        if cmd.preallocation != "off":
            self.host.preallocation[path] = cmd.preallocation
        return CreateAnswer(path=path, size_bytes=size)

    @handles(DestroyCommand)
    async def destroy_volume(self, cmd: DestroyCommand) -> Answer:
        path = cmd.path or f"{cmd.pool_path or self.pool_path}/{cmd.volume_uuid}"
        in_use = [vm.to.name for vm in self.host.vms.values() if any(d.path == path for d in vm.to.disks)]
        if in_use:
            return Answer(result=False, details=f"volume {path} is in use by {in_use[0]}")
        self.host.volumes.pop(path, None)
        SimulatorResource.shared.pop(path, None)
        return Answer()

    def _no_room(self, size: int, pool_path: str = "") -> str:
        if self._volumes(pool_path) is SimulatorResource.shared:
            return ""  # shared pools: the management server accounts their space
        free = self.host.spec.pool_bytes - self.host.pool_used()
        return f"local pool full: {size} bytes asked, {free} free" if size > free else ""

    async def aclose(self) -> None:
        if SimulatorResource.registry.get(self.guid) is self:
            del SimulatorResource.registry[self.guid]


SHARED_POOL_BYTES = 10 * 1024 * GIB  # what a simulated host measures a shared pool at


def _stable_uuid(seed: str) -> str:
    h = hashlib.sha256(seed.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def _mac_for(seed: str) -> str:
    h = hashlib.sha256(seed.encode()).digest()
    return "06:" + ":".join(f"{b:02x}" for b in h[:5])
