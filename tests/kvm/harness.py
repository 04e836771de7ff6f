"""A real KVM cloud on this machine: the management server and libvirt agents, each its own process over
real TCP, set up through the API with ``cs`` as an operator would. Each agent uses an embedded QEMU root
(no daemon), or with ``daemons=True`` its own libvirtd: a real libvirtd in a private mount namespace whose
``/etc/libvirt``, ``/run/libvirt``, ``/var/lib/libvirt``, ``/var/log/libvirt`` and ``/var/cache/libvirt``
are directories of that host, with its own host UUID, so two of them on one machine are two hosts to
libvirt and can live-migrate between each other.

Used by the real-guest integration test and by ``benchmarks/guest_boot.py``. Layout under a short
working directory (QEMU's monitor sockets live under each root, and UNIX socket names are limited to 108
bytes): ``mgmt/`` (data directory), ``shared/`` (the cluster's primary storage, seen by every host at the
same path, as an NFS export would be) and ``h<N>/`` per host (embedded root, local pool, agent state).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cs import CloudStack

from agent.kvm.guest_template import MARKER, build, is_built
from agent.kvm.host import QEMU_CONF, qemu_driver_installed

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_DIR = Path(os.environ.get("CUMULO_GUEST_TEMPLATE", REPO / ".cache" / "guest-template"))


def guest_template() -> Path:
    """The tiny guest template, built (once, cached in ``.cache/``) when it is not there yet."""
    if not is_built(TEMPLATE_DIR):
        build(TEMPLATE_DIR)
    return TEMPLATE_DIR


def missing_tools() -> list[str]:
    """What this machine lacks to boot real guests (``make test`` installs it)."""
    tools = ("qemu-system-x86_64", "qemu-img", "mke2fs", "dpkg-deb", "apt-get")
    missing = [t for t in tools if not shutil.which(t)]
    if not qemu_driver_installed():
        missing.append("libvirt-daemon-driver-qemu")
    return missing


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)  # polling another process's state: nothing to wait on instead


@dataclass
class Host:
    name: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path
    daemon: subprocess.Popen[bytes] | None = None

    @property
    def console_dir(self) -> Path:
        return self.root / "state" / "console"


@dataclass
class KvmCloud:
    work: Path
    template: Path
    domain_types: tuple[str, ...] = ("", "qemu")  # "": the agent decides (tries KVM once)
    daemons: bool = False  # each host its own libvirtd instead of an embedded root
    namespaces: bool = False  # each host in a network namespace of its own, joined by a veth underlay
    netns: list[str] = field(default_factory=list)
    mgmt: subprocess.Popen[bytes] | None = None
    hosts: list[Host] = field(default_factory=list)
    cs: Any = None
    ids: dict[str, str] = field(default_factory=dict)

    # --- bring up and tear down ----------------------------------------------------------------

    def _make_namespaces(self) -> str:
        """A network namespace per host, the hosts joined by a veth pair (their underlay, 192.168.77.N/24,
        for VXLAN), each host reaching the management server over a veth pair of its own to this
        namespace (10.99.N.2 to 10.99.0.1, which the server binds to). All made here, removed by close."""
        tag = uuid.uuid4().hex[:5]
        n = len(self.domain_types)
        self.netns = [f"cu{tag}h{i + 1}" for i in range(n)]
        for ns in self.netns:
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        if n >= 2:
            _ip("link", "add", "ul0", "netns", self.netns[0], "type", "veth", "peer", "name", "ul0", "netns",
                self.netns[1])
            for i in range(2):
                _ip("-n", self.netns[i], "addr", "add", f"192.168.77.{i + 1}/24", "dev", "ul0")
                _ip("-n", self.netns[i], "link", "set", "dev", "ul0", "up")
        for i, ns in enumerate(self.netns):
            outside = f"cu{tag}m{i + 1}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", "mg0", "netns", ns)
            if i == 0:
                _ip("addr", "add", "10.99.0.1/32", "dev", outside)
            _ip("link", "set", "dev", outside, "up")
            _ip("route", "add", f"10.99.{i + 1}.2/32", "dev", outside)
            _ip("-n", ns, "addr", "add", f"10.99.{i + 1}.2/32", "dev", "mg0")
            _ip("-n", ns, "link", "set", "dev", "mg0", "up")
            _ip("-n", ns, "route", "add", "10.99.0.1/32", "dev", "mg0")
        return "10.99.0.1"

    def start(self) -> KvmCloud:
        api_port, agent_port = free_port(), free_port()
        bind = self._make_namespaces() if self.namespaces else "127.0.0.1"
        data = self.work / "mgmt"
        data.mkdir(parents=True)
        args = [
            sys.executable,
            "-m",
            "mgmt",
            "serve",
            "--data-dir",
            str(data),
            "--api-port",
            str(api_port),
            "--agent-port",
            str(agent_port),
            "--bind",
            bind,
        ]
        with open(self.work / "mgmt.log", "wb") as log:
            self.mgmt = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        creds_file = data / "admin-credentials.json"
        wait_for("the management server's admin credentials", creds_file.exists, 60)
        creds = json.loads(creds_file.read_text())
        self.cs = CloudStack(
            endpoint=creds["url"],
            key=creds["apikey"],
            secret=creds["secretkey"],
            poll_interval=0.05,
            job_timeout=180,
            timeout=60,
        )
        self._set_up_zone()
        for i, domain_type in enumerate(self.domain_types):
            self.hosts.append(self._start_agent(f"h{i + 1}", agent_port, domain_type, bind, i))
        wait_for("every KVM host Up", lambda: self._hosts_up() == len(self.hosts), 90, 0.2)
        return self

    def _set_up_zone(self) -> None:
        cs = self.cs
        zone = cs.createZone(name="zone1", networktype="Basic", dns1="10.0.0.2", internaldns1="10.0.0.2")[
            "zone"
        ]
        pod = cs.createPod(
            zoneid=zone["id"],
            name="pod1",
            gateway="10.0.0.1",
            netmask="255.255.255.0",
            startip="10.0.0.10",
            endip="10.0.0.99",
        )["pod"]
        cluster = cs.addCluster(
            zoneid=zone["id"],
            podid=pod["id"],
            clustername="kvm1",
            hypervisor="KVM",
            clustertype="CloudManaged",
        )["cluster"][0]
        shared = self.work / "shared"
        shared.mkdir()
        cs.createStoragePool(
            zoneid=zone["id"],
            podid=pod["id"],
            clusterid=cluster["id"],
            name="kvm1-primary",
            url=f"file://{shared}",
            capacitybytes=20 * 2**30,
        )
        network = cs.createNetwork(
            zoneid=zone["id"],
            name="guests",
            displaytext="guests",
            gateway="10.1.0.1",
            netmask="255.255.0.0",
            startip="10.1.0.10",
            endip="10.1.0.250",
            vlan="untagged",
        )["network"]
        offering = cs.createServiceOffering(
            name="tiny", displaytext="tiny", cpunumber=1, cpuspeed=500, memory=256
        )["serviceoffering"]
        t = self.template
        template = cs.registerTemplate(
            name="cumulo-tiny",
            displaytext="tiny busybox guest",
            url=str(t / "template.qcow2"),
            format="QCOW2",
            hypervisor="KVM",
            zoneid="-1",
            ispublic="true",
            **{
                "details[0].kernel": str(t / "vmlinuz"),
                "details[0].initrd": str(t / "initrd.img"),
                "details[0].bootargs": json.loads((t / "template.json").read_text())["boot_args"],
            },
        )["template"][0]
        self.ids = {
            "zone": zone["id"],
            "pod": pod["id"],
            "cluster": cluster["id"],
            "network": network["id"],
            "offering": offering["id"],
            "template": template["id"],
        }

    def _start_agent(self, name: str, agent_port: int, domain_type: str, server: str = "127.0.0.1",
                     index: int = 0) -> Host:
        root = self.work / name
        daemon = None
        uri = f"qemu:///embed?root={root}"
        if self.daemons:
            daemon, uri = start_libvirtd(root, self.work / f"{name}-libvirtd.log")
        # fmt: off
        args = [sys.executable, "-m", "agent", "run", "--mgmt", f"{server}:{agent_port}",
                "--resource", "libvirt", "--libvirt-uri", uri, "--pool", f"{name}-local",
                "--pool-path", str(root / "local"), "--name", name, "--zone", "zone1", "--pod", "pod1",
                "--cluster", "kvm1", "--state-dir", str(root / "state"),
                "--probe-kernel", str(self.template / "vmlinuz"), "--token", self._token()]
        # fmt: on
        if domain_type:
            args += ["--domain-type", domain_type]
        if daemon is not None:
            args += ["--migration-uri", uri]  # the other host's libvirtd reaches this one by its socket
        if self.netns:  # the agent, its QEMU, bridges and taps in the host's namespace
            args = ["ip", "netns", "exec", self.netns[index], *args, "--guest-underlay", "ul0",
                    "--private-ip", f"192.168.77.{index + 1}"]
        log = self.work / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        return Host(name, root, process, log, daemon)

    def _token(self) -> str:
        """The registration token the hosts enroll with, made through the API as an operator would."""
        if not getattr(self, "token", ""):
            made = self.cs.createAgentRegistrationToken(uses=10, validity=3600)
            self.token: str = made["agentregistrationtoken"]["token"]
        return self.token

    def _hosts_up(self) -> int:
        for host in self.hosts:
            if host.process.poll() is not None:
                raise RuntimeError(f"agent {host.name} exited with {host.process.returncode}:\n{self.logs()}")
        listed = self.cs.listHosts(type="Routing").get("host", [])
        return sum(1 for h in listed if h["state"] == "Up" and h["hypervisor"] == "KVM")

    def logs(self, tail: int = 40) -> str:
        out = []
        for name in ["mgmt", *(h.name for h in self.hosts)]:
            path = self.work / f"{name}.log"
            lines = path.read_text(errors="replace").splitlines()[-tail:] if path.exists() else []
            out.append(f"--- {name} ---\n" + "\n".join(lines))
        return "\n".join(out)

    def close(self) -> None:
        for host in self.hosts:
            if host.process.poll() is None:
                host.process.send_signal(signal.SIGTERM)
        for host in self.hosts:
            try:
                host.process.wait(30)
            except subprocess.TimeoutExpired:
                host.process.kill()
            if host.daemon is not None:
                host.daemon.terminate()
                try:
                    host.daemon.wait(30)
                except subprocess.TimeoutExpired:
                    host.daemon.kill()
            for pid in self.qemu_pids(host):  # guests outlive the agent's process: stop what a test left
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.mgmt is not None and self.mgmt.poll() is None:
            self.mgmt.send_signal(signal.SIGTERM)
            try:
                self.mgmt.wait(30)
            except subprocess.TimeoutExpired:
                self.mgmt.kill()
        for ns in self.netns:  # its veths go with it (and their ends here)
            subprocess.run(["ip", "netns", "del", ns], check=False)

    # --- what a test looks at ------------------------------------------------------------------

    def deploy(self, name: str, **args: Any) -> dict[str, Any]:
        ids = self.ids
        return dict(
            self.cs.deployVirtualMachine(
                zoneid=ids["zone"],
                templateid=ids["template"],
                name=name,
                fetch_result=True,
                **{"networkids": ids["network"], "serviceofferingid": ids["offering"], **args},
            )["virtualmachine"]
        )

    def console(self, vm_id: str, lines: int = 100) -> str:
        return str(
            self.cs.getVirtualMachineConsoleLog(id=vm_id, lines=lines)["virtualmachineconsolelog"]["log"]
        )

    def wait_for_marker(self, vm: dict[str, Any], boot: int, timeout: float = 120) -> str:
        """The marker line of the guest's ``boot``-th boot, once it is on the console."""
        wanted = f"{MARKER} name={vm['instancename']} boot={boot} "

        def seen() -> str:
            return next((line for line in self.console(vm["id"]).splitlines() if line.startswith(wanted)), "")

        return str(wait_for(f"marker of boot {boot} of {vm['instancename']}", seen, timeout, 0.05))

    @staticmethod
    def qemu_pids(host: Host, vm_name: str = "") -> list[int]:
        """QEMU processes started under ``host``'s embedded root (of one VM when ``vm_name`` is given)."""
        pids = []
        for pid_file in (host.root / "run" / "qemu").glob("*.pid"):
            if vm_name and pid_file.stem != vm_name:
                continue
            try:
                pid = int(pid_file.read_text().strip())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if b"qemu" in cmdline:
                pids.append(pid)
        return pids


LIBVIRT_DIRS = ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt")


def start_libvirtd(root: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A libvirtd of its own for one host (see the module's doc); the process and its URI."""
    mounts = []
    for target in LIBVIRT_DIRS:
        own = (
            root
            / {
                "/etc/libvirt": "etc",
                "/run/libvirt": "run",
                "/var/lib/libvirt": "lib",
                "/var/log/libvirt": "log",
                "/var/cache/libvirt": "cache",
            }[target]
        )
        own.mkdir(parents=True, exist_ok=True)
        Path(target).mkdir(parents=True, exist_ok=True)  # a mount point (Debian's libvirt packages make them)
        mounts.append(f"mount --bind {own} {target}")
    (root / "etc" / "libvirtd.conf").write_text(f'host_uuid = "{uuid.uuid4()}"\n')
    (root / "etc" / "qemu.conf").write_text(QEMU_CONF)
    script = " && ".join(
        [*mounts, f"exec libvirtd --config /etc/libvirt/libvirtd.conf --pid-file {root}/libvirtd.pid"]
    )
    with open(log, "wb") as out:
        daemon = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    socket_path = root / "run" / "libvirt-sock"

    def listening() -> bool:
        if daemon.poll() is not None:
            raise RuntimeError(f"libvirtd for {root.name} exited:\n{log.read_text(errors='replace')[-2000:]}")
        return socket_path.exists()

    wait_for(f"libvirtd of {root.name} listening", listening, 30)
    return daemon, f"qemu+unix:///system?socket={socket_path}"


def short_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cu-", dir="/tmp"))
