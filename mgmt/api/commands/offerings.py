"""Service offerings (CPU and memory of a VM) and disk offerings (size of a data disk)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...services.offerings import DISK_OFFERING, SERVICE_OFFERING, DiskOfferingSpec, ServiceOfferingSpec
from ..registry import Param, command
from .common import PAGING, created, date, deleter, lister, tags

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


_list_service_offerings = lister(SERVICE_OFFERING, "serviceoffering", service_offering_view, __name__)


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
    return await _list_service_offerings(ctx, args)


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
    spec = ServiceOfferingSpec(args["name"], args["cpunumber"], args["cpuspeed"], args["memory"],
                               args.get("displaytext", ""), tags(args.get("hosttags", "")),
                               args.get("offerha", False))
    made = await created(ctx, spec, "SERVICE.OFFERING.CREATE", "ServiceOffering", service_offering_view)
    return {"serviceoffering": made}


command(
    "deleteServiceOffering",
    "Deletes a service offering (VMs using it keep it).",
    Param("id", "uuid", required=True, description="the offering's id"),
    admin=True,
    event="SERVICE.OFFERING.DELETE",
)(deleter(SERVICE_OFFERING, "SERVICE.OFFERING.DELETE", "ServiceOffering", __name__))




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


command(
    "listDiskOfferings",
    "Lists disk offerings (sizes of data disks).",
    Param("id", "uuid", description="the offering's id"),
    Param("name", description="the offering's name"),
    *PAGING,
    response="diskoffering",
)(lister(DISK_OFFERING, "diskoffering", disk_offering_view, __name__))




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
    spec = DiskOfferingSpec(args["name"], args.get("disksize", 0), args.get("displaytext", ""),
                            tags(args.get("tags", "")))
    made = await created(ctx, spec, "DISK.OFFERING.CREATE", "DiskOffering", disk_offering_view)
    return {"diskoffering": made}


command(
    "deleteDiskOffering",
    "Deletes a disk offering (volumes made from it stay).",
    Param("id", "uuid", required=True, description="the offering's id"),
    admin=True,
    event="DISK.OFFERING.DELETE",
)(deleter(DISK_OFFERING, "DISK.OFFERING.DELETE", "DiskOffering", __name__))


