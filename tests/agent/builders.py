"""Small builders shared by the agent tests."""

from __future__ import annotations

from protocol.messages import DiskTO, VirtualMachineTO

GIB = 1024**3


def vm(name: str, memory: int = GIB, disks: tuple[DiskTO, ...] = ()) -> VirtualMachineTO:
    """A 2-vCPU VM transfer object; the uuid is derived from the name."""
    return VirtualMachineTO(name=name, uuid=f"uuid-{name}", vcpus=2, memory_bytes=memory, disks=disks)
