"""Real guests end to end: ``cs`` → management server → planner → libvirt agent → embedded QEMU → a Linux
guest printing its marker line on the serial console, through a whole VM life on two hosts."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cs import CloudStackApiException

from agent.configdrive import SUMMARY
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
    assert sorted(p.name for p in (cloud.work / "shared").iterdir() if p.name != ".cumulo-ha") == [
        f"template-{cloud.ids['template']}"
    ]  # the template copy stays for the next VM (and the hosts' heartbeats)


def test_a_real_guest_applies_its_config_drive(kvm_cloud: KvmCloud) -> None:
    """Host name, address and user data from the config drive: the guest names itself, configures its NIC,
    prints what it applied (the line the agent's summary computes from the same drive) and runs its user
    data, a shell script."""
    cloud, cs = kvm_cloud, kvm_cloud.cs
    public = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    cs.registerSSHKeyPair(name="ops", publickey=public)
    script = b"#!/bin/sh\necho user-data-ran-$((6 * 7))\nip -4 -o addr show\n"
    vm = cloud.deploy("drive-1", keypair="ops", userdata=base64.b64encode(script).decode())
    assert vm["state"] == "Running" and vm["keypairs"] == "ops", cloud.logs()
    cloud.wait_for_marker(vm, boot=1)
    address = vm["nic"][0]["ipaddress"]
    lines = cloud.console(vm["id"]).splitlines()
    assert (f"{SUMMARY} hostname=drive-1 address={address} "
            f"userdata-sha256={hashlib.sha256(script).hexdigest()}") in lines
    prefix = sum(bin(int(part)).count("1") for part in vm["nic"][0]["netmask"].split("."))
    wait_for("the user data's output", lambda: "user-data-ran-42" in cloud.console(vm["id"]), 60, 0.05)
    wait_for("the address on the guest's NIC",
             lambda: f"inet {address}/{prefix}" in cloud.console(vm["id"]), 60, 0.05)
    host = next(h for h in cloud.hosts if h.name == vm["hostname"])
    image = host.root / "state" / "configdrive" / f"{vm['instancename']}.iso"
    assert image.is_file()
    cs.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)
    wait_for("the config drive image deleted", lambda: not image.exists(), 30)


@pytest.fixture
def namespaced_cloud(template: Path, request: pytest.FixtureRequest) -> Iterator[KvmCloud]:
    if shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("needs iproute2 and nftables")
    yield from running(
        KvmCloud(short_workdir(), template, domain_types=("qemu", "qemu"), namespaces=True), request
    )


def test_guests_on_an_isolated_network_across_two_hosts_with_security_groups(
        namespaced_cloud: KvmCloud) -> None:
    """Two hosts, each in its own network namespace, joined by a veth pair that carries VXLAN. Guests A
    (host 1) and B (host 2) on one isolated network, C (host 1) on another with the same subnet. A and C
    ping B's address from their user data every second; B's security group has no ICMP ingress, so A's
    pings fail until the rule is authorized, then succeed; C's never do (another VXLAN segment)."""
    cloud, cs = namespaced_cloud, namespaced_cloud.cs
    offering = cs.listNetworkOfferings(
        name="DefaultIsolatedNetworkOfferingWithSGService")["networkoffering"][0]
    zone = cloud.ids["zone"]
    net = cs.createNetwork(zoneid=zone, name="iso-1", networkofferingid=offering["id"])["network"]
    other = cs.createNetwork(zoneid=zone, name="iso-2", networkofferingid=offering["id"])["network"]
    group = cs.createSecurityGroup(name="b-servers")["securitygroup"]
    hosts = {h["name"]: h["id"] for h in cs.listHosts(type="Routing")["host"]}

    b = cloud.deploy("guest-b", networkids=net["id"], securitygroupnames="b-servers", hostid=hosts["h2"])
    b_ip = b["nic"][0]["ipaddress"]
    pinger = (f"#!/bin/sh\nwhile :; do if ping -c 1 -W 1 {b_ip} >/dev/null 2>&1; then echo PING-OK; "
              "else echo PING-FAIL; fi; sleep 1; done\n").encode()
    user_data = base64.b64encode(pinger).decode()
    a = cloud.deploy("guest-a", networkids=net["id"], hostid=hosts["h1"], userdata=user_data)
    c_ip = next(f"10.1.1.{n}" for n in range(200, 250) if f"10.1.1.{n}" != b_ip)
    c = cloud.deploy("guest-c", networkids=other["id"], hostid=hosts["h1"], userdata=user_data,
                     ipaddress=c_ip)
    for vm in (a, b, c):
        assert vm["state"] == "Running", cloud.logs()
        cloud.wait_for_marker(vm, boot=1)
        digest = hashlib.sha256(pinger).hexdigest() if vm is not b else "none"
        assert (f"{SUMMARY} hostname={vm['name']} address={vm['nic'][0]['ipaddress']} "
                f"userdata-sha256={digest}") in cloud.console(vm["id"]).splitlines()
    listed = {n["id"]: n for n in cs.listNetworks(listall=True)["network"]}
    assert listed[net["id"]]["broadcasturi"] != listed[other["id"]]["broadcasturi"]  # two VXLAN ids

    def pings(vm: dict[str, Any], outcome: str) -> int:
        return cloud.console(vm["id"], lines=1000).count(outcome)

    wait_for("A's pings to fail (B lets no ICMP in)", lambda: pings(a, "PING-FAIL") >= 2, 60, 0.2)
    assert pings(a, "PING-OK") == 0
    cs.authorizeSecurityGroupIngress(securitygroupid=group["id"], protocol="icmp", icmptype=-1, icmpcode=-1,
                                     cidrlist="10.1.1.0/24", fetch_result=True)
    wait_for("A's pings to reach B", lambda: pings(a, "PING-OK") >= 2, 60, 0.2)
    c_failed = pings(c, "PING-FAIL")
    wait_for("C to keep pinging", lambda: pings(c, "PING-FAIL") >= c_failed + 3, 60, 0.2)
    assert pings(c, "PING-OK") == 0  # the same subnet on another segment: B is not there
    for vm in (a, b, c):
        cs.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)


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


class QemuWatch:
    """Counts, every few milliseconds for the whole test, the QEMU processes running one VM on every
    host: at no moment may there be two."""

    def __init__(self, cloud: KvmCloud, vm_name: str) -> None:
        self.cloud, self.vm_name, self.most, self.samples = cloud, vm_name, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            running = sum(len(self.cloud.qemu_pids(h, self.vm_name)) for h in self.cloud.hosts)
            self.most, self.samples = max(self.most, running), self.samples + 1
            self._stop.wait(0.02)  # the sampling period of the watch itself

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.most


def _ha_guest(cloud: KvmCloud, name: str) -> tuple[dict[str, Any], Any]:
    beats = cloud.work / "shared" / ".cumulo-ha"
    wait_for("both hosts' heartbeats on the shared pool",
             lambda: beats.is_dir() and len([p for p in beats.iterdir() if not p.name.startswith(".")]) >= 2,
             60, 0.2)
    vm = cloud.deploy(name)
    cloud.cs.updateVirtualMachine(id=vm["id"], haenable="true")
    cloud.wait_for_marker(vm, boot=1)
    return vm, next(h for h in cloud.hosts if h.name == vm["hostname"])


def test_a_dead_host_s_ha_guest_boots_on_the_other_host(kvm_cloud: KvmCloud) -> None:
    cloud = kvm_cloud
    vm, first = _ha_guest(cloud, "survivor")
    watch = QemuWatch(cloud, vm["instancename"])
    (qemu,) = cloud.qemu_pids(first, vm["instancename"])
    first.process.kill()  # kill -9 the agent...
    os.kill(qemu, signal.SIGKILL)  # ...and its guest: the host is dead
    first.process.wait()

    def elsewhere() -> dict[str, Any] | None:
        now = cloud.cs.listVirtualMachines(id=vm["id"])["virtualmachine"][0]
        return now if now["state"] == "Running" and now["hostname"] != first.name else None

    moved = wait_for("the HA guest Running on the other host", elsewhere, 180, 0.5)
    cloud.wait_for_marker({**vm, **moved}, boot=2)  # the same root volume: its boot counter goes on
    assert watch.stop() == 1 and watch.samples > 10
    host = cloud.cs.listHosts(name=first.name)["host"][0]
    assert host["state"] == "Down"
    assert any(a["name"] == "ALERT.HOST" for a in cloud.cs.listAlerts().get("alert", []))


def test_a_hung_agent_s_guest_never_runs_twice(kvm_cloud: KvmCloud) -> None:
    cloud = kvm_cloud
    vm, first = _ha_guest(cloud, "stubborn")
    watch = QemuWatch(cloud, vm["instancename"])
    first.process.send_signal(signal.SIGSTOP)  # the agent hangs; its QEMU runs on, holding the disk
    try:
        # Whatever the server concludes (the host Down and fenced, or alive because the guest writes its
        # disk), a second QEMU must never run the guest: QEMU's image lock refuses the disk, and the
        # restart is retried later, never forced.
        def acted() -> bool:
            log = (cloud.work / "mgmt.log").read_text(errors="replace")
            return "HA Restart of VM" in log or "alive on shared storage" in log

        wait_for("the server to act on the hung host", acted, 240, 0.5)
        assert len(cloud.qemu_pids(first, vm["instancename"])) == 1
    finally:
        first.process.send_signal(signal.SIGCONT)
    # The agent wakes: a fenced host stops its guest; the HA restart then gets the disk. Either way
    # the guest ends up running exactly once.
    def running_once() -> bool:
        now = cloud.cs.listVirtualMachines(id=vm["id"])["virtualmachine"][0]
        return now["state"] == "Running" and sum(
            len(cloud.qemu_pids(h, vm["instancename"])) for h in cloud.hosts) == 1

    wait_for("the guest running exactly once", running_once, 240, 0.5)
    assert watch.stop() == 1 and watch.samples > 10


def test_a_real_guest_runs_as_its_offering_tunes_its_disk_and_reports_its_statistics(
        kvm_cloud: KvmCloud) -> None:
    """An offering's disk tuning reaches QEMU (cache mode and I/O limits in the running domain, a fully
    preallocated root overlay), and the guest's statistics come from libvirt: its CPU time grows while it
    boots, and the metrics commands and /metrics show them."""
    cloud, cs = kvm_cloud, kvm_cloud.cs
    cs.updateConfiguration(name="vm.stats.interval", value="300")  # (read again every second)
    offering = cs.createServiceOffering(
        name="tuned", cpunumber=1, cpuspeed=500, memory=256, cachemode="writethrough", provisioningtype="fat",
        bytesreadrate=50_000_000, iopswriterate=400, limitcpuuse="true")["serviceoffering"]
    assert (offering["cacheMode"], offering["provisioningtype"], offering["diskBytesReadRate"]) == (
        "writethrough", "fat", 50_000_000)
    vm = cloud.deploy("tuned-1", serviceofferingid=offering["id"])
    assert vm["state"] == "Running", cloud.logs()
    host = next(h for h in cloud.hosts if h.name == vm["hostname"])
    running = (host.root / "run" / "qemu" / f"{vm['instancename']}.xml").read_text()
    assert "cache='writethrough'" in running and "<read_bytes_sec>50000000</read_bytes_sec>" in running
    assert "<write_iops_sec>400</write_iops_sec>" in running and "<quota>" in running
    root = cs.listVolumes(virtualmachineid=vm["id"], type="ROOT")["volume"][0]
    assert root["provisioningtype"] == "fat" and root["diskBytesReadRate"] == 50_000_000
    overlay = cloud.work / "shared" / root["id"]
    assert overlay.stat().st_blocks * 512 >= root["size"]  # fully allocated up front

    url = cs.endpoint.replace("/client/api", "/metrics")

    def cpu_seconds() -> float:
        with urllib.request.urlopen(url, timeout=30) as r:
            text = r.read().decode()
        found = [line for line in text.splitlines()
                 if line.startswith("cumulo_vm_cpu_seconds_total{") and vm["id"] in line]
        return float(found[0].rsplit(" ", 1)[1]) if found else 0.0

    first = wait_for("the guest's first statistics", cpu_seconds, 60, 0.05)
    later = wait_for("its CPU time growing while it boots",
                     lambda: (t := cpu_seconds()) > first and t, 60, 0.05)
    assert later > first > 0
    cloud.wait_for_marker(vm, boot=1)
    metrics = cs.listVirtualMachinesMetrics(id=vm["id"])["virtualmachine"][0]
    assert metrics["memorykbs"] == 256 * 1024 and metrics["diskkbsread"] > 0, metrics
    assert float(metrics["cpuused"].rstrip("%")) >= 0 and metrics["cputotal"] == "0.50 Ghz"
    host_metrics = cs.listHostsMetrics(name=host.name)["host"][0]
    assert host_metrics["instances"].startswith("1 /")
    cs.destroyVirtualMachine(id=vm["id"], expunge="true", fetch_result=True)
