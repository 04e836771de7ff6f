"""Volumes: listVolumes, createVolume, attachVolume, detachVolume, deleteVolume (see
``mgmt/orchestration/disks.py`` for how space is counted on each path)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ...db.database import inserted_id
from ...db.schema import accounts, disk_offerings, domains, storage_pools, vms, volumes, zones
from ...errors import InvalidParameter
from ...orchestration import disks
from ..registry import Param, command
from .common import (
    OWNER,
    PAGING,
    date,
    fetch,
    find,
    keyword,
    listing,
    matching,
    new_uuid,
    now,
    owner_filter,
    uuids,
)

if TYPE_CHECKING:
    from ..app import Context

GIB = 2**30


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


def volume_view(r: Any, *, admin: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": r.uuid,
        "name": r.name,
        "type": r.type,
        "size": r.size_bytes,
        "state": r.state,
        "zoneid": r.zone_uuid,
        "zonename": r.zone_name,
        "virtualmachineid": r.vm_uuid,
        "vmname": (r.vm_name or r.instance_name) if r.vm_uuid else None,
        "vmdisplayname": r.vm_display_name,
        "vmstate": r.vm_state,
        "deviceid": r.device_id if r.vm_uuid else None,
        "storageid": r.pool_uuid,
        "storage": r.pool_name,
        "storagetype": "local" if r.pool_scope == "HOST" else "shared",
        "diskofferingid": r.offering_uuid,
        "diskofferingname": r.offering_name,
        "account": r.account_name,
        "domainid": r.domain_uuid,
        "domain": r.domain_name,
        "created": date(r.created),
        "attached": date(r.created) if r.vm_uuid else None,
        "destroyed": r.state == "Destroy",
        "isextractable": False,
        "tags": [],
    }
    if admin and r.path:
        view["path"] = r.path
    return {k: v for k, v in view.items() if v is not None}


def view_of(conn: Connection, caller: Any, volume_id: int) -> dict[str, Any]:
    return volume_view(conn.execute(_query().where(volumes.c.id == volume_id)).one(), admin=caller.is_admin)


def _list(conn: Connection, caller: Any, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
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
        },
    )
    rows, total = fetch(conn, _query().where(*where), volumes.c.id, args)
    return [volume_view(r, admin=caller.is_admin) for r in rows], total


@command(
    "listVolumes",
    "Lists volumes: the caller's own (admins: every account's with listall=true).",
    Param("id", "uuid", description="the volume's id"),
    Param("ids", "list", description="comma-separated volume ids"),
    Param("name", description="the volume's name"),
    Param("type", description="ROOT or DATADISK"),
    Param("virtualmachineid", "uuid", description="the VM's id"),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("storageid", "uuid", description="the storage pool's id (admins)"),
    Param("state", description="Allocated, Creating, Ready, Destroy"),
    Param("isrecursive", "boolean", description="accepted for compatibility"),
    *OWNER,
    *PAGING,
    response="volume",
)
async def list_volumes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    items, total = await ctx.read(_list, ctx.caller, args)
    return listing("volume", items, total)


def _create(conn: Connection, caller: Any, args: dict[str, Any]) -> tuple[int, str]:
    zone = find(conn, caller, zones, args["zoneid"], "zone")
    offering = None
    if "diskofferingid" in args:
        offering = find(conn, caller, disk_offerings, args["diskofferingid"], "disk offering")
    if offering is None and "size" not in args:
        raise InvalidParameter("give diskofferingid or size (GB)")
    size_gb = args.get("size", offering.size_gb if offering is not None else 0)
    if not 1 <= size_gb <= 65536:
        raise InvalidParameter("size must be between 1 and 65536 (GB)")
    volume_uuid = new_uuid()
    volume_id = inserted_id(conn.execute(
        volumes.insert().values(
            uuid=volume_uuid,
            name=args.get("name") or f"DATA-{volume_uuid[:8]}",
            vm_id=None,
            zone_id=zone.id,
            type="DATADISK",
            state="Allocated",
            update_count=0,
            size_bytes=size_gb * GIB,
            path="",
            disk_offering_id=offering.id if offering is not None else None,
            account_id=caller.account_id,
            created=now(),
        )
    ))
    return int(volume_id), volume_uuid


@command(
    "createVolume",
    "Creates a data volume (made on primary storage once it is attached to a VM); with "
    "virtualmachineid, attaches it too.",
    Param("zoneid", "uuid", required=True, description="the zone's id"),
    Param("name", description="the volume's name"),
    Param("diskofferingid", "uuid", description="the disk offering (its size)"),
    Param("size", "long", description="size in GB (instead of an offering's)"),
    Param("virtualmachineid", "uuid", description="attach it to this VM as well"),
    is_async=True,
    event="VOLUME.CREATE",
    response="volume",
)
async def create_volume(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = None
    if "virtualmachineid" in args:
        vm = await ctx.read(find, ctx.caller, vms, args["virtualmachineid"], "virtual machine", owned=True)
    volume_id, volume_uuid = await ctx.run(_create, ctx.caller, args)

    async def work() -> dict[str, Any]:
        if vm is not None:
            await disks.attach(ctx.services.orchestrator, volume_id, vm.id)
        return {"volume": await ctx.read(view_of, ctx.caller, volume_id)}

    job = await ctx.submit(
        work,
        description=f"created volume {volume_uuid}",
        instance_type="Volume",
        instance_id=volume_id,
        instance_uuid=volume_uuid,
    )
    return {"id": volume_uuid, "jobid": job}


async def _volume(ctx: Context, ident: str) -> Any:
    return await ctx.read(find, ctx.caller, volumes, ident, "volume", owned=True)


@command(
    "attachVolume",
    "Attaches a data volume to a VM (plugged in at once when the VM runs).",
    Param("id", "uuid", required=True, description="the volume's id"),
    Param("virtualmachineid", "uuid", required=True, description="the VM's id"),
    Param("deviceid", "long", description="accepted for compatibility (the next free device is used)"),
    is_async=True,
    event="VOLUME.ATTACH",
    response="volume",
)
async def attach_volume(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    volume = await _volume(ctx, args["id"])
    vm = await ctx.read(find, ctx.caller, vms, args["virtualmachineid"], "virtual machine", owned=True)
    if vm.account_id != volume.account_id:
        raise InvalidParameter("the volume and the VM belong to different accounts")

    async def work() -> dict[str, Any]:
        await disks.attach(ctx.services.orchestrator, volume.id, vm.id)
        return {"volume": await ctx.read(view_of, ctx.caller, volume.id)}

    job = await ctx.submit(
        work,
        description=f"attached volume {volume.name} to VM {vm.name or vm.instance_name}",
        instance_type="Volume",
        instance_id=volume.id,
        instance_uuid=volume.uuid,
    )
    return {"jobid": job}


@command(
    "detachVolume",
    "Detaches a data volume from its VM (unplugged at once when the VM runs); it keeps its data.",
    Param("id", "uuid", required=True, description="the volume's id"),
    is_async=True,
    event="VOLUME.DETACH",
    response="volume",
)
async def detach_volume(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    volume = await _volume(ctx, args["id"])

    async def work() -> dict[str, Any]:
        await disks.detach(ctx.services.orchestrator, volume.id)
        return {"volume": await ctx.read(view_of, ctx.caller, volume.id)}

    job = await ctx.submit(
        work,
        description=f"detached volume {volume.name}",
        instance_type="Volume",
        instance_id=volume.id,
        instance_uuid=volume.uuid,
    )
    return {"jobid": job}


@command(
    "deleteVolume",
    "Deletes a detached data volume, and its data on primary storage.",
    Param("id", "uuid", required=True, description="the volume's id"),
    event="VOLUME.DELETE",
)
async def delete_volume(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    volume = await _volume(ctx, args["id"])
    if volume.type == "ROOT":
        raise InvalidParameter(f"volume {volume.name} is a root volume; it goes when its VM is expunged")
    if ctx.services.jobs.busy("Volume", volume.id):
        raise InvalidParameter(f"volume {volume.name} is busy with a job; try again when it ends")
    await disks.delete(ctx.services.orchestrator, volume.id)
    await ctx.event(
        "VOLUME.DELETE", f"deleted volume {volume.name}", resource_type="Volume", resource_uuid=volume.uuid
    )
    return {"success": True}
