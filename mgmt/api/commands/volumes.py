"""Volumes: listVolumes, createVolume, attachVolume, detachVolume, deleteVolume (see
``mgmt/orchestration/disks.py`` for how space is counted on each path)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import InvalidParameter, PermissionDenied
from ...services.offerings import view_tuning
from ...services.volumes import VolumeSpec
from ..registry import Param, command, refuse
from .common import MANAGED, OWNER, PAGING, PROJECT, SNAPSHOTS, date, listing
from .tags import TAGS, with_tags

if TYPE_CHECKING:
    from ..app import Context



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
        "provisioningtype": r.provisioning_type,
        **{k: v for k, v in view_tuning(r, volume=True).items() if k != "provisioningtype"},
        "displayvolume": r.display,
        "created": date(r.created),
        "attached": date(r.created) if r.vm_uuid else None,
        "destroyed": r.state == "Destroy",
        "isextractable": False,
        "tags": [],
    }
    if admin and r.path:
        view["path"] = r.path
    return {k: v for k, v in view.items() if v is not None}


VOLUME_FILTERS = (
    Param("id", "uuid", description="the volume's id"),
    Param("ids", "list", description="comma-separated volume ids"),
    Param("name", description="the volume's name"),
    Param("type", description="ROOT or DATADISK"),
    Param("virtualmachineid", "uuid", description="the VM's id"),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("storageid", "uuid", description="the storage pool's id (admins)"),
    Param("state", description="Allocated, Creating, Ready, Destroy"),
    Param("diskofferingid", "uuid", description="volumes of this disk offering"),
    Param("displayvolume", "boolean", description="volumes users see (true) or not (false)"),
    Param("podid", "uuid", description="volumes on the pools of this pod (admins)"),
    Param("clusterid", "uuid", description="volumes on the pools of this cluster (admins)"),
    Param("hostid", "uuid", description="volumes of the VMs on this host (admins)"),
    Param("listsystemvms", "boolean", description="also system VMs' volumes (there are no system VMs here)"),
    Param("retrieveonlyresourcecount", "boolean", description="answer the count alone"),
    TAGS,
    *OWNER,
    *PAGING,
)


@command(
    "listVolumes",
    "Lists volumes: the caller's own (admins: every account's with listall=true).",
    *VOLUME_FILTERS,
    response="volume",
)
async def list_volumes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    rows, total = await ctx.services.volumes.matching(ctx.caller, args)
    if args.get("retrieveonlyresourcecount"):
        return {"count": total}
    return await with_tags(ctx, listing("volume", [volume_view(r, admin=ctx.caller.is_admin) for r in rows],
                                        total), "volume", "Volume")


@command(
    "createVolume",
    "Creates a data volume (made on primary storage once it is attached to a VM); with "
    "virtualmachineid, attaches it too.",
    Param("zoneid", "uuid", description="the zone's id (needed: volumes from snapshots are not supported)"),
    Param("name", description="the volume's name"),
    Param("diskofferingid", "uuid", description="the disk offering (its size, provisioning, cache mode and "
                                                "I/O limits)"),
    Param("size", "long", description="size in GB (a custom offering's, or without an offering)"),
    Param("virtualmachineid", "uuid", description="attach it to this VM as well"),
    Param("account", description="create it for this account (admins, with domainid)"),
    Param("domainid", "uuid", description="that account's domain (default: the caller's)"),
    Param("displayvolume", "boolean", description="whether users see it (default true; root admins)"),
    Param("customid", "uuid", description="its id (root admins)"),
    *refuse(MANAGED, "miniops", "maxiops"),
    *refuse(SNAPSHOTS, "snapshotid", applies=True),
    PROJECT,
    is_async=True,
    event="VOLUME.CREATE",
    response="volume",
)
async def create_volume(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    vm = None
    if "virtualmachineid" in args:
        vm = await ctx.services.vms.find(ctx.caller, args["virtualmachineid"])
    if "zoneid" not in args:
        raise InvalidParameter("Unable to execute API command createvolume due to missing parameter zoneid")
    if ("customid" in args or "displayvolume" in args) and not ctx.caller.is_admin:
        raise PermissionDenied("only root admins may set customid or displayvolume")
    spec = VolumeSpec(args["zoneid"], args.get("name", ""), args.get("diskofferingid", ""), args.get("size"),
                      args.get("account", ""), args.get("domainid", ""), args.get("displayvolume", True),
                      args.get("customid", ""), args.get("projectid", ""))
    volume_id, volume_uuid = await ctx.services.volumes.create(ctx.caller, spec)

    async def work() -> dict[str, Any]:
        if vm is not None:
            await ctx.services.volumes.attach(volume_id, vm.id)
        return {"volume": await view_of(ctx, volume_id)}

    job = await ctx.submit(
        work,
        description=f"created volume {volume_uuid}",
        instance_type="Volume",
        instance_id=volume_id,
        instance_uuid=volume_uuid,
    )
    return {"id": volume_uuid, "jobid": job}


async def _volume(ctx: Context, ident: str) -> Any:
    return await ctx.services.volumes.find(ctx.caller, ident)


async def view_of(ctx: Context, volume_id: int) -> dict[str, Any]:
    return volume_view(await ctx.services.volumes.get(volume_id), admin=ctx.caller.is_admin)


@command(
    "attachVolume",
    "Attaches a data volume to a VM (plugged in at once when the VM runs).",
    Param("id", "uuid", required=True, description="the volume's id"),
    Param("virtualmachineid", "uuid", required=True, description="the VM's id"),
    Param("deviceid", "long", description="the device it takes on the VM (1 to 25; default: the first free)"),
    is_async=True,
    event="VOLUME.ATTACH",
    response="volume",
)
async def attach_volume(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    volume = await _volume(ctx, args["id"])
    vm = await ctx.services.vms.find(ctx.caller, args["virtualmachineid"])
    ctx.services.volumes.attachable(volume, vm)
    device = args.get("deviceid")

    async def work() -> dict[str, Any]:
        await ctx.services.volumes.attach(volume.id, vm.id, device)
        return {"volume": await view_of(ctx, volume.id)}

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
    Param("id", "uuid", description="the volume's id"),
    Param("virtualmachineid", "uuid", description="(with deviceid, instead of id) the VM"),
    Param("deviceid", "long", description="(with virtualmachineid) the device the volume is on"),
    is_async=True,
    event="VOLUME.DETACH",
    response="volume",
)
async def detach_volume(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if "id" in args:
        if "virtualmachineid" in args or "deviceid" in args:
            raise InvalidParameter("give id, or virtualmachineid and deviceid, not both")
        volume = await _volume(ctx, args["id"])
    elif "virtualmachineid" in args and "deviceid" in args:
        volume = await ctx.services.volumes.at_device(ctx.caller, args["virtualmachineid"], args["deviceid"])
    else:
        raise InvalidParameter("give id, or virtualmachineid and deviceid")

    async def work() -> dict[str, Any]:
        await ctx.services.volumes.detach(volume.id)
        return {"volume": await view_of(ctx, volume.id)}

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
    await ctx.services.volumes.delete(volume)
    await ctx.event(
        "VOLUME.DELETE", f"deleted volume {volume.name}", resource_type="Volume", resource_uuid=volume.uuid
    )
    return {"success": True}
