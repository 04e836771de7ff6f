"""Hypervisor gurus: turn a VM's records into the ``VirtualMachineTO`` its hypervisor's agent starts.

One builder per hypervisor type; they share the common part and differ in what the hypervisor needs
(KVM: a serial console and, for a template with boot details, its kernel, initrd and command line; the
simulator: nothing more).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from protocol.messages import DiskTO, NicTO, VirtualMachineTO

from ..storage import tuning
from . import configdrive
from .vms import VmRecord


def _common(vm: VmRecord) -> dict[str, Any]:
    disks = tuple(
        DiskTO(
            volume_uuid=v.uuid,
            type=v.type,
            device_id=v.device_id or 0,
            path=v.path,
            pool_uuid=v.pool_uuid or "",
            pool_path=v.pool_path or "",
            size_bytes=v.size_bytes,
            format="qcow2",  # a root volume is a qcow2 overlay on its template, whatever its format
            **tuning.disk_args(v),
        )
        for v in vm.volumes
    )
    nic_tos = tuple(
        NicTO(
            uuid=n.uuid,
            device_id=n.device_id,
            mac=n.mac_address,
            ip=n.ip_address or "",
            netmask=n.netmask,
            gateway=n.gateway,
            dns=tuple(d for d in (n.dns1, n.dns2) if d),
            broadcast_uri=f"vxlan://{n.vni}" if n.vni is not None else f"vlan://{n.vlan}",
            bridge=n.bridge,
            is_default=n.is_default,
            security=vm.security,
            rate_mbps=max(0, getattr(vm.offering, "network_rate", None) or 0),
        )
        for n in vm.nics
    )
    return {
        "name": vm.name,
        "uuid": vm.row.uuid,
        "display_name": vm.row.display_name,
        "vcpus": vm.offering.cpus,
        "cpu_speed_mhz": vm.offering.cpu_speed_mhz,
        "memory_bytes": vm.offering.memory_mb * 2**20,
        "os_type": vm.template.os_type,
        "disks": disks,
        "nics": nic_tos,
        "config_drive": configdrive.build(vm),
        "cpu_cap": bool(getattr(vm.offering, "limit_cpu_use", False)),
        "details": {"console": "serial", **tuned(vm)},
    }


# the VM details (deployVirtualMachine's KVM parameters) its hypervisor's domain follows
KVM_DETAILS = ("io.policy", "iothreads", "nic.queues", "nic.packed")


def tuned(vm: VmRecord) -> dict[str, str]:
    details = orjson.loads(getattr(vm.row, "details", None) or "{}")
    return {k: str(details[k]) for k in KVM_DETAILS if k in details} if isinstance(details, dict) else {}


def kvm(vm: VmRecord) -> VirtualMachineTO:
    boot = orjson.loads(vm.template.details or "{}")
    return VirtualMachineTO(
        **_common(vm),
        kernel=boot.get("kernel", ""),
        initrd=boot.get("initrd", ""),
        boot_args=boot.get("bootargs", ""),
    )


def simulator(vm: VmRecord) -> VirtualMachineTO:
    return VirtualMachineTO(**_common(vm))


GURUS: dict[str, Callable[[VmRecord], VirtualMachineTO]] = {"KVM": kvm, "Simulator": simulator}


def nics(vm: VmRecord) -> tuple[NicTO, ...]:
    """The VM's NICs as its host sees them (with their security rules)."""
    return tuple(_common(vm)["nics"])


def build(hypervisor_type: str, vm: VmRecord) -> VirtualMachineTO:
    guru = GURUS.get(hypervisor_type, simulator)
    return guru(vm)
