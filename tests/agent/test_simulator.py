"""SimulatorResource: every command, with the refusals a real host would make."""

from __future__ import annotations

from agent.faults import FaultTable
from agent.resource import Placement
from agent.simulator import TEMPLATE_SIZE, HostSpec, SimulatorResource
from protocol.messages import (
    CheckHealthCommand,
    CheckOnHostCommand,
    CheckVirtualMachineCommand,
    CreateCommand,
    DestroyCommand,
    DiskTO,
    GetVmStatsCommand,
    MigrateCommand,
    PowerState,
    PrepareForMigrationCommand,
    PrimaryStorageDownloadCommand,
    RebootCommand,
    StartCommand,
    StartupStorageCommand,
    StopCommand,
    UnsupportedAnswer,
)

from .builders import GIB, vm


async def host(guid: str, **spec: int) -> SimulatorResource:
    res = SimulatorResource(HostSpec(**spec), FaultTable(), pool_path=f"/pool/{guid}")
    await res.startup_commands(Placement(guid, guid, "z", "p", "c"))
    return res


async def test_start_refuses_what_does_not_fit_and_stop_frees_it() -> None:
    h = await host("h1", memory_bytes=4 * GIB)
    assert (await h.execute(StartCommand(vm=vm("a", 3 * GIB)))).result
    refused = await h.execute(StartCommand(vm=vm("b", 2 * GIB)))
    assert refused.result is False
    assert refused.details == f"not enough memory: {2 * GIB} bytes asked, {GIB} free"
    assert (await h.execute(StopCommand(vm_name="a"))).result
    assert (await h.execute(StartCommand(vm=vm("b", 2 * GIB)))).result
    assert await h.power_report() == {"b": PowerState.ON}
    missing = await h.execute(StartCommand(vm=vm("c", GIB, (DiskTO(volume_uuid="x", path="/pool/h1/x"),))))
    assert missing.details == "disk not found: /pool/h1/x"


async def test_template_root_volume_and_deletion_account_for_the_pool() -> None:
    h = await host("h1", pool_bytes=10 * GIB)
    fetch = PrimaryStorageDownloadCommand(template_uuid="t1", url="http://x/t", pool_uuid="p")
    download = await h.execute(fetch)
    assert download.result and download.size_bytes == TEMPLATE_SIZE  # type: ignore[attr-defined]
    again = await h.execute(fetch)  # already on the pool: the same copy
    assert again.install_path == download.install_path  # type: ignore[attr-defined]
    root = await h.execute(CreateCommand(volume_uuid="v1", pool_uuid="p",
                                         template_path=download.install_path))  # type: ignore[attr-defined]
    assert root.result and root.size_bytes == TEMPLATE_SIZE  # type: ignore[attr-defined]
    big = await h.execute(CreateCommand(volume_uuid="v2", pool_uuid="p", size_bytes=7 * GIB))
    assert (big.result, big.details) == (False, f"local pool full: {7 * GIB} bytes asked, {6 * GIB} free")
    startup = (await h.startup_commands(Placement("h1", "h1", "z", "p", "c")))[1]
    assert isinstance(startup, StartupStorageCommand)
    assert startup.available_bytes == 6 * GIB
    disk = DiskTO(volume_uuid="v1", path=root.path)  # type: ignore[attr-defined]
    await h.execute(StartCommand(vm=vm("a", disks=(disk,))))
    busy = await h.execute(DestroyCommand(volume_uuid="v1", pool_uuid="p", path=root.path))  # type: ignore[attr-defined]
    assert (busy.result, busy.details) == (False, f"volume {root.path} is in use by a")  # type: ignore[attr-defined]
    await h.execute(StopCommand(vm_name="a"))
    assert (await h.execute(DestroyCommand(volume_uuid="v1", pool_uuid="p"))).result
    assert (await h.execute(DestroyCommand(volume_uuid="v1", pool_uuid="p"))).result  # already gone
    no_template = await h.execute(CreateCommand(volume_uuid="v3", pool_uuid="p", template_path="/nope"))
    assert no_template.details == "template not on this pool: /nope"


async def test_migration_moves_the_vm_only_to_a_prepared_destination() -> None:
    src, dst = await host("src"), await host("dst", memory_bytes=2 * GIB)
    await src.execute(StartCommand(vm=vm("m", GIB)))
    unprepared = await src.execute(MigrateCommand(vm_name="m", dest_guid="dst"))
    assert (unprepared.result, unprepared.details) == (False, "destination dst is not prepared for it")
    too_big = await dst.execute(PrepareForMigrationCommand(vm=vm("huge", 3 * GIB)))
    assert too_big.result is False
    assert (await dst.execute(PrepareForMigrationCommand(vm=vm("m", GIB)))).result
    assert (await src.execute(MigrateCommand(vm_name="m", dest_guid="dst"))).result
    assert await src.power_report() == {} and await dst.power_report() == {"m": PowerState.ON}
    gone = await src.execute(MigrateCommand(vm_name="m", dest_guid="dst"))
    assert gone.details == "VM m is not on this host"
    await src.aclose()
    await dst.aclose()


async def test_checks_stats_reboot_and_neighbours() -> None:
    a, b = await host("a"), await host("b")
    await a.execute(StartCommand(vm=vm("v")))
    assert (await a.execute(CheckVirtualMachineCommand(vm_name="v"))).power_state is PowerState.ON  # type: ignore[attr-defined]
    assert (await a.execute(CheckVirtualMachineCommand(vm_name="w"))).power_state is PowerState.OFF  # type: ignore[attr-defined]
    assert (await a.execute(RebootCommand(vm_name="v"))).result
    stats = (await a.execute(GetVmStatsCommand(vm_names=("v", "w")))).stats  # type: ignore[attr-defined]
    assert set(stats) == {"v"} and stats["v"].memory_kbs == GIB // 1024
    assert (await a.execute(CheckHealthCommand())).result
    # no oracle: a simulated neighbour knows of another host only what shared storage shows (the
    # agent shell answers CheckOnHost from the heartbeats, tests/agent/test_ha.py)
    assert isinstance(await a.execute(CheckOnHostCommand(host_guid="b")), UnsupportedAnswer)
    await a.aclose()
    await b.aclose()


def test_every_command_has_a_handler() -> None:
    from protocol.messages import COMMANDS

    # The handshake and certificates are the shell's business (or go to the server), not the resource's.
    shell = ("Startup", "Ping", "Ready", "Enroll", "RenewCertificate", "ProvisionCertificate",
             "SetupCertificate", "CheckOnHost", "Fence", "SetupMSList",
             "Forward")  # (server to server, over a peer link)
    agent_side = {name for name in COMMANDS if not name.startswith(shell)}
    assert {c.__name__ for c in SimulatorResource.supported_commands()} == agent_side
    from agent.kvm import LibvirtResource

    assert {c.__name__ for c in LibvirtResource.supported_commands()} == agent_side
