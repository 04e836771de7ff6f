"""Volumes as callers see them: which they have, a new data volume (made on primary storage once it
is attached), attaching, detaching and deleting one (``mgmt/orchestration/disks.py`` counts the space
on each path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import limits
from ..db.database import inserted_id
from ..db.schema import (
    accounts,
    clusters,
    disk_offerings,
    domains,
    hosts,
    pods,
    storage_pools,
    vms,
    volumes,
    zones,
)
from ..errors import InvalidParameter, PermissionDenied
from ..orchestration import disks
from ..storage import tuning
from . import domains as domain_rows
from . import offerings
from .caller import Caller
from .crud import Filters, Row
from .queries import acting_for, fetch, find, keyword, matching, new_uuid, now, owner_filter, uuids
from .tags import tagged

if TYPE_CHECKING:
    from ..db.database import Database
    from ..jobs.runner import JobRunner
    from ..orchestration.engine import Orchestrator

GIB = 2**30


@dataclass(frozen=True)
class VolumeSpec:
    zone_uuid: str
    name: str = ""  # default: DATA- and the start of its uuid
    disk_offering_uuid: str = ""
    size_gb: int | None = None  # instead of the offering's
    account_name: str = ""  # (admins, with domain_uuid) create it for this account
    domain_uuid: str = ""
    display: bool = True
    custom_id: str = ""  # root admins: its uuid
    project_uuid: str = ""  # create it for this project


def _query() -> sa.Select[Any]:
    zone_id = sa.func.coalesce(volumes.c.zone_id, vms.c.zone_id, storage_pools.c.zone_id)
    return (
        sa.select(
            volumes,
            vms.c.uuid.label("vm_uuid"),
            vms.c.name.label("vm_name"),
            vms.c.instance_name,
            vms.c.display_name.label("vm_display_name"),
            vms.c.state.label("vm_state"),
            storage_pools.c.uuid.label("pool_uuid"),
            storage_pools.c.name.label("pool_name"),
            storage_pools.c.scope.label("pool_scope"),
            zones.c.uuid.label("zone_uuid"),
            zones.c.name.label("zone_name"),
            disk_offerings.c.uuid.label("offering_uuid"),
            disk_offerings.c.name.label("offering_name"),
            accounts.c.name.label("account_name"),
            domains.c.uuid.label("domain_uuid"),
            domains.c.name.label("domain_name"),
        )
        .outerjoin(vms, vms.c.id == volumes.c.vm_id)
        .outerjoin(storage_pools, storage_pools.c.id == volumes.c.pool_id)
        .outerjoin(zones, zones.c.id == zone_id)
        .outerjoin(disk_offerings, disk_offerings.c.id == volumes.c.disk_offering_id)
        .join(accounts, accounts.c.id == volumes.c.account_id)
        .join(domains, domains.c.id == accounts.c.domain_id)
    )


_ONE = _query().where(volumes.c.id == sa.bindparam("volume"))


def _list(conn: Connection, caller: Caller, args: Filters) -> tuple[list[Row], int]:
    where = [
        volumes.c.removed.is_(None),
        *owner_filter(conn, caller, args, volumes.c.account_id),
        *keyword(volumes.c.name, args),
    ]
    ids = uuids(args, "ids") + ([args["id"]] if "id" in args else [])
    if ids:
        where.append(volumes.c.uuid.in_(ids))
    where += matching(
        args,
        {
            "name": volumes.c.name,
            "type": volumes.c.type,
            "virtualmachineid": vms.c.uuid,
            "zoneid": zones.c.uuid,
            "storageid": storage_pools.c.uuid,
            "state": volumes.c.state,
            "diskofferingid": disk_offerings.c.uuid,
            "displayvolume": volumes.c.display,
        },
    )
    where += tagged(args, "Volume", volumes.c.uuid)
    for param, column, table in (("podid", storage_pools.c.pod_id, pods),
                                 ("clusterid", storage_pools.c.cluster_id, clusters),
                                 ("hostid", vms.c.host_id, hosts)):
        if param in args:
            if not caller.is_admin:
                raise PermissionDenied(f"only admins may list volumes by {param[:-2]}")
            where.append(column == sa.select(table.c.id).where(table.c.uuid == args[param]).scalar_subquery())
    return fetch(conn, _query().where(*where), volumes.c.id, args)


def _pool_tags(conn: Connection, caller: Caller, pool_uuid: str, volume_uuid: str, vm_uuid: str) -> set[str]:
    if pool_uuid:
        pool = find(conn, caller, storage_pools, pool_uuid, "storage pool")
    else:
        volume: Any
        if volume_uuid:
            volume = find(conn, caller, volumes, volume_uuid, "volume", owned=True)
        else:
            vm = find(conn, caller, vms, vm_uuid, "virtual machine", owned=True)
            volume = conn.execute(sa.select(volumes).where(volumes.c.vm_id == vm.id, volumes.c.type == "ROOT",
                                                           volumes.c.removed.is_(None))).first()
        if volume is None or volume.pool_id is None:
            raise InvalidParameter("the volume is on no storage pool yet")
        pool = conn.execute(sa.select(storage_pools).where(storage_pools.c.id == volume.pool_id)).one()
    return {t for t in pool.tags.split(",") if t}


def _at_device(conn: Connection, caller: Caller, vm_uuid: str, device_id: int) -> Row:
    vm = find(conn, caller, vms, vm_uuid, "virtual machine", owned=True)
    row = conn.execute(sa.select(volumes).where(volumes.c.vm_id == vm.id, volumes.c.device_id == device_id,
                                                volumes.c.removed.is_(None))).first()
    if row is None:
        raise InvalidParameter(f"VM {vm_uuid} has no volume at device {device_id}")
    return row


def _create(conn: Connection, caller: Caller, spec: VolumeSpec) -> tuple[int, str]:
    zone = find(conn, caller, zones, spec.zone_uuid, "zone")
    offering = None
    if spec.disk_offering_uuid:
        offering = find(conn, caller, disk_offerings, spec.disk_offering_uuid, "disk offering")
    if offering is None and spec.size_gb is None:
        raise InvalidParameter("give diskofferingid or size (GB)")
    if offering is not None and offering.size_gb and spec.size_gb is not None and \
            spec.size_gb != offering.size_gb:
        raise InvalidParameter(f"disk offering {offering.name} has a fixed size: give size only with a "
                               "custom offering")
    size_gb = spec.size_gb if spec.size_gb is not None else offering.size_gb if offering is not None else 0
    if not 1 <= size_gb <= 65536:
        raise InvalidParameter("size must be between 1 and 65536 (GB)" if size_gb or offering is None else
                               f"disk offering {offering.name} is custom: give size (GB)")
    owner = acting_for(conn, caller, spec.account_name, spec.domain_uuid, spec.project_uuid)
    if offering is not None and (offering.domain_ids or offering.zone_ids):
        path = conn.scalar(sa.select(domains.c.path).join(accounts, accounts.c.domain_id == domains.c.id)
                           .where(accounts.c.id == owner)) or "/"
        if not offerings.usable(offering, domain_rows.chain(conn, path), zone.uuid):
            raise InvalidParameter(f"disk offering {offering.name} is not for this account's domain or zone "
                                   f"{zone.name}")
    if spec.custom_id and conn.scalar(sa.select(volumes.c.id).where(volumes.c.uuid == spec.custom_id)):
        raise InvalidParameter(f"the id {spec.custom_id} is taken")
    volume_uuid = spec.custom_id or new_uuid()
    volume_id = inserted_id(conn.execute(
        volumes.insert().values(
            uuid=volume_uuid,
            name=spec.name or f"DATA-{volume_uuid[:8]}",
            vm_id=None,
            zone_id=zone.id,
            type="DATADISK",
            state="Allocated",
            update_count=0,
            size_bytes=size_gb * GIB,
            path="",
            disk_offering_id=offering.id if offering is not None else None,
            account_id=owner,
            display=spec.display,
            **tuning.columns_of(offering),
            created=now(),
        )
    ))
    limits.verify(conn, owner, (limits.T.VOLUME, limits.T.PRIMARY_STORAGE))
    return int(volume_id), volume_uuid


class Volumes:
    def __init__(self, db: Database, orchestrator: Orchestrator, jobs: JobRunner) -> None:
        self.db, self.orchestrator, self.jobs = db, orchestrator, jobs

    async def matching(self, caller: Caller, args: Filters) -> tuple[list[Row], int]:
        """One page of the volumes ``args`` asks for that the caller may see, and the total."""
        return await self.db.read(_list, caller, args)

    async def get(self, volume_id: int) -> Row:
        """The volume with its VM, pool, zone, offering and owner (as lists show it)."""
        return await self.db.read(lambda conn: conn.execute(_ONE, {"volume": volume_id}).one())

    async def get_row(self, volume_id: int) -> Row:
        """The volume's own row."""
        return await self.db.read(
            lambda conn: conn.execute(sa.select(volumes).where(volumes.c.id == volume_id)).one())

    async def find(self, caller: Caller, ident: str) -> Row:
        """The volume's own row, when the caller may see it."""
        return await self.db.read(find, caller, volumes, ident, "volume", owned=True)

    async def create(self, caller: Caller, spec: VolumeSpec) -> tuple[int, str]:
        """A new data volume (Allocated: nothing on storage yet); its id and uuid."""
        return await self.db.run(_create, caller, spec)

    def attachable(self, volume: Row, vm: Row) -> None:
        """Raises unless the volume may be attached to the VM (same account)."""
        if vm.account_id != volume.account_id:
            raise InvalidParameter("the volume and the VM belong to different accounts")

    async def attach(self, volume_id: int, vm_id: int, device_id: int | None = None) -> None:
        await disks.attach(self.orchestrator, volume_id, vm_id, device_id)

    async def pool_tags(self, caller: Caller, *, pool_uuid: str = "", volume_uuid: str = "",
                        vm_uuid: str = "") -> set[str]:
        """The storage tags of a pool: the one named, or the one a volume (a VM's root volume) is on."""
        return await self.db.read(_pool_tags, caller, pool_uuid, volume_uuid, vm_uuid)

    async def at_device(self, caller: Caller, vm_uuid: str, device_id: int) -> Row:
        """The data volume attached to the VM at ``device_id``."""
        return await self.db.read(_at_device, caller, vm_uuid, device_id)

    async def detach(self, volume_id: int) -> None:
        await disks.detach(self.orchestrator, volume_id)

    async def delete(self, volume: Row) -> None:
        """Delete a detached data volume and its data on primary storage."""
        if volume.type == "ROOT":
            raise InvalidParameter(f"volume {volume.name} is a root volume; it goes when its VM is expunged")
        if self.jobs.busy("Volume", volume.id):
            raise InvalidParameter(f"volume {volume.name} is busy with a job; try again when it ends")
        await disks.delete(self.orchestrator, volume.id)
