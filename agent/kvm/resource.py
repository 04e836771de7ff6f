"""LibvirtResource: a KVM/QEMU host (or libvirt's test driver) driven through libvirt-python.

libvirt calls block, so every one runs in a worker thread under a bounded limiter; the event loop
never waits on libvirt. ``open`` connects once before the agent's first startup: for the embedded
QEMU driver it prepares the root first, and it decides KVM or TCG (``host.py``). Root volumes live in
the primary storage pool (``pools.py``): templates are copied into it once, and each root volume is a
qcow2 overlay on its template. Each VM's serial console is appended to a file in the console directory
(``console.py``); the management server reads its tail and asks for it to be removed on expunge.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

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
    DiskTO,
    GetStorageStatsAnswer,
    GetStorageStatsCommand,
    GetVmConsoleLogAnswer,
    GetVmConsoleLogCommand,
    GetVmStatsAnswer,
    GetVmStatsCommand,
    HeartbeatPoolTO,
    MigrateAnswer,
    MigrateCommand,
    NicTO,
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

from .. import configdrive
from ..configdrive import ConfigDriveError
from ..resource import HostSetupError, Placement, ServerResource, handles
from . import console as consoles
from . import secgroups, vxlan
from .domain_xml import disk_xml, domain_xml, for_destination, port_name
from .host import choose_domain_type, embedded_root, prepare_embedded, start_event_loop
from .pools import DirectoryPool, LibvirtPool, Pool, PoolError, disk_in_use

log = logging.getLogger(__name__)
T = TypeVar("T")

try:
    import libvirt
except ImportError:  # pragma: no cover - reported when the resource is created
    libvirt = None

# virDomainState values: 1 running, 2 blocked, 3 paused, 4 shutting down, 5 shut off, 6 crashed, 7 suspended
_POWER = {1: PowerState.ON, 2: PowerState.ON, 3: PowerState.ON, 4: PowerState.ON, 5: PowerState.OFF,
          6: PowerState.OFF, 7: PowerState.ON}
EMBEDDED_MIGRATION = (
    "live migration needs libvirtd on both hosts: an embedded QEMU driver (qemu:///embed) has no daemon "
    "to receive a migration, and a process can open only one embedded root, so no migration connection "
    "to another host can be made from here"
)
_STOP_POLL = 0.2  # seconds between checks while a guest shuts down


def _vanished(error: Any) -> bool:
    """Whether a libvirt error says the domain no longer exists (it can go between any two calls)."""
    return bool(error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN)


def _ignore_libvirt_errors(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we report them through exceptions instead."""


def vm_stats_of(record: dict[str, Any]) -> VmStats:
    """A guest's counters from libvirt's bulk statistics (``virConnectGetAllDomainStats`` keys)."""
    def total(prefix: str, count_key: str, field: str) -> int:
        return sum(int(record.get(f"{prefix}.{i}.{field}", 0)) for i in range(int(record.get(count_key, 0))))

    actual = int(record.get("balloon.current", 0))
    return VmStats(
        vcpus=int(record.get("vcpu.current", 0)),
        cpu_time_ns=int(record.get("cpu.time", 0)),
        memory_kbs=actual,
        memory_free_kbs=int(record.get("balloon.unused", 0)),
        memory_target_kbs=int(record.get("balloon.maximum", actual)),
        disk_read_bytes=total("block", "block.count", "rd.bytes"),
        disk_write_bytes=total("block", "block.count", "wr.bytes"),
        disk_read_ios=total("block", "block.count", "rd.reqs"),
        disk_write_ios=total("block", "block.count", "wr.reqs"),
        net_rx_bytes=total("net", "net.count", "rx.bytes"),
        net_tx_bytes=total("net", "net.count", "tx.bytes"),
    )


class LibvirtResource(ServerResource):
    hypervisor_type = "KVM"

    def __init__(self, uri: str = "qemu:///system", *, pool: str = "cumulo-primary", pool_path: str = "",
                 domain_type: str = "", console_dir: str = "", state_dir: str = "", probe_kernel: str = "",
                 migration_uri: str = "", guest_underlay: str = "", netns: str = "",
                 threads: int = 8) -> None:
        if libvirt is None:
            raise RuntimeError("the libvirt resource needs libvirt-python (pip install libvirt-python)")
        if domain_type not in ("", "kvm", "qemu", "test"):
            raise ValueError(f"domain type must be kvm, qemu or test, not {domain_type!r}")
        self.uri = uri
        self.pool_name = pool
        self.pool_path = pool_path
        self.domain_type = domain_type
        self.state_dir = state_dir or "."
        self.console_dir = console_dir or os.path.join(self.state_dir, "console")
        self.probe_kernel = probe_kernel
        self.migration_uri = migration_uri
        self.guest_underlay = guest_underlay  # the device isolated networks' VXLAN traffic rides on
        self._vm_networks: dict[str, set[int]] = {}  # VM name -> the VXLAN ids of its NICs here
        self._vm_firewall: dict[str, list[tuple[str, str]]] = {}  # VM name -> its filtered (port, address)s
        self.netns = netns  # where bridges and firewall rules are made ("": here; tests give a namespace)
        self._address = "127.0.0.1"  # this host's address, from the placement at startup
        self._host_mhz = 0  # the speed of a core, from libvirt at startup
        self._limiter = trio.CapacityLimiter(threads)
        self._conn: Any = None
        self._storage: Pool | None = None
        self._shared: dict[str, Pool] = {}  # cluster- and zone-wide pools by path

    # --- plumbing --------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def open(self) -> None:
        """Connect, set up the pool and choose the domain type; ``HostSetupError`` says what is wrong."""
        await self._call(self._connection)
        await self._call(self._pool)

    def _connection(self) -> Any:
        """The libvirt connection (worker thread only)."""
        if self._conn is None:
            libvirt.registerErrorHandler(_ignore_libvirt_errors, None)
            root = embedded_root(self.uri)
            if root is not None:
                prepare_embedded(root)
                start_event_loop(libvirt)
            try:
                conn = libvirt.open(self.uri)
            except libvirt.libvirtError as e:
                hint = ""
                if root is None and self.uri.startswith("qemu:///system"):
                    hint = " (is libvirtd running? Without a daemon use qemu:///embed?root=DIR)"
                raise HostSetupError(f"cannot open libvirt at {self.uri}: {e}{hint}") from None
            if not self.domain_type:
                if conn.getType().upper() == "TEST":
                    self.domain_type = "test"
                else:
                    self.domain_type = choose_domain_type(conn, libvirt, probe_kernel=self.probe_kernel,
                                                          state_dir=self.state_dir)
            Path(self.console_dir).mkdir(parents=True, exist_ok=True)
            self._conn = conn
        return self._conn

    def _pool(self) -> Pool:
        """The primary storage pool: libvirt's where its storage driver runs, else the agent's own."""
        if self._storage is None:
            conn = self._connection()
            try:
                if embedded_root(self.uri) is not None:
                    self._storage = DirectoryPool(self.pool_name, self.pool_path)
                else:
                    self._storage = LibvirtPool(conn, self.pool_name, self.pool_path)
            except PoolError as e:
                raise HostSetupError(str(e)) from None
        return self._storage

    def _pool_at(self, path: str) -> Pool:
        """The pool a command names by its path: this host's own, or a shared directory mounted here at
        the same path on every host of the cluster (an NFS export, or a directory on this machine)."""
        own = self._pool()
        if not path or os.path.realpath(path) == os.path.realpath(own.path()):
            return own
        pool = self._shared.get(path)
        if pool is None:
            pool = self._shared[path] = DirectoryPool(f"shared:{path}", path, create=False)
        return pool

    def _domain(self, name: str) -> Any:
        """The domain called ``name``, or None."""
        try:
            return self._connection().lookupByName(name)
        except libvirt.libvirtError as e:
            if _vanished(e):
                return None
            raise

    def _console(self, name: str) -> str:
        return consoles.console_path(self.console_dir, name)

    def _config_drive_path(self, name: str) -> str:
        return configdrive.image_path(os.path.join(self.state_dir, "configdrive"), name)

    def _write_config_drive(self, vm: VirtualMachineTO) -> str:
        """Write the VM's config drive image on this host; its path ("" when it has none). Raises
        ConfigDriveError or OSError."""
        if vm.config_drive is None:
            return ""
        path = self._config_drive_path(vm.name)
        configdrive.write_iso(vm.config_drive, Path(path))
        return path

    # --- startup and reports ---------------------------------------------------------------------

    async def startup_commands(self, placement: Placement) -> list[Command]:
        return await self._call(self._startup_commands, placement)

    def _startup_commands(self, placement: Placement) -> list[Command]:
        self._address = placement.private_ip
        conn = self._connection()
        _model, memory_mib, cpus, mhz, _nodes, sockets, _cores, _threads = conn.getInfo()
        self._host_mhz = mhz
        v = conn.getVersion()
        pool = self._pool()
        capacity, available = pool.space()
        return [
            StartupRoutingCommand(
                guid=placement.guid, name=placement.name, zone=placement.zone, pod=placement.pod,
                cluster=placement.cluster, cpus=cpus, cpu_speed_mhz=mhz, cpu_sockets=sockets,
                memory_bytes=memory_mib * 1024 * 1024, hypervisor_type=self.hypervisor_type,
                hypervisor_version=f"{conn.getType()} {v // 1000000}.{v // 1000 % 1000}.{v % 1000}",
                host_tags=placement.host_tags, private_ip=placement.private_ip,
                power_report=self._power_report(),
            ),
            StartupStorageCommand(guid=placement.guid, pool_uuid=pool.uuid(), name=self.pool_name,
                                  path=pool.path(), pool_type="Filesystem", capacity_bytes=capacity,
                                  available_bytes=available),
        ]

    async def power_report(self) -> dict[str, PowerState]:
        return await self._call(self._power_report)

    def _power_report(self) -> dict[str, PowerState]:
        report = {}
        for dom in self._connection().listAllDomains(0):
            try:
                report[dom.name()] = _POWER.get(dom.state()[0], PowerState.UNKNOWN)
            except libvirt.libvirtError as e:
                if not _vanished(e):  # gone since it was listed: not on this host any more
                    raise
        return report

    # --- HA ---------------------------------------------------------------------------------------

    def heartbeat_dir(self, pool: HeartbeatPoolTO) -> str | None:
        """A shared pool is mounted at the same path on every host of the cluster: its own path for a
        directory pool, ``/mnt/<pool uuid>`` for an NFS export (as CloudStack's KVM agent mounts it)."""
        path = pool.path if pool.path.startswith("/") else f"/mnt/{pool.pool_uuid}"
        return path if os.path.isdir(path) else None

    async def stop_all_guests(self, why: str) -> int:
        def destroy_all() -> int:
            stopped = 0
            for dom in self._connection().listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                try:
                    dom.destroy()
                    stopped += 1
                except libvirt.libvirtError as e:
                    if not _vanished(e):
                        log.error("self-fencing could not stop %s: %s", dom.name(), e)
            return stopped

        return await self._call(destroy_all)

    # --- VMs -------------------------------------------------------------------------------------

    @handles(StartCommand)
    async def start(self, cmd: StartCommand) -> Answer:
        return await self._call(self._start, cmd)

    def _start(self, cmd: StartCommand) -> Answer:
        dom = self._domain(cmd.vm.name)
        if dom is not None and dom.isActive():
            return StartAnswer(vm_name=cmd.vm.name)  # already running: starting again is a no-op
        try:
            vm = self._with_disk_paths(cmd.vm)
            busy = next((d.path for d in vm.disks if disk_in_use(d.path)), None)
        except PoolError as e:
            return StartAnswer(result=False, vm_name=cmd.vm.name, details=str(e))
        if busy is not None:  # another QEMU (on another host too, over NFS) still writes it: no second
            return StartAnswer(result=False, vm_name=cmd.vm.name,
                               details=f"disk {busy} is in use by another process (QEMU's image lock)")
        console = self._console(cmd.vm.name)

        def failed(details: str) -> Answer:
            self._leave_guest_networks(cmd.vm.name)  # what this start built for it goes again
            return StartAnswer(result=False, vm_name=cmd.vm.name, details=details)

        try:
            vm = self._with_guest_networks(vm)
        except vxlan.PlumbingError as e:
            return failed(f"guest network not built: {e}")
        try:  # the rules before the guest runs (they name its port and address, not the tap itself)
            self._apply_security(vm.name, vm.nics)
        except secgroups.FirewallError as e:  # fail closed: never an unfiltered guest that should be filtered
            return failed(f"security rules not applied: {e}")
        try:
            drive = self._write_config_drive(vm)
        except (ConfigDriveError, OSError) as e:
            return failed(f"config drive not written: {e}")
        try:
            xml = domain_xml(vm, self.domain_type, console, drive, self._host_mhz)
        except ValueError as e:
            return failed(f"the VM's definition is wrong: {e}")
        try:
            self._connection().createXML(xml, 0)
        except libvirt.libvirtError as e:
            return failed(f"libvirt refused to start it: {e}")
        return StartAnswer(vm_name=cmd.vm.name)

    def _with_guest_networks(self, vm: VirtualMachineTO) -> VirtualMachineTO:
        """Build the bridge and VXLAN device of each isolated network the VM has a NIC on (``vxlan://``)
        and put the NIC on that bridge."""
        nics, vnis = [], set()
        for nic in vm.nics:
            if nic.broadcast_uri.startswith("vxlan://"):
                if not self.guest_underlay:
                    raise vxlan.PlumbingError("this host has no guest underlay device for VXLAN networks "
                                              "(agent --guest-underlay)")
                try:
                    vni = int(nic.broadcast_uri.removeprefix("vxlan://"))
                except ValueError:
                    raise vxlan.PlumbingError(f"bad broadcast URI {nic.broadcast_uri[:40]!r}") from None
                net = vxlan.implement(vni, underlay=self.guest_underlay, local_ip=self._address,
                                      netns=self.netns)
                # recorded at once, so that a failure later in the start removes what was built
                self._vm_networks.setdefault(vm.name, set()).add(vni)
                nic = dataclasses.replace(nic, bridge=net.bridge)
                vnis.add(vni)
            nics.append(nic)
        return dataclasses.replace(vm, nics=tuple(nics)) if vnis else vm

    def _prepare_guest_side(self, vm: VirtualMachineTO) -> None:
        self._apply_security(vm.name, self._with_guest_networks(vm).nics)

    def _apply_security(self, name: str, nics: tuple[NicTO, ...]) -> int:
        """Give the VM's filtered NICs their rules (replacing older ones); how many NICs."""
        filtered = []
        for nic in nics:
            if nic.security is None:
                continue
            if not nic.bridge or not nic.ip:
                raise secgroups.FirewallError(f"NIC {nic.mac} has security rules but no bridge or address")
            port = port_name(nic)
            secgroups.apply(port, nic.mac, nic.ip, nic.security, netns=self.netns)
            filtered.append((port, nic.ip))
        if filtered:
            self._vm_firewall[name] = filtered
        return len(filtered)

    @handles(SecurityGroupRulesCommand)
    async def security_rules(self, cmd: SecurityGroupRulesCommand) -> Answer:
        def apply() -> Answer:
            dom = self._domain(cmd.vm_name)
            if dom is None or not dom.isActive():
                return Answer(result=False, details=f"VM {cmd.vm_name} is not running on this host")
            bridges = {n.mac: n.bridge for n in self._running_nics(dom)}
            nics = tuple(dataclasses.replace(n, bridge=n.bridge or bridges.get(n.mac, "")) for n in cmd.nics)
            try:
                self._apply_security(cmd.vm_name, nics)
            except secgroups.FirewallError as e:
                return Answer(result=False, details=f"security rules not applied: {e}")
            return Answer()
        return await self._call(apply)

    def _running_nics(self, dom: Any) -> list[NicTO]:
        """A running domain's bridged NICs (MAC, bridge) as its XML says."""
        found = []
        for iface in ET.fromstring(dom.XMLDesc(0)).findall("devices/interface"):
            mac, source = iface.find("mac"), iface.find("source")
            if mac is not None and source is not None and source.get("bridge"):
                found.append(NicTO(uuid="", mac=mac.get("address", ""), bridge=source.get("bridge", "")))
        return found

    def _leave_guest_networks(self, name: str) -> None:
        """The VM is gone from this host: remove its networks' devices where it was the last guest."""
        for port, address in self._vm_firewall.pop(name, ()):
            try:
                secgroups.remove(port, address, netns=self.netns)
            except secgroups.FirewallError as e:
                log.warning("security rules of %s not removed: %s", name, e)
        for vni in sorted(self._vm_networks.pop(name, ())):
            try:
                vxlan.shutdown(vni, netns=self.netns)
            except vxlan.PlumbingError as e:
                log.warning("guest network %d not removed: %s", vni, e)

    def _with_disk_paths(self, vm: VirtualMachineTO) -> VirtualMachineTO:
        """A disk given without a path (created in the same request, its path not known to the server
        yet) is the volume named by its uuid on its pool."""
        if all(d.path for d in vm.disks):
            return vm
        disks = []
        for d in vm.disks:
            if not d.path:
                found = self._pool_at(d.pool_path).lookup(d.volume_uuid)
                if found is None:
                    raise PoolError(f"disk not found: volume {d.volume_uuid} on pool {d.pool_path}")
                d = dataclasses.replace(d, path=found.path)
            disks.append(d)
        return dataclasses.replace(vm, disks=tuple(disks))

    @handles(StopCommand)
    async def stop(self, cmd: StopCommand) -> Answer:
        if not cmd.forced:
            asked = await self._call(self._shutdown, cmd.vm_name)
            if asked:
                with trio.move_on_after(cmd.graceful_seconds):
                    while await self._call(self._is_running, cmd.vm_name):
                        await trio.sleep(_STOP_POLL)  # the guest shuts down at its own pace
        return await self._call(self._destroy, cmd.vm_name)

    def _shutdown(self, name: str) -> bool:
        dom = self._domain(name)
        try:
            if dom is None or not dom.isActive():
                return False
            dom.shutdown()
        except libvirt.libvirtError as e:
            if _vanished(e):
                return False
            log.info("graceful shutdown of %s refused (%s); it will be powered off", name, e)
            return False
        return True

    def _is_running(self, name: str) -> bool:
        dom = self._domain(name)
        try:
            return dom is not None and bool(dom.isActive())
        except libvirt.libvirtError as e:
            if _vanished(e):
                return False
            raise

    def _destroy(self, name: str) -> Answer:
        dom = self._domain(name)
        try:
            if dom is not None:
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefine()
        except libvirt.libvirtError as e:
            if not _vanished(e):  # a transient guest that finished shutting down is stopped
                raise
        self._leave_guest_networks(name)
        return StopAnswer()

    @handles(RebootCommand)
    async def reboot(self, cmd: RebootCommand) -> Answer:
        return await self._call(self._reboot, cmd.vm_name)

    def _reboot(self, name: str) -> Answer:
        dom = self._domain(name)
        if dom is None or not dom.isActive():
            return RebootAnswer(result=False, details=f"VM {name} is not running on this host")
        dom.reboot(0)
        return RebootAnswer()

    @handles(PrepareForMigrationCommand)
    async def prepare_for_migration(self, cmd: PrepareForMigrationCommand) -> Answer:
        if embedded_root(self.uri) is not None:
            return PrepareForMigrationAnswer(result=False, details=EMBEDDED_MIGRATION)
        files = [d.path for d in cmd.vm.disks if d.path] + [f for f in (cmd.vm.kernel, cmd.vm.initrd) if f]
        missing = [f for f in files if not await trio.Path(f).exists()]
        if missing and self.domain_type != "test":
            return PrepareForMigrationAnswer(result=False, details=f"not on this host: {missing[0]}")
        try:  # the VM reads its config drive from this host once it runs here
            drive = await self._call(self._write_config_drive, cmd.vm)
        except (ConfigDriveError, OSError) as e:
            return PrepareForMigrationAnswer(result=False, details=f"config drive not written: {e}")
        try:  # its isolated networks' bridges, and its security rules, before it arrives
            await self._call(self._prepare_guest_side, cmd.vm)
        except vxlan.PlumbingError as e:
            return PrepareForMigrationAnswer(result=False, details=f"guest network not built: {e}")
        except secgroups.FirewallError as e:
            return PrepareForMigrationAnswer(result=False, details=f"security rules not applied: {e}")
        return PrepareForMigrationAnswer(dest_uri=self.migration_uri or f"qemu+tcp://{self._address}/system",
                                         console_log=self._console(cmd.vm.name), config_drive=drive)

    @handles(MigrateCommand)
    async def migrate(self, cmd: MigrateCommand) -> Answer:
        return await self._call(self._migrate, cmd)

    def _migrate(self, cmd: MigrateCommand) -> Answer:
        dom = self._domain(cmd.vm_name)
        if dom is None:
            return MigrateAnswer(result=False, details=f"VM {cmd.vm_name} is not on this host")
        if embedded_root(self.uri) is not None:
            return MigrateAnswer(result=False, details=EMBEDDED_MIGRATION)
        dest_uri = cmd.dest_uri or (f"qemu+tcp://{cmd.dest_ip}/system" if cmd.dest_ip else "")
        if not dest_uri:
            return MigrateAnswer(result=False, details="no destination to migrate to")
        # Peer to peer: this host's libvirtd talks to the destination's itself. Unsafe: libvirt counts only
        # network file systems as shared; the management server sends a migration only for VMs whose
        # volumes are all on cluster- or zone-wide pools, which every host of their scope mounts.
        flags = libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_UNSAFE
        flags |= libvirt.VIR_MIGRATE_LIVE if cmd.live else 0
        params: dict[str, Any] = {}
        if cmd.dest_ip:  # QEMU's own migration stream goes to the destination's address
            params[libvirt.VIR_MIGRATE_PARAM_URI] = f"tcp://{cmd.dest_ip}"
        if cmd.dest_console_log or cmd.dest_config_drive:  # files of the destination host
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
            params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = for_destination(xml, cmd.dest_console_log,
                                                                          cmd.dest_config_drive)
        try:
            dom.migrateToURI3(dest_uri, params, flags)
        except libvirt.libvirtError as e:
            return MigrateAnswer(result=False, details=f"libvirt could not migrate {cmd.vm_name}: {e}")
        self._leave_guest_networks(cmd.vm_name)  # it runs on the destination now
        return MigrateAnswer()

    @handles(CheckVirtualMachineCommand)
    async def check_vm(self, cmd: CheckVirtualMachineCommand) -> Answer:
        def state() -> PowerState:
            dom = self._domain(cmd.vm_name)
            try:
                return PowerState.OFF if dom is None else _POWER.get(dom.state()[0], PowerState.UNKNOWN)
            except libvirt.libvirtError as e:
                if _vanished(e):
                    return PowerState.OFF
                raise

        return CheckVirtualMachineAnswer(power_state=await self._call(state))

    @handles(GetVmStatsCommand)
    async def vm_stats(self, cmd: GetVmStatsCommand) -> Answer:
        def stats() -> dict[str, VmStats]:
            domains = [d for d in (self._domain(name) for name in cmd.vm_names) if d is not None]
            if not domains:
                return {}
            wanted = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
                      | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_VCPU
                      | libvirt.VIR_DOMAIN_STATS_INTERFACE | libvirt.VIR_DOMAIN_STATS_BLOCK)
            out = {}
            for dom, record in self._connection().domainListGetStats(domains, wanted):
                if "cpu.time" not in record or "balloon.current" not in record:  # (drivers that lack them)
                    _state, _max_kib, mem_kib, vcpus, cpu_ns = dom.info()
                    record = {"cpu.time": cpu_ns, "balloon.current": mem_kib, "vcpu.current": vcpus,
                              **record}
                out[dom.name()] = vm_stats_of(record)
            return out

        return GetVmStatsAnswer(stats=await self._call(stats))

    # --- host ------------------------------------------------------------------------------------

    @handles(AttachCommand)
    async def attach(self, cmd: AttachCommand) -> Answer:
        return await self._call(self._plug, cmd.vm_name, cmd.disk, True)

    @handles(DettachCommand)
    async def dettach(self, cmd: DettachCommand) -> Answer:
        return await self._call(self._plug, cmd.vm_name, cmd.disk, False)

    def _plug(self, name: str, disk: DiskTO, attach: bool) -> Answer:
        dom = self._domain(name)
        if dom is None or not dom.isActive():
            return Answer(result=False, details=f"VM {name} is not running on this host")
        try:
            if attach:
                dom.attachDeviceFlags(disk_xml(disk), libvirt.VIR_DOMAIN_AFFECT_LIVE)
            else:
                dom.detachDeviceFlags(disk_xml(disk), libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except (libvirt.libvirtError, ValueError) as e:
            return Answer(result=False, details=f"libvirt could not {'attach' if attach else 'detach'} "
                                                f"{disk.path}: {e}")
        return Answer()

    @handles(CheckHealthCommand)
    async def check_health(self, cmd: CheckHealthCommand) -> Answer:
        alive = await self._call(lambda: bool(self._connection().isAlive()))
        return CheckHealthAnswer(result=alive, details="" if alive else "the libvirt connection is dead")

    # --- console ---------------------------------------------------------------------------------

    @handles(GetVmConsoleLogCommand)
    async def console_log(self, cmd: GetVmConsoleLogCommand) -> Answer:
        text, exists = await trio.to_thread.run_sync(consoles.tail, self._console(cmd.vm_name), cmd.lines)
        return GetVmConsoleLogAnswer(log=text, exists=exists)

    @handles(CleanupVmCommand)
    async def cleanup_vm(self, cmd: CleanupVmCommand) -> Answer:
        """An expunged VM: no domain of it may stay, and its console log goes."""
        await self._call(self._destroy, cmd.vm_name)
        await trio.Path(self._console(cmd.vm_name)).unlink(missing_ok=True)
        await trio.Path(self._config_drive_path(cmd.vm_name)).unlink(missing_ok=True)
        return Answer()

    # --- storage ---------------------------------------------------------------------------------

    @handles(PrimaryStorageDownloadCommand)
    async def download_template(self, cmd: PrimaryStorageDownloadCommand) -> Answer:
        return await self._call(self._download_template, cmd)

    def _download_template(self, cmd: PrimaryStorageDownloadCommand) -> Answer:
        try:
            pool = self._pool_at(cmd.pool_path)
        except PoolError as e:
            return PrimaryStorageDownloadAnswer(result=False, details=str(e))
        name = f"template-{cmd.template_uuid}"
        vol = pool.lookup(name)
        if vol is None:
            source = urlparse(cmd.url).path if cmd.url.startswith("file:") else cmd.url
            if not source.startswith("/") or not os.path.isfile(source):
                return PrimaryStorageDownloadAnswer(
                    result=False, details=f"template source {cmd.url!r} is not a file on this host")
            try:
                vol = pool.copy_in(source, name)
            except (PoolError, OSError) as e:
                return PrimaryStorageDownloadAnswer(result=False, details=f"could not copy the template: {e}")
        return PrimaryStorageDownloadAnswer(install_path=vol.path, size_bytes=vol.size_bytes)

    @handles(GetStorageStatsCommand)
    async def storage_stats(self, cmd: GetStorageStatsCommand) -> Answer:
        def measure() -> Answer:
            if not os.path.isdir(cmd.pool_path):
                return GetStorageStatsAnswer(result=False, details=f"{cmd.pool_path} is not a directory here")
            try:
                capacity, available = self._pool_at(cmd.pool_path).space()
            except (PoolError, OSError) as e:
                return GetStorageStatsAnswer(result=False, details=str(e))
            return GetStorageStatsAnswer(capacity_bytes=capacity, used_bytes=capacity - available)

        return await self._call(measure)

    @handles(CreateCommand)
    async def create_volume(self, cmd: CreateCommand) -> Answer:
        return await self._call(self._create_volume, cmd)

    def _create_volume(self, cmd: CreateCommand) -> Answer:
        try:
            pool = self._pool_at(cmd.pool_path)
        except PoolError as e:
            return CreateAnswer(result=False, details=str(e))
        existing = pool.lookup(cmd.volume_uuid)
        if existing is not None:  # a retried create: the same volume
            return CreateAnswer(path=existing.path, size_bytes=existing.size_bytes)
        backing = None
        size = cmd.size_bytes
        if cmd.template_path:
            backing = pool.lookup_path(cmd.template_path)
            if backing is None:
                return CreateAnswer(result=False, details=f"template not on this pool: {cmd.template_path}")
            size = max(size, backing.size_bytes)
        if size <= 0:
            return CreateAnswer(result=False, details="a volume needs a size or a template")
        try:
            vol = pool.create(cmd.volume_uuid, size, cmd.format, backing, cmd.template_format or cmd.format,
                              cmd.preallocation)
        except PoolError as e:
            return CreateAnswer(result=False, details=str(e))
        return CreateAnswer(path=vol.path, size_bytes=size)

    @handles(DestroyCommand)
    async def destroy_volume(self, cmd: DestroyCommand) -> Answer:
        def destroy() -> Answer:
            pool = self._pool_at(os.path.dirname(cmd.path) if cmd.path else cmd.pool_path)
            path = cmd.path
            if not path:
                found = pool.lookup(cmd.volume_uuid)
                if found is None:
                    return Answer()  # already gone
                path = found.path
            pool.delete(path)
            return Answer()

        return await self._call(destroy)

    async def aclose(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._call(conn.close)
