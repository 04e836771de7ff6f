"""Opening libvirt on a KVM host: the embedded QEMU driver's setup, and KVM-or-TCG by trying.

``qemu:///embed?root=DIR`` runs libvirt's QEMU driver inside the agent's process, no daemon. It needs a
libvirt event loop running in a thread, a ``DIR/etc/qemu.conf`` (run QEMU as root with no security
driver, guest console files written by QEMU itself rather than virtlogd) and a ``libvirt-qemu`` user and
group, which the driver looks up even when it runs QEMU as root. The agent sets all of this up.

Whether guests can use KVM is decided by booting a kernel once under ``type='kvm'``: ``/dev/kvm`` can be
present and openable while QEMU cannot run a guest on it (nested virtualisation that hangs the guest or
makes QEMU abort). The verdict is kept in the state directory, keyed by the libvirt, QEMU and host
kernel versions and the probe kernel, so the probe runs once per host and software version.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from glob import glob
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from ..resource import HostSetupError

log = logging.getLogger(__name__)

QEMU_CONF = """# Written by the Cumulo agent for libvirt's embedded QEMU driver.
user = "root"
group = "root"
security_driver = "none"
stdio_handler = "file"
"""
QEMU_USER = "libvirt-qemu"
PROBE_SECONDS = 15.0  # a working KVM guest prints its banner in well under a second
PROBE_BANNER = b"Linux version"

_loop_lock = threading.Lock()
_loop_started = False


def embedded_root(uri: str) -> str | None:
    """The root directory of an embedded-driver URI (``qemu:///embed?root=DIR``), else None."""
    parsed = urlparse(uri)
    if parsed.path != "/embed":
        return None
    roots = parse_qs(parsed.query).get("root", [])
    if not roots or not roots[0].startswith("/"):
        raise HostSetupError(f"{uri}: the embedded driver needs an absolute root directory (?root=/path)")
    return roots[0]


def start_event_loop(libvirt: Any) -> None:
    """Register libvirt's default event loop and run it in a daemon thread (once per process)."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _loop_started = True


def _ensure_qemu_user() -> None:
    try:
        grp.getgrnam(QEMU_USER)
        pwd.getpwnam(QEMU_USER)
        return
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise HostSetupError(
            f"libvirt's QEMU driver needs a {QEMU_USER!r} user and group, and only root can "
            f"add them: groupadd -r {QEMU_USER}; useradd -r -g {QEMU_USER} {QEMU_USER}"
        )
    for args in (
        ["groupadd", "-r", "-f", QEMU_USER],
        ["useradd", "-r", "-g", QEMU_USER, "-d", "/nonexistent", "-s", "/usr/sbin/nologin", QEMU_USER],
    ):
        done = subprocess.run(args, capture_output=True, text=True, check=False)
        if done.returncode not in (0, 9):  # 9: useradd's "already exists"
            raise HostSetupError(f"{' '.join(args)} failed: {done.stderr.strip()}")
    log.info("added the %s user and group that libvirt's QEMU driver looks up", QEMU_USER)


def qemu_driver_installed() -> bool:
    """Whether libvirt's QEMU driver module is on this machine (the embedded driver loads it)."""
    return bool(glob("/usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so"))


def prepare_embedded(root: str) -> None:
    """Everything ``qemu:///embed?root=ROOT`` needs before it is opened; a clear error when it cannot."""
    if not qemu_driver_installed():
        raise HostSetupError(
            "libvirt's QEMU driver is not installed (Debian packages libvirt-daemon and "
            "libvirt-daemon-driver-qemu)"
        )
    if shutil.which("qemu-system-x86_64") is None:
        raise HostSetupError("QEMU is not installed (Debian package qemu-system-x86)")
    if len(os.path.join(root, "lib/qemu/domain-99999-xxxxxxxxxxxxxxxxxxxx/monitor.sock")) > 107:
        raise HostSetupError(
            f"embedded root {root!r} is too long: QEMU's monitor socket path under it "
            "would pass the 108-byte limit of UNIX socket names"
        )
    _ensure_qemu_user()
    conf = Path(root) / "etc" / "qemu.conf"
    if not conf.exists():
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(QEMU_CONF)


def kvm_device_usable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def default_probe_kernel() -> str:
    kernels = sorted(glob("/boot/vmlinuz-*"))
    return kernels[-1] if kernels else ""


def _probe_xml(name: str, kernel: str, console: str) -> str:
    return (
        f"<domain type='kvm'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>"
        f"<os><type arch='x86_64'>hvm</type><kernel>{kernel}</kernel>"
        "<cmdline>console=ttyS0 panic=-1</cmdline></os><on_poweroff>destroy</on_poweroff>"
        "<on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>"
        f"<devices><serial type='file'><source path='{console}'/><target port='0'/></serial></devices>"
        "</domain>"
    )


def probe_kvm(conn: Any, libvirt: Any, kernel: str, scratch: str) -> tuple[bool, str]:
    """Boot ``kernel`` under KVM with no root disk: a working KVM prints the kernel banner at once."""
    name = f"cumulo-kvm-probe-{uuid.uuid4().hex[:8]}"
    work = tempfile.mkdtemp(prefix="kvm-probe-", dir=scratch)
    console = os.path.join(work, "console.log")
    dom = None
    try:
        try:
            dom = conn.createXML(_probe_xml(name, kernel, console), 0)
        except libvirt.libvirtError as e:
            return False, f"QEMU refused to start a KVM guest: {e}"
        deadline = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < deadline:
            try:
                with open(console, "rb") as f:
                    if PROBE_BANNER in f.read():
                        return True, "a KVM guest booted"
            except FileNotFoundError:
                pass
            try:
                if not dom.isActive():
                    return False, "the KVM guest stopped before printing anything (QEMU aborted?)"
            except libvirt.libvirtError:
                return False, "the KVM guest vanished before printing anything (QEMU aborted?)"
            time.sleep(0.1)  # polling a file QEMU writes; nothing to wait on instead
        return False, f"a KVM guest printed nothing in {PROBE_SECONDS:.0f} s (KVM does not run guests here)"
    finally:
        if dom is not None:
            with contextlib.suppress(libvirt.libvirtError):  # already gone
                dom.destroy()
        shutil.rmtree(work, ignore_errors=True)


def choose_domain_type(conn: Any, libvirt: Any, *, probe_kernel: str, state_dir: str) -> str:
    """``kvm`` when a KVM guest really runs on this host, else ``qemu`` (TCG); cached in ``state_dir``."""
    if not kvm_device_usable():
        log.info("guests run under TCG: /dev/kvm is missing or cannot be opened")
        return "qemu"
    kernel = probe_kernel or default_probe_kernel()
    if not kernel or not os.path.isfile(kernel):
        log.warning(
            "guests run under TCG: no kernel to try KVM with (give --probe-kernel, or --domain-type "
            "kvm to use KVM untried)"
        )
        return "qemu"
    key = (
        f"libvirt {conn.getLibVersion()} qemu {conn.getVersion()} host {os.uname().release} "
        f"kernel {kernel} {os.stat(kernel).st_mtime_ns}"
    )
    cache = Path(state_dir) / "kvm-probe.json"
    try:
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            log.info(
                "guests run as %s (KVM probe cached in %s: %s)",
                cached["domain_type"],
                cache,
                cached["reason"],
            )
            return str(cached["domain_type"])
    except (OSError, ValueError, KeyError):
        pass
    cache.parent.mkdir(parents=True, exist_ok=True)
    works, reason = probe_kvm(conn, libvirt, kernel, str(cache.parent))
    domain_type = "kvm" if works else "qemu"
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "domain_type": domain_type, "reason": reason}))
    os.replace(tmp, cache)
    log.info("guests run as %s: %s", domain_type, reason)
    return domain_type
