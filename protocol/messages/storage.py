"""Volume messages: a template copied to a primary pool, a root volume made from it, its deletion, and
data disks plugged into (and out of) running VMs."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Answer, Command, answer, command
from .vm import DiskTO


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class PrimaryStorageDownloadCommand(Command):
    """Copy a template into a primary storage pool (a no-op when it is already there)."""

    template_uuid: str
    url: str
    pool_uuid: str
    pool_path: str = ""
    format: str = "qcow2"


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class PrimaryStorageDownloadAnswer(Answer):
    install_path: str = ""
    size_bytes: int = 0


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class CreateCommand(Command):
    """Create a volume on a pool: from the template at ``template_path``, or empty when it is ''."""

    volume_uuid: str
    pool_uuid: str
    pool_path: str = ""
    template_path: str = ""
    template_format: str = ""  # the template copy's format (qcow2 or raw); the volume is always ``format``
    size_bytes: int = 0
    format: str = "qcow2"
    preallocation: str = "off"  # qcow2 preallocation: off, metadata or full (the offering's provisioning)


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class CreateAnswer(Answer):
    path: str = ""
    size_bytes: int = 0


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class DestroyCommand(Command):
    """Delete a volume from its pool (answered with a plain ``Answer``; deleting nothing succeeds).
    Without a ``path``, the volume named ``volume_uuid`` on the pool at ``pool_path`` (the host's own
    pool when that is empty too): one made by a request whose answer never came back."""

    volume_uuid: str
    pool_uuid: str
    path: str = ""
    pool_path: str = ""


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class AttachCommand(Command):
    """Plug a data disk into a running VM (answered with a plain ``Answer``)."""

    vm_name: str
    disk: DiskTO


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class DettachCommand(Command):
    """Unplug a data disk from a running VM (CloudStack's spelling; answered with a plain ``Answer``)."""

    vm_name: str
    disk: DiskTO


@command
@dataclass(frozen=True, slots=True, kw_only=True)
class GetStorageStatsCommand(Command):
    """The size of a pool as a host sees it (CloudStack's GetStorageStatsCommand): a shared pool added
    without its capacity is measured so."""

    pool_uuid: str = ""
    pool_path: str
    pool_type: str = "Filesystem"


@answer
@dataclass(frozen=True, slots=True, kw_only=True)
class GetStorageStatsAnswer(Answer):
    capacity_bytes: int = 0
    used_bytes: int = 0
