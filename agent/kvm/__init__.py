"""The KVM host backend: LibvirtResource and what it builds on (domain XML, storage pools, the embedded
QEMU driver's setup and the KVM probe, console logs), plus the tiny guest template builder."""

from .resource import LibvirtResource

__all__ = ["LibvirtResource"]
