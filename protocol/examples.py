"""Realistic example messages: the shapes the benchmarks time, the tests feed, and the docs print.

A ping from a host running 8 VMs is about 300 bytes on the wire; a StartCommand for a VM with three disks
and three NICs is about 2.6 KB. Every value is derived from ``i`` so streams are varied but reproducible.
"""

from __future__ import annotations

from .messages import (
    DiskTO,
    NicTO,
    PingRoutingCommand,
    PowerState,
    StartCommand,
    VirtualMachineTO,
)


def ping(i: int = 0, vms: int = 8) -> PingRoutingCommand:
    """A host's periodic ping with the power state of ``vms`` VMs."""
    return PingRoutingCommand(
        host_id=1000 + i,
        power_report={f"i-{2 + i % 7}-{10000 + i * vms + k}-VM": PowerState.ON if (i + k) % 5 else
                      PowerState.OFF for k in range(vms)},
    )


def _uuid(i: int, salt: int) -> str:
    h = f"{(i * 2654435761 + salt * 40503) & 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def start(i: int = 0) -> StartCommand:
    """A StartCommand for a 2-vCPU VM with a root and two data disks and three NICs."""
    name = f"i-2-{10000 + i}-VM"
    disks = tuple(
        DiskTO(
            volume_uuid=_uuid(i, 10 + d),
            type="ROOT" if d == 0 else "DATADISK",
            device_id=d,
            path=f"/var/lib/cumulo/pools/{_uuid(i % 7, 3)}/{_uuid(i, 10 + d)}",
            pool_uuid=_uuid(i % 7, 3),
            pool_path=f"/var/lib/cumulo/pools/{_uuid(i % 7, 3)}",
            size_bytes=(8 + 92 * d) * 1024**3,
            format="qcow2",
        )
        for d in range(3)
    )
    nics = tuple(
        NicTO(
            uuid=_uuid(i, 20 + n),
            device_id=n,
            mac=f"02:00:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}:{n:02x}",
            ip=f"10.{1 + n}.{(i >> 8) & 0xFF}.{i & 0xFF}",
            netmask="255.255.0.0",
            gateway=f"10.{1 + n}.0.1",
            dns=("10.0.0.2", "10.0.0.3"),
            broadcast_uri=f"vlan://{100 + n}",
            bridge=f"cloudbr{n}",
            is_default=n == 0,
        )
        for n in range(3)
    )
    vm = VirtualMachineTO(
        name=name,
        uuid=_uuid(i, 1),
        display_name=f"web-{i:05d}.example.internal",
        vcpus=2,
        cpu_speed_mhz=2000,
        memory_bytes=4 * 1024**3,
        os_type="Debian GNU/Linux 12 (64-bit)",
        boot_args="console=ttyS0 quiet",
        disks=disks,
        nics=nics,
        details={"cpu.corespersocket": "2", "rootDiskController": "virtio", "nicAdapter": "virtio",
                 "keyboard": "us", "video.hardware": "cirrus", "dataDiskController": "virtio-scsi",
                 "configDriveLocation": "primary", "deployvm": "true",
                 "Message.ReservedCapacityFreed.Flag": "false"},
    )
    return StartCommand(vm=vm, host_guid=f"{_uuid(i % 1000, 5)}-LibvirtComputingResource", wait=600)
