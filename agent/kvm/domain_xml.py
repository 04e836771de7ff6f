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
CACHE_MODES = ("none", "writeback", "writethrough")
# libvirt's <iotune> children, in the order its schema wants them
IOTUNE_ORDER = ("read_bytes_sec", "write_bytes_sec", "read_iops_sec", "write_iops_sec", "read_bytes_sec_max",
                "write_bytes_sec_max", "read_iops_sec_max", "write_iops_sec_max", "read_bytes_sec_max_length",
                "write_bytes_sec_max_length", "read_iops_sec_max_length", "write_iops_sec_max_length")
CPU_PERIOD_US = 100_000  # the CFS period a capped guest's quota is of


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _disk(disk: DiskTO, io_policy: str = "", iothread: bool = False) -> ET.Element:
    """A disk device; its device id names its target (0: vda, 1: vdb...), so a disk plugged in later
    gets the same name it would have had at boot."""
    if not 0 <= disk.device_id < 26:
        raise ValueError(f"disk device id {disk.device_id} is out of range (0 to 25)")
    if disk.cache_mode not in CACHE_MODES:
        raise ValueError(f"disk cache mode {disk.cache_mode!r} is not one of {', '.join(CACHE_MODES)}")
    d = ET.Element("disk", type="file", device="disk")
    driver = _sub(d, "driver", name="qemu", type=disk.format or "qcow2", cache=disk.cache_mode or "none")
    if io_policy:
        if io_policy == "native" and disk.cache_mode not in ("none", ""):
            raise ValueError(f"native disk I/O needs cache mode none, not {disk.cache_mode}")
        driver.set("io", io_policy)
    if iothread:
        driver.set("iothread", "1")
    _sub(d, "source", file=disk.path)
    _sub(d, "target", dev=f"vd{chr(ord('a') + disk.device_id)}", bus=_DISK_BUS)
    if disk.iotune:
        tune = _sub(d, "iotune")
        for element in IOTUNE_ORDER:  # (libvirt's schema orders them)
            value = disk.iotune.get(element)
            if value:
                _sub(tune, element, str(_whole(value, element)))
        unknown = set(disk.iotune) - set(IOTUNE_ORDER)
        if unknown:
            raise ValueError(f"unknown disk I/O limits: {', '.join(sorted(unknown))}")
    _sub(d, "serial", disk.volume_uuid.replace("-", "")[:20])
    return d


def _whole(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value < 2**63:
        raise ValueError(f"{what} must be a whole number of at least 0")
    return value


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


IO_POLICIES = ("native", "threads", "io_uring")


def _tuning(details: dict[str, str]) -> dict[str, str]:
    """The KVM tuning a VM's details ask for (deployVirtualMachine's iodriverpolicy, iothreadsenabled,
    nicmultiqueuenumber, nicpackedvirtqueuesenabled), checked."""
    io_policy = details.get("io.policy", "")
    if io_policy and io_policy not in IO_POLICIES:
        raise ValueError(f"disk I/O policy {io_policy!r} is not one of {', '.join(IO_POLICIES)}")
    queues = details.get("nic.queues", "")
    if queues and not (queues.isdigit() and 1 <= int(queues) <= 64):
        raise ValueError(f"NIC queues {queues!r} must be 1 to 64")
    return {"io.policy": io_policy, "iothreads": "1" if details.get("iothreads") == "1" else "",
            "nic.queues": queues, "nic.packed": "true" if details.get("nic.packed") == "true" else ""}


def domain_xml(vm: VirtualMachineTO, domain_type: str, console_log: str = "", config_drive: str = "",
               host_mhz: int = 0) -> str:
    """The libvirt domain definition of ``vm`` (``domain_type``: kvm, qemu or test); ``config_drive``: the
    path of its config drive image, when it has one; ``host_mhz``: the speed of a host core (a VM with
    ``cpu_cap`` gets that share of one per vCPU)."""
    tuned = _tuning(vm.details)
    domain = ET.Element("domain", type=domain_type)
    _sub(domain, "name", vm.name)
    _sub(domain, "uuid", vm.uuid)
    if vm.display_name:
        _sub(domain, "title", vm.display_name)
    _sub(domain, "memory", str(vm.memory_bytes // 1024), unit="KiB")
    _sub(domain, "vcpu", str(vm.vcpus))
    if tuned["iothreads"]:
        _sub(domain, "iothreads", "1")
    if vm.cpu_cap and vm.cpu_speed_mhz and host_mhz:  # each vCPU gets its speed's share of a host core
        tune = _sub(domain, "cputune")
        _sub(tune, "period", str(CPU_PERIOD_US))
        share = min(1.0, vm.cpu_speed_mhz / host_mhz)
        _sub(tune, "quota", str(max(1000, int(CPU_PERIOD_US * share))))
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
        devices.append(_disk(disk, tuned["io.policy"], tuned["iothreads"] == "1"))
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
        if tuned["nic.queues"] or tuned["nic.packed"]:
            driver = _sub(iface, "driver", name="vhost")
            if tuned["nic.queues"]:
                driver.set("queues", tuned["nic.queues"])
            if tuned["nic.packed"] == "true":
                driver.set("packed", "on")
        if nic.rate_mbps:  # libvirt counts KiB/s: Mb/s * 1000000 / 8 / 1024
            rate = str(max(1, nic.rate_mbps * 1_000_000 // 8192))
            bandwidth = _sub(iface, "bandwidth")
            _sub(bandwidth, "inbound", average=rate)
            _sub(bandwidth, "outbound", average=rate)
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
