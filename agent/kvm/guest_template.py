"""Build a tiny bootable guest template from Debian packages, without installing them on the host.

``python -m agent build-template --out DIR`` leaves in DIR:

- ``vmlinuz``: the kernel of ``linux-image-cloud-amd64`` (the versioned package it depends on),
- ``initrd.img``: a gzipped newc cpio with ``busybox-static``, the few kernel modules the guest needs
  (virtio disk and network, the IDE CD-ROM and ISO 9660 of the config drive, ACPI power button, input
  events) and an ``/init`` script,
- ``template.qcow2``: a 32 MiB ext4 root disk with ``/etc/cumulo-template`` (the root volume's template),
- ``template.json``: what was built, from which package versions, and the boot arguments to register.

The init script mounts the root disk, counts boots in ``/var/boot-count`` on it (so a root volume is
seen to keep its data across a stop and start), applies its config drive (host name, the default NIC's
static address and route, user data that is a shell script runs in the background) and prints

    cumulo-config-drive: hostname=<name> address=<IPv4> userdata-sha256=<hex, or none>

then the marker line

    CUMULO-GUEST-READY name=<cumulo.name from the kernel command line> boot=<n> template=<name>

to the serial console, and powers off when the ACPI power button is pressed (libvirt's shutdown and
reboot). The packages are fetched with ``apt-get download`` and opened with ``dpkg-deb -x``; making the
disk needs ``mke2fs`` (e2fsprogs) and ``qemu-img``; the cpio archive is written here in Python.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

MARKER = "CUMULO-GUEST-READY"
BOOT_ARGS = "console=ttyS0 quiet panic=-1"
TEMPLATE_NAME = "cumulo-tiny"
DISK_MIB = 32
# Bump when what is built changes, so a cached template is rebuilt.
FORMAT_VERSION = 4
# In load order (each after the modules it depends on); all are modules in Debian's cloud kernel.
MODULES = (
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/block/virtio_blk.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
    "drivers/scsi/scsi_common.ko",
    "drivers/scsi/scsi_mod.ko",
    "drivers/ata/libata.ko",
    "drivers/ata/ata_piix.ko",
    "drivers/cdrom/cdrom.ko",
    "drivers/scsi/sr_mod.ko",
    "fs/isofs/isofs.ko",
    "drivers/acpi/button.ko",
    "drivers/input/evdev.ko",
)
BUSYBOX_LINKS = ("sh", "mount", "umount", "insmod", "cat", "sleep", "sync", "poweroff", "dd", "mkdir",
                 "hostname", "sed", "head", "cut", "sha256sum", "ifconfig", "route", "ip", "ping")

INIT = r"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in /lib/modules/*.ko; do insmod "$m"; done
name=unknown
for arg in $(cat /proc/cmdline); do
    case "$arg" in cumulo.name=*) name="${arg#cumulo.name=}" ;; esac
done
boot=0
template=none
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ -b /dev/vda ] && mount -t ext4 /dev/vda /mnt; then
    template=$(cat /mnt/etc/cumulo-template)
    boot=$(( $(cat /mnt/var/boot-count 2>/dev/null || echo 0) + 1 ))
    echo "$boot" > /mnt/var/boot-count
    sync
fi
# The config drive (the CD-ROM labelled config-2): host name, the default NIC's address, user data. What
# is applied is printed in one line (agent.configdrive.summary writes the same line from the same files).
drive=
i=0
while [ -z "$drive" ] && [ $i -lt 50 ]; do
    for dev in /dev/sr0 /dev/sr1; do [ -b "$dev" ] && drive=$dev && break; done
    [ -n "$drive" ] || { sleep 0.1; i=$((i + 1)); }
done
if [ -n "$drive" ] && mkdir -p /cfg && mount -t iso9660 -o ro "$drive" /cfg; then
    meta=/cfg/cloudstack/metadata
    [ -f $meta/local-hostname.txt ] && hostname "$(cat $meta/local-hostname.txt)"
    nd=/cfg/openstack/latest/network_data.json
    value() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$nd" 2>/dev/null | head -n 1; }
    mac=$(value ethernet_mac_address)
    addr=$(value ip_address)
    mask=$(value netmask)
    gw=$(value gateway)
    nic=
    i=0
    while [ -n "$mac" ] && [ -z "$nic" ] && [ $i -lt 50 ]; do
        for n in /sys/class/net/*; do [ "$(cat $n/address 2>/dev/null)" = "$mac" ] && nic=${n##*/}; done
        [ -n "$nic" ] || { sleep 0.1; i=$((i + 1)); }
    done
    ifconfig lo 127.0.0.1 up
    if [ -n "$nic" ] && [ -n "$addr" ]; then
        ifconfig "$nic" "$addr" netmask "${mask:-255.255.255.0}" up
        [ -n "$gw" ] && route add default gw "$gw"
    fi
    ud=/cfg/openstack/latest/user_data
    digest=none
    [ -f "$ud" ] && digest=$(sha256sum "$ud" | cut -d " " -f 1)
    echo "cumulo-config-drive: hostname=$(hostname) address=$addr userdata-sha256=$digest"
    if [ -f "$ud" ] && [ "$(head -c 2 "$ud")" = "#!" ]; then
        (sh "$ud" 2>&1) &  # a script that runs long does not hold the boot up
    fi
fi
# The power button: every input device is opened here, before the marker is printed, so that a press
# that comes right after the marker waits in the device's queue (a daemon started after the marker could
# miss it on a slow host). The first event read from any of them powers off; dd reads whole events
# (evdev refuses reads shorter than one).
i=0
while [ ! -c /dev/input/event0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
fd=3
for dev in /dev/input/event*; do
    [ -c "$dev" ] && [ $fd -le 9 ] || continue
    eval "exec $fd<$dev"
    (dd bs=4096 count=1 <&$fd >/dev/null 2>&1 && sh /etc/acpi/PWRF/00000080) &
    fd=$((fd + 1))
done
echo "@MARKER@ name=$name boot=$boot template=$template"
while :; do sleep 3600; done
"""

POWER_BUTTON = """#!/bin/sh
echo "cumulo guest: power button, powering off" > /dev/console
sync
umount /mnt 2>/dev/null
poweroff -f
"""


class BuildError(Exception):
    """A step of the build failed; the message says which and why."""


def _run(*args: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BuildError(f"{args[0]} is not installed (needed to build the guest template)") from None
    if done.returncode != 0:
        raise BuildError(f"{' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _download(package: str, into: Path) -> Path:
    """``apt-get download`` one package into ``into`` (reading the package lists first when apt does not
    know it yet, as on a fresh machine); the .deb's path."""
    try:
        _run("apt-get", "download", "-q", package, cwd=into)
    except BuildError:
        _run("apt-get", "update", "-qq")
        _run("apt-get", "download", "-q", package, cwd=into)
    debs = sorted(into.glob(f"{package}_*.deb"))
    if not debs:
        raise BuildError(f"apt-get download {package} left no .deb in {into}")
    return debs[-1]


def _kernel_package(meta: Path) -> str:
    """The versioned kernel package the cloud meta-package depends on."""
    depends = _run("dpkg-deb", "-f", str(meta), "Depends")
    match = re.search(r"(linux-image-[0-9][^\s,(]*-cloud-amd64)", depends)
    if match is None:
        raise BuildError(f"{meta.name} depends on no cloud kernel image: {depends.strip()!r}")
    return match.group(1)


def _version(deb: Path) -> str:
    return _run("dpkg-deb", "-f", str(deb), "Version").strip()


def _cpio_newc(root: Path) -> bytes:
    """A newc cpio archive of ``root`` (directories, files and symlinks), as the kernel unpacks it."""
    out = bytearray()
    ino = 1

    def add(name: str, mode: int, data: bytes, rdev: tuple[int, int] = (0, 0)) -> None:
        nonlocal ino
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, *rdev, len(encoded), 0)
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))
        ino += 1

    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        st = path.lstat()
        if path.is_symlink():
            add(name, st.st_mode, os.readlink(path).encode())
        elif path.is_dir():
            add(name, st.st_mode, b"")
        else:
            add(name, st.st_mode, path.read_bytes())
    # The kernel opens /dev/console for init before anything is mounted: the node must be in the archive.
    add("dev/console", stat.S_IFCHR | 0o600, b"", rdev=(5, 1))
    add("TRAILER!!!", 0, b"")
    return bytes(out)


def _initramfs(busybox_root: Path, modules_root: Path, into: Path) -> bytes:
    root = into / "initramfs"
    for d in ("bin", "dev", "proc", "sys", "mnt", "cfg", "lib/modules", "etc/acpi/PWRF"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox_root / "bin/busybox", root / "bin/busybox")
    for link in BUSYBOX_LINKS:
        (root / "bin" / link).symlink_to("busybox")
    for i, module in enumerate(MODULES):
        source = modules_root / "kernel" / module
        if not source.is_file():
            raise BuildError(f"the kernel package has no {module} (is it still a module in this kernel?)")
        shutil.copyfile(source, root / "lib/modules" / f"{i:02d}-{source.name}")
    init = root / "init"
    init.write_text(INIT.replace("@MARKER@", MARKER))
    init.chmod(0o755)
    button = root / "etc/acpi/PWRF/00000080"
    button.write_text(POWER_BUTTON)
    button.chmod(0o755)
    return gzip.compress(_cpio_newc(root), compresslevel=6)


def _root_disk(into: Path, out: Path) -> None:
    tree = into / "rootfs"
    (tree / "etc").mkdir(parents=True)
    (tree / "var").mkdir()
    (tree / "etc/cumulo-template").write_text(TEMPLATE_NAME + "\n")
    raw = into / "template.raw"
    _run("mke2fs", "-q", "-F", "-t", "ext4", "-L", "cumulo-root", "-d", str(tree), str(raw), f"{DISK_MIB}M")
    _run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out))


def is_built(out: Path) -> bool:
    """Whether ``out`` holds a complete template of this builder's format."""
    try:
        meta = json.loads((out / "template.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("format_version") == FORMAT_VERSION and all(
        (out / name).is_file() for name in ("vmlinuz", "initrd.img", "template.qcow2")
    )


def build(out: Path) -> dict[str, object]:
    """Build the template into ``out`` (replacing what is there); its description."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cumulo-template-") as tmp:
        work = Path(tmp)
        debs = work / "debs"
        debs.mkdir()
        meta_deb = _download("linux-image-cloud-amd64", debs)
        kernel_deb = _download(_kernel_package(meta_deb), debs)
        busybox_deb = _download("busybox-static", debs)
        tree = work / "tree"
        for deb in (kernel_deb, busybox_deb):
            _run("dpkg-deb", "-x", str(deb), str(tree))
        kernels = sorted((tree / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise BuildError(f"{kernel_deb.name} has no boot/vmlinuz-*")
        release = kernels[-1].name.removeprefix("vmlinuz-")
        initrd = _initramfs(tree, tree / "lib/modules" / release, work)
        _root_disk(work, work / "template.qcow2")
        shutil.copyfile(kernels[-1], work / "vmlinuz")
        (work / "initrd.img").write_bytes(initrd)
        description: dict[str, object] = {
            "format_version": FORMAT_VERSION,
            "name": TEMPLATE_NAME,
            "kernel_release": release,
            "kernel_package": f"{kernel_deb.name.split('_')[0]} {_version(kernel_deb)}",
            "busybox_package": f"busybox-static {_version(busybox_deb)}",
            "marker": MARKER,
            "boot_args": BOOT_ARGS,
            "image": "template.qcow2",
            "format": "QCOW2",
            "kernel": "vmlinuz",
            "initrd": "initrd.img",
        }
        for name in ("template.qcow2", "vmlinuz", "initrd.img"):
            os.replace(work / name, out / name)
        (out / "template.json").write_text(json.dumps(description, indent=2) + "\n")
    return description


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent build-template",
        description="build the tiny guest template from Debian packages",
    )
    parser.add_argument("--out", default=".cache/guest-template", help="output directory")
    parser.add_argument("--force", action="store_true", help="rebuild even when a template is there")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if is_built(out) and not args.force:
        print(f"guest template already built in {out}")
        return 0
    try:
        description = build(out)
    except BuildError as e:
        print(f"python -m agent build-template: {e}", file=sys.stderr)
        return 1
    print(
        f"guest template built in {out}: kernel {description['kernel_release']}, "
        f"{description['busybox_package']}"
    )
    return 0
