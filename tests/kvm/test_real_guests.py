"""Real guests end to end: ``cs`` → management server → planner → libvirt agent → embedded QEMU → a Linux
guest printing its marker line on the serial console, through a whole VM life on two hosts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cs import CloudStackApiException

from agent.kvm.guest_template import MARKER
from agent.kvm.resource import EMBEDDED_MIGRATION

from .harness import KvmCloud, short_workdir, wait_for


@pytest.fixture
def kvm_cloud(template: Path, request: pytest.FixtureRequest) -> Iterator[KvmCloud]:
    yield from running(KvmCloud(short_workdir(), template), request)


@pytest.fixture
def libvirtd_cloud(template: Path, request: pytest.FixtureRequest) -> Iterator[KvmCloud]:
    if shutil.which("libvirtd") is None or shutil.which("unshare") is None:
        pytest.skip("needs libvirtd (Debian package libvirt-daemon) and unshare")
    yield from running(
        KvmCloud(short_workdir(), template, domain_types=("qemu", "qemu"), daemons=True), request
    )


def running(cloud: KvmCloud, request: pytest.FixtureRequest) -> Iterator[KvmCloud]:
    try:
        cloud.start()
        yield cloud
    except BaseException:
        print(f"logs in {cloud.work}:\n{cloud.logs()}")
        raise
    finally:
        cloud.close()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(f"logs in {cloud.work}:\n{cloud.logs()}")  # kept for a look at the whole of them
    else:
        shutil.rmtree(cloud.work, ignore_errors=True)


def test_a_real_guest_boots_stops_starts_reboots_and_leaves_nothing_behind(kvm_cloud: KvmCloud) -> None:
    cloud = kvm_cloud
    cs = cloud.cs
    vm = cloud.deploy("guest-1")
    assert vm["state"] == "Running", cloud.logs()
    host = next(h for h in cloud.hosts if h.name == vm["hostname"])
    line = cloud.wait_for_marker(vm, boot=1)
    assert line.endswith("template=cumulo-tiny")  # the root volume (an overlay on the template) is mounted
    assert len(cloud.qemu_pids(host, vm["instancename"])) == 1

    # Stop: ACPI power button, the guest powers itself off; its console log stays readable.
    stopped = cs.stopVirtualMachine(id=vm["id"], fetch_result=True)["virtualmachine"]
    assert stopped["state"] == "Stopped"
    assert "power button, powering off" in cloud.console(vm["id"])
    assert cloud.qemu_pids(host, vm["instancename"]) == []

    # Start: the same root volume, so the boot counter on it goes on.
    started = cs.startVirtualMachine(id=vm["id"], fetch_result=True)["virtualmachine"]
    assert started["state"] == "Running"
    vm = {**vm, **started}
    cloud.wait_for_marker(vm, boot=2)

    # Reboot: the guest powers off on ACPI and libvirt starts it again in the same QEMU.
    cs.rebootVirtualMachine(id=vm["id"], fetch_result=True)
    cloud.wait_for_marker(vm, boot=3)

    # Live migration between two embedded roots: refused, with the reason; the guest keeps running.
    other = next(h for h in cloud.hosts if h.name != vm["hostname"])
    other_id = next(h["id"] for h in cs.listHosts(name=other.name)["host"])
    with pytest.raises(CloudStackApiException) as refused:
        cs.migrateVirtualMachine(virtualmachineid=vm["id"], hostid=other_id, fetch_result=True)
    assert EMBEDDED_MIGRATION in str(refused.value.error)
    assert cs.listVirtualMachines(id=vm["id"])["virtualmachine"][0]["state"] == "Running"

    # Destroy and expunge: no domain, no overlay, no console log left.
    host = next(h for h in cloud.hosts if h.name == vm["hostname"])
    root_volume = cs.listVolumes(virtualmachineid=vm["id"], type="ROOT")["volume"][0]
    overlay = cloud.work / "shared" / root_volume["id"]
    assert overlay.is_file()
    console = host.console_dir / f"{vm['instancename']}.log"
    assert console.is_file()
    cs.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)
    assert cs.listVirtualMachines(id=vm["id"]).get("count", 0) == 0
    assert cloud.qemu_pids(host, vm["instancename"]) == []
    assert not (host.root / "run" / "qemu" / f"{vm['instancename']}.xml").exists()
    wait_for("the overlay and console log deleted", lambda: not overlay.exists() and not console.exists(), 30)
    assert sorted(p.name for p in (cloud.work / "shared").iterdir()) == [
        f"template-{cloud.ids['template']}"
    ]  # the template copy stays for the next VM


def test_a_real_guest_live_migrates_between_two_libvirtd_hosts(libvirtd_cloud: KvmCloud) -> None:
    cloud = libvirtd_cloud
    cs = cloud.cs
    vm = cloud.deploy("mover")
    cloud.wait_for_marker(vm, boot=1)
    source = next(h for h in cloud.hosts if h.name == vm["hostname"])
    dest = next(h for h in cloud.hosts if h.name != vm["hostname"])
    (pid,) = cloud.qemu_pids(source, vm["instancename"])
    dest_id = cs.listHosts(name=dest.name)["host"][0]["id"]

    moved = cs.migrateVirtualMachine(virtualmachineid=vm["id"], hostid=dest_id, fetch_result=True)
    moved = moved["virtualmachine"]
    assert (moved["state"], moved["hostid"], moved["hostname"]) == ("Running", dest_id, dest.name)
    assert (
        cloud.qemu_pids(source, vm["instancename"]) == []
        and len(cloud.qemu_pids(dest, vm["instancename"])) == 1
    )
    assert not Path(f"/proc/{pid}").exists()

    # Live: the guest did not boot again on the destination. Its console goes on in the destination's
    # console directory, where a reboot's marker shows the second boot (a cold start would have been the
    # second, and the reboot the third).
    cs.rebootVirtualMachine(id=vm["id"], fetch_result=True)
    cloud.wait_for_marker({**vm, **moved}, boot=2)
    markers = [line for line in cloud.console(vm["id"]).splitlines() if line.startswith(MARKER)]
    assert markers == [f"{MARKER} name={vm['instancename']} boot=2 template=cumulo-tiny"]
    assert (dest.console_dir / f"{vm['instancename']}.log").is_file()

    cs.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)
    assert cloud.qemu_pids(dest, vm["instancename"]) == []
    wait_for(
        "the console log deleted", lambda: not (dest.console_dir / f"{vm['instancename']}.log").exists(), 30
    )
