"""Domain XML for a VirtualMachineTO: what libvirt is asked to run.

Built with ElementTree so names and paths are escaped. The serial console goes to a file when a
console log is given (QEMU appends to it across starts), else to a pty. A directly booted kernel gets
``cumulo.name=<VM name>`` added to its command line, so the guest knows who it is. A config drive is a
read-only CD-ROM on the IDE bus (``hdd``, where CloudStack's KVM agent puts it): guests find it by its
label, ``config-2``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from protocol.messages import DiskTO, NicTO, VirtualMachineTO

_DISK_BUS = "virtio"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _disk(disk: DiskTO) -> ET.Element:
    """A disk device; its device id names its target (0: vda, 1: vdb...), so a disk plugged in later
    gets the same name it would have had at boot."""
    if not 0 <= disk.device_id < 26:
        raise ValueError(f"disk device id {disk.device_id} is out of range (0 to 25)")
    d = ET.Element("disk", type="file", device="disk")
    _sub(d, "driver", name="qemu", type=disk.format or "qcow2")
    _sub(d, "source", file=disk.path)
    _sub(d, "target", dev=f"vd{chr(ord('a') + disk.device_id)}", bus=_DISK_BUS)
    _sub(d, "serial", disk.volume_uuid.replace("-", "")[:20])
    return d


def disk_xml(disk: DiskTO) -> str:
    """The XML of one disk device, for plugging it into (or out of) a running domain."""
    return ET.tostring(_disk(disk), encoding="unicode")


CONFIG_DRIVE_TARGET = "hdd"


def port_name(nic: NicTO) -> str:
    """The name of a NIC's tap on its bridge: fixed by its uuid, so its host's rules can name it."""
    return "cu" + "".join(c for c in nic.uuid.lower() if c in "0123456789abcdef")[:12]


def _config_drive(path: str) -> ET.Element:
    d = ET.Element("disk", type="file", device="cdrom")
    _sub(d, "driver", name="qemu", type="raw")
    _sub(d, "source", file=path)
    _sub(d, "target", dev=CONFIG_DRIVE_TARGET, bus="ide")
    _sub(d, "readonly")
    return d


def domain_xml(vm: VirtualMachineTO, domain_type: str, console_log: str = "", config_drive: str = "") -> str:
    """The libvirt domain definition of ``vm`` (``domain_type``: kvm, qemu or test); ``config_drive``: the
    path of its config drive image, when it has one."""
    domain = ET.Element("domain", type=domain_type)
    _sub(domain, "name", vm.name)
    _sub(domain, "uuid", vm.uuid)
    if vm.display_name:
        _sub(domain, "title", vm.display_name)
    _sub(domain, "memory", str(vm.memory_bytes // 1024), unit="KiB")
    _sub(domain, "vcpu", str(vm.vcpus))
    os_ = _sub(domain, "os")
    _sub(os_, "type", "hvm", arch=vm.arch)
    if vm.kernel:
        _sub(os_, "kernel", vm.kernel)
        if vm.initrd:
            _sub(os_, "initrd", vm.initrd)
        _sub(os_, "cmdline", f"{vm.boot_args} cumulo.name={vm.name}".strip())
    features = _sub(domain, "features")
    _sub(features, "acpi")
    _sub(domain, "on_poweroff", "destroy")
    _sub(domain, "on_reboot", "restart")
    _sub(domain, "on_crash", "destroy")
    devices = _sub(domain, "devices")
    for disk in sorted(vm.disks, key=lambda d: d.device_id):
        devices.append(_disk(disk))
    if config_drive:
        devices.append(_config_drive(config_drive))
    for nic in sorted(vm.nics, key=lambda n: n.device_id):
        iface = _sub(devices, "interface", type="bridge" if nic.bridge else "user")
        _sub(iface, "mac", address=nic.mac)
        if nic.bridge:
            _sub(iface, "source", bridge=nic.bridge)
            if nic.security is not None:  # its security rules name its bridge port
                _sub(iface, "target", dev=port_name(nic))
        _sub(iface, "model", type="virtio")
    for tag in ("serial", "console"):
        device = _sub(devices, tag, type="file" if console_log else "pty")
        if console_log:
            _sub(device, "source", path=console_log, append="on")
        if tag == "serial":
            _sub(device, "target", port="0")
        else:
            _sub(device, "target", type="serial", port="0")
    return ET.tostring(domain, encoding="unicode")


def for_destination(xml: str, console_log: str = "", config_drive: str = "") -> str:
    """A domain's XML with its serial console going to ``console_log`` and its config drive read from
    ``config_drive`` (for the migrated domain: both are files of the destination host); "" keeps one."""
    domain = ET.fromstring(xml)
    if console_log:
        for device in domain.findall("devices/serial") + domain.findall("devices/console"):
            source = device.find("source")
            if device.get("type") == "file" and source is not None:
                source.set("path", console_log)
    if config_drive:
        for device in domain.findall("devices/disk[@device='cdrom']"):
            target, source = device.find("target"), device.find("source")
            if target is not None and target.get("dev") == CONFIG_DRIVE_TARGET and source is not None:
                source.set("file", config_drive)
    return ET.tostring(domain, encoding="unicode")
