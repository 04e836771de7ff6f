"""LibvirtResource against libvirt's test driver: host facts, the VM lifecycle, volumes, and an agent."""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import trio

from agent.kvm import LibvirtResource
from agent.kvm.domain_xml import domain_xml
from agent.resource import HostSetupError, Placement
from agent.shell import Agent, AgentSettings
from protocol.messages import (
    CheckHealthCommand,
    CheckVirtualMachineCommand,
    CreateCommand,
    DestroyCommand,
    DiskTO,
    GetVmStatsCommand,
    MigrateCommand,
    NicTO,
    PowerState,
    PrimaryStorageDownloadCommand,
    RebootCommand,
    StartCommand,
    StartupRoutingCommand,
    StartupStorageCommand,
    StopCommand,
    UnsupportedAnswer,
    VirtualMachineTO,
)

from .fake_server import FakeServer

libvirt = pytest.importorskip("libvirt")
PLACEMENT = Placement(guid="kvm-1", name="kvm1", zone="z1", pod="p1", cluster="c1")
_names = itertools.count()


def unique(prefix: str) -> str:
    """test:///default keeps its state for the whole process: every test uses fresh names."""
    return f"{prefix}-{next(_names)}-{random.randrange(1 << 30)}"


def vm(name: str, disks: tuple[DiskTO, ...] = ()) -> VirtualMachineTO:
    return VirtualMachineTO(name=name, uuid=f"{random.randrange(16**8):08x}-1111-4111-8111-111111111111",
                            vcpus=2, memory_bytes=512 * 1024 * 1024, disks=disks,
                            nics=(NicTO(uuid="n1", mac="02:00:00:00:00:01", bridge="br0"),))


@pytest.fixture
async def resource() -> LibvirtResource:
    res = LibvirtResource("test:///default", pool="default-pool")
    yield res  # type: ignore[misc]
    await res.aclose()


async def test_host_facts_come_from_the_connection(tmp_path: Path) -> None:
    node = tmp_path / "node.xml"
    node.write_text(
        "<node><cpu><mhz>2600</mhz><model>x86_64</model><nodes>1</nodes><sockets>2</sockets><cores>8</cores>"
        "<threads>2</threads><active>32</active></cpu><memory>268435456</memory>"
        "<pool type='dir'><name>cumulo-primary</name><target><path>/pool-a</path></target></pool></node>")
    res = LibvirtResource(f"test://{node}")
    routing, storage = await res.startup_commands(PLACEMENT)
    assert isinstance(routing, StartupRoutingCommand) and isinstance(storage, StartupStorageCommand)
    assert (routing.cpus, routing.cpu_speed_mhz, routing.cpu_sockets) == (32, 2600, 2)
    assert routing.memory_bytes == 256 * 1024**3
    assert routing.hypervisor_type == "KVM" and routing.hypervisor_version.startswith("TEST ")
    assert (storage.name, storage.path) == ("cumulo-primary", "/pool-a")
    assert storage.capacity_bytes > 0 and storage.available_bytes <= storage.capacity_bytes
    await res.aclose()


async def test_missing_pool_without_a_path_is_a_clear_error() -> None:
    res = LibvirtResource("test:///default", pool="no-such-pool")
    with pytest.raises(HostSetupError, match="storage pool 'no-such-pool' does not exist"):
        await res.open()
    await res.aclose()


async def test_vm_lifecycle_start_report_reboot_stop(resource: LibvirtResource) -> None:
    name = unique("i")
    started = await resource.execute(StartCommand(vm=vm(name)))
    assert started.result, started.details
    assert (await resource.execute(StartCommand(vm=vm(name)))).result  # idempotent while running
    assert (await resource.power_report())[name] is PowerState.ON
    check = await resource.execute(CheckVirtualMachineCommand(vm_name=name))
    assert check.power_state is PowerState.ON  # type: ignore[attr-defined]
    assert (await resource.execute(RebootCommand(vm_name=name))).result
    stats = await resource.execute(GetVmStatsCommand(vm_names=(name, "absent")))
    assert set(stats.stats) == {name} and stats.stats[name].memory_kbs == 512 * 1024  # type: ignore[attr-defined]
    stopped = await resource.execute(StopCommand(vm_name=name, graceful_seconds=5))
    assert stopped.result, stopped.details
    assert name not in await resource.power_report()
    assert (await resource.execute(StopCommand(vm_name=name))).result  # stopping a stopped VM succeeds
    reboot = await resource.execute(RebootCommand(vm_name=name))
    assert (reboot.result, reboot.details) == (False, f"VM {name} is not running on this host")


async def test_a_config_drive_is_written_attached_and_removed_with_the_vm(tmp_path: Path) -> None:
    import base64

    from protocol.messages import CleanupVmCommand, ConfigDriveTO

    res = LibvirtResource("test:///default", pool="default-pool", state_dir=str(tmp_path))
    try:
        name = unique("i")
        drive = ConfigDriveTO(files={"openstack/latest/user_data": base64.b64encode(b"hi").decode()})
        started = await res.execute(StartCommand(vm=dataclasses.replace(vm(name), config_drive=drive)))
        assert started.result, started.details
        image = tmp_path / "configdrive" / f"{name}.iso"
        assert image.is_file()
        cdrom = ET.fromstring(res._domain(name).XMLDesc(0)).find("devices/disk[@device='cdrom']/source")
        assert cdrom is not None and cdrom.get("file") == str(image)
        bad = ConfigDriveTO(files={"../../etc/x": base64.b64encode(b"x").decode()})
        refused = await res.execute(StartCommand(vm=dataclasses.replace(vm(unique("i")), config_drive=bad)))
        assert not refused.result and "config drive not written" in refused.details
        assert (await res.execute(CleanupVmCommand(vm_name=name))).result
        assert not image.exists()
    finally:
        await res.aclose()


async def test_a_vm_on_an_isolated_network_needs_a_guest_underlay(resource: LibvirtResource) -> None:
    name = unique("i")
    nic = NicTO(uuid="n1", mac="02:00:00:00:00:02", broadcast_uri="vxlan://5000")
    refused = await resource.execute(StartCommand(vm=dataclasses.replace(vm(name), nics=(nic,))))
    assert not refused.result and "no guest underlay" in refused.details
    assert name not in await resource.power_report()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and nftables")
async def test_security_rules_are_applied_before_the_guest_runs_and_go_with_it() -> None:
    """The rules in nftables (in a namespace made here, standing for the host's), before the domain
    starts; a change replaces them; a stop removes them; a NIC the rules cannot name is refused."""
    from protocol.messages import SecurityGroupRulesCommand, SecurityRuleTO, SecurityTO

    ns = f"cumulo-fw-{random.randrange(1 << 30)}"
    assert subprocess.run(["ip", "netns", "add", ns], check=False).returncode == 0
    res = LibvirtResource("test:///default", pool="default-pool", netns=ns)
    try:
        def ruleset() -> str:
            return subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"], capture_output=True,
                                  text=True, check=True).stdout

        name = unique("i")
        icmp = SecurityTO(ingress=(SecurityRuleTO(protocol="icmp", cidrs=("10.9.0.0/24",)),))
        nic = NicTO(uuid="5f2c8a10-0000-4000-8000-000000000001", mac="02:00:00:00:00:04", ip="10.9.0.5",
                    bridge="br0", security=icmp)
        started = await res.execute(StartCommand(vm=dataclasses.replace(vm(name), nics=(nic,))))
        assert started.result, started.details
        text = ruleset()
        assert "chain to-10_9_0_5" in text and "10.9.0.0/24" in text and "cu5f2c8a100000" in text
        iface = ET.fromstring(res._domain(name).XMLDesc(0)).find("devices/interface/target")
        assert iface is not None and iface.get("dev") == "cu5f2c8a100000"
        ssh = SecurityTO(ingress=(SecurityRuleTO(protocol="tcp", start_port=22, end_port=22,
                                                 cidrs=("192.0.2.0/24",)),))
        changed = await res.execute(SecurityGroupRulesCommand(
            vm_name=name, nics=(dataclasses.replace(nic, bridge="", security=ssh),)))
        assert changed.result, changed.details
        text = ruleset()
        assert "192.0.2.0/24" in text and "10.9.0.0/24" not in text  # replaced, not added
        assert (await res.execute(StopCommand(vm_name=name, forced=True))).result
        assert "to-10_9_0_5" not in ruleset()
        bare = dataclasses.replace(nic, ip="")
        refused = await res.execute(StartCommand(vm=dataclasses.replace(vm(unique("i")), nics=(bare,))))
        assert not refused.result and "no bridge or address" in refused.details

        # a migration's destination builds the VM's isolated network and applies its rules before it comes
        subprocess.run(["ip", "-n", ns, "link", "add", "ul0", "type", "veth", "peer", "name", "ul1"],
                       check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", "192.168.77.1/24", "dev", "ul0"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "dev", "ul0", "up"], check=True)
        res.guest_underlay, res._address = "ul0", "192.168.77.1"
        arriving = NicTO(uuid="5f2c8a10-0000-4000-8000-000000000002", mac="02:00:00:00:00:05",
                         ip="10.9.0.6", broadcast_uri="vxlan://6000", security=icmp)
        from protocol.messages import PrepareForMigrationCommand

        prepared = await res.execute(PrepareForMigrationCommand(
            vm=dataclasses.replace(vm(unique("i")), nics=(arriving,))))
        assert prepared.result, prepared.details
        links = subprocess.run(["ip", "-n", ns, "link", "show"], capture_output=True, text=True).stdout
        assert "brvx-6000" in links and "vxlan6000" in links
        assert "chain to-10_9_0_6" in ruleset()

        # a start that fails after its network was built takes the network away again
        unnamed = dataclasses.replace(arriving, uuid="5f2c8a10-0000-4000-8000-000000000003",
                                      mac="02:00:00:00:00:06", ip="", broadcast_uri="vxlan://6001")
        refused = await res.execute(StartCommand(vm=dataclasses.replace(vm(unique("i")), nics=(unnamed,))))
        assert not refused.result and "no bridge or address" in refused.details
        links = subprocess.run(["ip", "-n", ns, "link", "show"], capture_output=True, text=True).stdout
        assert "brvx-6001" not in links and "vxlan6001" not in links
    finally:
        await res.aclose()
        subprocess.run(["ip", "netns", "del", ns], check=False)


async def test_forced_stop_powers_off_at_once(resource: LibvirtResource) -> None:
    name = unique("i")
    await resource.execute(StartCommand(vm=vm(name)))
    assert (await resource.execute(StopCommand(vm_name=name, forced=True))).result
    off = await resource.execute(CheckVirtualMachineCommand(vm_name=name))
    assert off.power_state is PowerState.OFF  # type: ignore[attr-defined]


async def test_migration_failure_is_reported_with_libvirts_reason(resource: LibvirtResource) -> None:
    name = unique("i")
    await resource.execute(StartCommand(vm=vm(name)))
    answer = await resource.execute(MigrateCommand(vm_name=name, dest_uri="test:///default"))
    assert answer.result is False
    assert f"libvirt could not migrate {name}" in answer.details
    missing = await resource.execute(MigrateCommand(vm_name=unique("nope"), dest_uri="test:///default"))
    assert "is not on this host" in missing.details
    await resource.execute(StopCommand(vm_name=name, forced=True))


async def test_root_volume_from_a_template_then_deleted(resource: LibvirtResource) -> None:
    template_uuid = unique("tmpl")
    pool = (await trio.to_thread.run_sync(resource._pool))._pool  # the libvirt pool under LibvirtPool
    await trio.to_thread.run_sync(
        pool.createXML, f"<volume><name>template-{template_uuid}</name><capacity unit='bytes'>{2 << 30}"
        "</capacity><target><format type='qcow2'/></target></volume>", 0)
    download = await resource.execute(PrimaryStorageDownloadCommand(
        template_uuid=template_uuid, url="http://example.invalid/t.qcow2", pool_uuid="p"))
    assert download.result, download.details
    template_path = download.install_path  # type: ignore[attr-defined]
    assert template_path.endswith(f"template-{template_uuid}")
    volume = unique("vol")
    create = CreateCommand(volume_uuid=volume, pool_uuid="p", template_path=template_path)
    created = await resource.execute(create)
    assert created.result, created.details
    assert created.size_bytes == 2 << 30  # type: ignore[attr-defined]
    again = await resource.execute(create)  # a retry gives the same volume
    assert again.path == created.path  # type: ignore[attr-defined]
    name = unique("i")
    disk = DiskTO(volume_uuid=volume, path=created.path)  # type: ignore[attr-defined]
    assert (await resource.execute(StartCommand(vm=vm(name, (disk,))))).result
    await resource.execute(StopCommand(vm_name=name, forced=True))
    assert (await resource.execute(DestroyCommand(volume_uuid=volume, pool_uuid="p",
                                                  path=created.path))).result  # type: ignore[attr-defined]
    assert (await resource.execute(DestroyCommand(volume_uuid=volume, pool_uuid="p"))).result  # gone: fine
    names = await trio.to_thread.run_sync(pool.listVolumes)
    assert volume not in names


async def test_template_from_a_missing_source_and_unknown_template_fail_clearly(
        resource: LibvirtResource) -> None:
    bad = await resource.execute(PrimaryStorageDownloadCommand(
        template_uuid=unique("t"), url="file:///nonexistent/t.qcow2", pool_uuid="p"))
    assert bad.result is False
    assert bad.details == "template source 'file:///nonexistent/t.qcow2' is not a file on this host"
    create = await resource.execute(CreateCommand(volume_uuid=unique("v"), pool_uuid="p",
                                                  template_path="/default-pool/none"))
    assert create.details == "template not on this pool: /default-pool/none"


async def test_unhandled_command_is_unsupported_and_host_checks_answer(resource: LibvirtResource) -> None:
    from protocol.messages import CheckOnHostCommand, PingRoutingCommand, PrepareForMigrationCommand

    answer = await resource.execute(PingRoutingCommand(host_id=1))
    assert isinstance(answer, UnsupportedAnswer)
    assert (await resource.execute(CheckHealthCommand())).result
    # the shell answers a neighbour's question from the shared pools' heartbeats, not the resource
    neighbour = await resource.execute(CheckOnHostCommand(host_guid="other"))
    assert isinstance(neighbour, UnsupportedAnswer)
    assert (await resource.execute(PrepareForMigrationCommand(vm=vm(unique("i"))))).result


def test_domain_xml_escapes_and_describes_the_vm() -> None:
    to = VirtualMachineTO(name="a<b", uuid="u", vcpus=3, memory_bytes=2 << 30, kernel="/k", initrd="/i",
                          boot_args="console=ttyS0 name=a<b", disks=(DiskTO(volume_uuid="v-1", path="/p/v"),),
                          nics=(NicTO(uuid="n", mac="02:00:00:00:00:09", bridge="cloudbr0"),))
    root = ET.fromstring(domain_xml(to, "qemu", console_log="/logs/a.log"))
    assert root.get("type") == "qemu" and root.findtext("name") == "a<b"
    assert root.findtext("memory") == str(2 << 20) and root.findtext("vcpu") == "3"
    assert root.findtext("os/cmdline") == "console=ttyS0 name=a<b cumulo.name=a<b"  # the guest knows its name
    assert root.find("devices/disk/source").get("file") == "/p/v"  # type: ignore[union-attr]
    assert root.find("devices/interface/source").get("bridge") == "cloudbr0"  # type: ignore[union-attr]
    for tag in ("serial", "console"):  # appended to across starts, so one run's log survives the next
        source = root.find(f"devices/{tag}/source")
        assert source is not None and source.attrib == {"path": "/logs/a.log", "append": "on"}


async def test_agent_with_the_libvirt_resource_starts_up_and_runs_commands(nursery: trio.Nursery) -> None:
    server = FakeServer()
    await nursery.start(server.serve)
    agent = Agent(AgentSettings(mgmt=[("127.0.0.1", server.port)], placement=PLACEMENT),
                  LibvirtResource("test:///default", pool="default-pool"))
    nursery.start_soon(agent.run)
    await agent.up.wait()
    name = unique("i")
    assert (await server.send("kvm-1", [StartCommand(vm=vm(name))])).answers[0].result
    link = server.link("kvm-1")
    await server.wait_for(lambda: link.pings and link.pings[-1].get(name) is PowerState.ON)  # type: ignore[union-attr]
    assert (await server.send("kvm-1", [StopCommand(vm_name=name, forced=True)])).answers[0].result
    await server.stop()
