"""Service offerings (CPU and memory of a VM) and disk offerings (size of a data disk)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ...db.database import inserted_id
from ...db.schema import disk_offerings, service_offerings, vms
from ...errors import InvalidParameter
from ..registry import Param, command
from .common import PAGING, date, fetch, find, keyword, listing, matching, new_uuid, now, success

if TYPE_CHECKING:
    from ..app import Context


def service_offering_view(r: Any) -> dict[str, Any]:
    return {
        "id": r.uuid,
        "name": r.name,
        "displaytext": r.display_text,
        "cpunumber": r.cpus,
        "cpuspeed": r.cpu_speed_mhz,
        "memory": r.memory_mb,
        "hosttags": r.host_tags,
        "offerha": r.ha_enabled,
        "storagetype": "shared",
        "iscustomized": False,
        "issystem": False,
        "isvolatile": False,
        "limitcpuuse": False,
        "created": date(r.created),
    }


def _list_service(conn: Connection, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = [service_offerings.c.removed.is_(None), *keyword(service_offerings.c.name, args)]
    where += matching(args, {"id": service_offerings.c.uuid, "name": service_offerings.c.name})
    if "virtualmachineid" in args:  # offerings a VM could change to: every other one
        current = sa.select(vms.c.service_offering_id).where(vms.c.uuid == args["virtualmachineid"])
        where.append(service_offerings.c.id.not_in(current))
    rows, total = fetch(conn, sa.select(service_offerings).where(*where), service_offerings.c.id, args)
    return [service_offering_view(r) for r in rows], total


@command(
    "listServiceOfferings",
    "Lists service offerings (the CPU and memory a VM gets).",
    Param("id", "uuid", description="the offering's id"),
    Param("name", description="the offering's name"),
    Param("virtualmachineid", "uuid", description="the offerings this VM could change to"),
    Param("issystem", "boolean", description="accepted for compatibility (no system offerings here)"),
    *PAGING,
    response="serviceoffering",
)
async def list_service_offerings(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("issystem"):
        return {}
    items, total = await ctx.read(_list_service, args)
    return listing("serviceoffering", items, total)


def _create_service(conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
    for key, low in (("cpunumber", 1), ("cpuspeed", 1), ("memory", 32)):
        if not low <= args[key] <= 1_048_576:
            raise InvalidParameter(f"{key} must be between {low} and 1048576")
    offering_id = inserted_id(conn.execute(
        service_offerings.insert().values(
            uuid=new_uuid(),
            name=args["name"],
            display_text=args.get("displaytext", args["name"]),
            cpus=args["cpunumber"],
            cpu_speed_mhz=args["cpuspeed"],
            memory_mb=args["memory"],
            host_tags=",".join(t.strip() for t in args.get("hosttags", "").split(",") if t.strip()),
            ha_enabled=args.get("offerha", False),
            created=now(),
        )
    ))
    return service_offering_view(
        conn.execute(sa.select(service_offerings).where(service_offerings.c.id == offering_id)).one()
    )


@command(
    "createServiceOffering",
    "Creates a service offering.",
    Param("name", required=True, description="the offering's name"),
    Param("displaytext", description="its description (default: the name)"),
    Param("cpunumber", "integer", required=True, description="vCPUs"),
    Param("cpuspeed", "integer", required=True, description="MHz per vCPU"),
    Param("memory", "integer", required=True, description="memory in MiB"),
    Param("hosttags", description="comma-separated tags a host must have"),
    Param("offerha", "boolean", description="whether VMs are HA-enabled by default"),
    admin=True,
    event="SERVICE.OFFERING.CREATE",
    response="serviceoffering",
)
async def create_service_offering(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    offering = await ctx.run(_create_service, args)
    await ctx.event(
        "SERVICE.OFFERING.CREATE",
        f"created service offering {offering['name']}",
        resource_type="ServiceOffering",
        resource_uuid=offering["id"],
    )
    return {"serviceoffering": offering}


def _remove(conn: Connection, table: sa.Table, row_id: int) -> None:
    conn.execute(table.update().where(table.c.id == row_id).values(removed=now()))


@command(
    "deleteServiceOffering",
    "Deletes a service offering (VMs using it keep it).",
    Param("id", "uuid", required=True, description="the offering's id"),
    admin=True,
    event="SERVICE.OFFERING.DELETE",
)
async def delete_service_offering(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _delete(ctx, service_offerings, args["id"], "service offering", "ServiceOffering")


async def _delete(ctx: Context, table: sa.Table, ident: str, kind: str, resource_type: str) -> dict[str, Any]:
    """Mark an offering removed (what was made from it keeps it) and record the event."""
    row = await ctx.read(find, ctx.caller, table, ident, kind)
    await ctx.run(_remove, table, row.id)
    await ctx.event(
        ctx.cmd.event, f"deleted {kind} {row.name}", resource_type=resource_type, resource_uuid=row.uuid
    )
    return success()


def disk_offering_view(r: Any) -> dict[str, Any]:
    return {
        "id": r.uuid,
        "name": r.name,
        "displaytext": r.display_text,
        "disksize": r.size_gb,
        "tags": r.tags,
        "iscustomized": False,
        "storagetype": "shared",
        "created": date(r.created),
    }


def _list_disk(conn: Connection, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = [disk_offerings.c.removed.is_(None), *keyword(disk_offerings.c.name, args)]
    where += matching(args, {"id": disk_offerings.c.uuid, "name": disk_offerings.c.name})
    rows, total = fetch(conn, sa.select(disk_offerings).where(*where), disk_offerings.c.id, args)
    return [disk_offering_view(r) for r in rows], total


@command(
    "listDiskOfferings",
    "Lists disk offerings (sizes of data disks).",
    Param("id", "uuid", description="the offering's id"),
    Param("name", description="the offering's name"),
    *PAGING,
    response="diskoffering",
)
async def list_disk_offerings(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    items, total = await ctx.read(_list_disk, args)
    return listing("diskoffering", items, total)


def _create_disk(conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
    if not 1 <= args.get("disksize", 0) <= 65536:
        raise InvalidParameter("disksize must be given, between 1 and 65536 GB")
    offering_id = inserted_id(conn.execute(
        disk_offerings.insert().values(
            uuid=new_uuid(),
            name=args["name"],
            display_text=args.get("displaytext", args["name"]),
            size_gb=args["disksize"],
            tags=",".join(t.strip() for t in args.get("tags", "").split(",") if t.strip()),
            created=now(),
        )
    ))
    return disk_offering_view(
        conn.execute(sa.select(disk_offerings).where(disk_offerings.c.id == offering_id)).one()
    )


@command(
    "createDiskOffering",
    "Creates a disk offering.",
    Param("name", required=True, description="the offering's name"),
    Param("displaytext", description="its description (default: the name)"),
    Param("disksize", "long", description="size in GB (required here: no custom sizes)"),
    Param("tags", description="comma-separated storage tags a pool must have"),
    admin=True,
    event="DISK.OFFERING.CREATE",
    response="diskoffering",
)
async def create_disk_offering(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    offering = await ctx.run(_create_disk, args)
    await ctx.event(
        "DISK.OFFERING.CREATE",
        f"created disk offering {offering['name']}",
        resource_type="DiskOffering",
        resource_uuid=offering["id"],
    )
    return {"diskoffering": offering}


@command(
    "deleteDiskOffering",
    "Deletes a disk offering (volumes made from it stay).",
    Param("id", "uuid", required=True, description="the offering's id"),
    admin=True,
    event="DISK.OFFERING.DELETE",
)
async def delete_disk_offering(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _delete(ctx, disk_offerings, args["id"], "disk offering", "DiskOffering")
