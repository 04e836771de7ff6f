"""Service offerings (the CPU and memory of a VM, its root disk's provisioning, cache mode and I/O limits,
the planner that places it) and disk offerings (a data disk's size, provisioning, cache mode and I/O
limits). Offerings are public: every domain, account and zone sees every offering."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ...errors import InvalidParameter
from ...services.offerings import (
    DISK_OFFERING,
    IO_PARAMS,
    PLANNERS,
    SERVICE_OFFERING,
    DiskOfferingSpec,
    DiskTuning,
    ServiceOfferingSpec,
    view_tuning,
)
from ..registry import Param, command, refuse
from .common import (
    ENCRYPTION,
    LIVE_SCALING,
    MANAGED,
    PAGING,
    SYSTEM_VMS,
    VMWARE,
    as_dict,
    created,
    date,
    deleter,
    lister,
    listing,
    page,
    tags,
    updated,
    uuids,
)

if TYPE_CHECKING:
    from ..app import Context

PUBLIC = "public offerings and those dedicated to it"

def _io_text(param: str) -> str:
    unit = "seconds" if param.endswith("length") else "bytes/s" if param.startswith("bytes") else "IOPS"
    what = param.replace("rate", " rate").replace("max", " max").replace("length", " length")
    return f"the disks' {what} ({unit}; libvirt <iotune>)"


DISK_TUNING = (
    Param("provisioningtype", description="thin (default: qcow2 without preallocation), sparse (its metadata "
                                          "preallocated) or fat (fully preallocated)"),
    Param("cachemode", description="the disk cache: none (default), writeback or writethrough"),
    Param("storagetype", description="shared (default: a cluster or zone pool) or local (the host's own)"),
    *(Param(p, "long", description=_io_text(p)) for p in IO_PARAMS),
)
_NOT_APPLYING = (
    *refuse(MANAGED, "miniops", "maxiops", "hypervisorsnapshotreserve"),
    *refuse(MANAGED, "customizediops", harmless=("false",)),
    *refuse(VMWARE, "storagepolicy"),
    Param("domainid", "list", description="the domains it is for, and their subdomains (default: public)"),
    Param("zoneid", "list", description="the zones it is offered in (default: every zone)"),
)



def _json(text: str) -> dict[str, Any]:
    value = orjson.loads(text or "{}")
    return value if isinstance(value, dict) else {}


def service_offering_view(r: Any) -> dict[str, Any]:
    details = _json(r.details)
    for key, value in (("mincpunumber", r.min_cpus), ("maxcpunumber", r.max_cpus),
                       ("minmemory", r.min_memory_mb), ("maxmemory", r.max_memory_mb)):
        if value is not None:
            details[key] = str(value)
    view: dict[str, Any] = {
        "id": r.uuid,
        "name": r.name,
        "displaytext": r.display_text,
        "cpunumber": r.cpus or None,
        "cpuspeed": r.cpu_speed_mhz or None,
        "memory": r.memory_mb or None,
        "hosttags": r.host_tags or None,
        "storagetags": details.pop("storagetags", None),
        "offerha": r.ha_enabled,
        "storagetype": r.storage_type,
        "deploymentplanner": r.deployment_planner or None,
        "iscustomized": not (r.cpus and r.cpu_speed_mhz and r.memory_mb),
        "issystem": False,
        "isvolatile": r.is_volatile,
        "limitcpuuse": r.limit_cpu_use,
        "rootdisksize": r.root_disk_gb,
        "networkrate": r.network_rate,
        "dynamicscalingenabled": False,
        "iscustomizediops": False,
        "serviceofferingdetails": details or None,
        **_dedication_view(r),
        **view_tuning(r),
        "created": date(r.created),
    }
    return {k: v for k, v in view.items() if v is not None}


_list_service_offerings = lister(SERVICE_OFFERING, "serviceoffering", service_offering_view, __name__)


@command(
    "listServiceOfferings",
    "Lists service offerings (the CPU and memory a VM gets).",
    Param("id", "uuid", description="the offering's id"),
    Param("name", description="the offering's name"),
    Param("virtualmachineid", "uuid", description="the offerings this VM could change to"),
    Param("issystem", "boolean", description="true: system VM offerings (there are none here)"),
    Param("cpunumber", "integer", description="offerings that give at least this many vCPUs (custom ones "
                                                "whose bounds reach it)"),
    Param("cpuspeed", "integer", description="offerings that give at least this speed (MHz)"),
    Param("memory", "integer", description="offerings that give at least this memory (MiB)"),
    Param("storagetype", description="shared or local"),
    Param("templateid", "uuid", description="offerings whose root disk size fits the template"),
    Param("zoneid", "uuid", description="the offerings of the zone (public or dedicated to it)"),
    Param("domainid", "uuid", description="the offerings the domain's accounts may use (public, or "
                                          "dedicated to it or a domain above)"),
    Param("account", description="the offerings the account may use (with domainid)"),
    Param("isrecursive", "boolean", description="with domainid: offerings are inherited downward, so this "
                                                "changes nothing"),
    Param("listall", "boolean", description="admins: every offering, whoever it is dedicated to"),
    Param("projectid", "uuid", description="the offerings the project may use (those of its domain)"),
    *refuse(SYSTEM_VMS, "systemvmtype"),
    *refuse(ENCRYPTION, "encryptroot", harmless=("false",), applies=True),
    *PAGING,
    response="serviceoffering",
)
async def list_service_offerings(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("issystem"):
        return {}
    if "templateid" in args:
        size = await ctx.services.templates.size_of(ctx.caller, args["templateid"])
        args = {**args, "template_bytes": size}
    return await _list_service_offerings(ctx, await _visibility(ctx, args))


async def _visibility(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """The dedication filters of an offering list: the domains whose offerings the caller (or the domain
    or account it names) may use, and the zone."""
    out = dict(args)
    if "projectid" in args:
        project = await ctx.services.projects.get(ctx.caller, args["projectid"])
        out["domains"] = await ctx.services.tenancy.domain_chain(ctx.caller, project.row.domain_uuid)
    elif "domainid" in args:
        out["domains"] = await ctx.services.tenancy.domain_chain(ctx.caller, args["domainid"])
    elif not ctx.caller.is_admin or not args.get("listall", True):
        out["domains"] = await ctx.services.tenancy.domain_chain(ctx.caller)
    if "zoneid" in args:
        out["zone"] = args["zoneid"]
    return out


def _dedication_view(r: Any) -> dict[str, Any]:
    domains = [u for u in r.domain_ids.split(",") if u]
    zones = [u for u in r.zone_ids.split(",") if u]
    return {"domainid": ",".join(domains) or None, "zoneid": ",".join(zones) or None}


@command(
    "createServiceOffering",
    "Creates a service offering. Without cpunumber, cpuspeed or memory (or with customized=true) it is a "
    "custom offering: each deploy gives what it leaves open (details[0].cpuNumber, cpuSpeed, memory), "
    "within mincpunumber..maxcpunumber and minmemory..maxmemory.",
    Param("name", required=True, description="the offering's name"),
    Param("displaytext", description="its description (default: the name)"),
    Param("cpunumber", "integer", description="vCPUs (absent: given at deploy)"),
    Param("cpuspeed", "integer", description="MHz per vCPU (absent: given at deploy)"),
    Param("memory", "integer", description="memory in MiB (absent: given at deploy)"),
    Param("customized", "boolean", description="true: a custom offering (give none of cpunumber and memory)"),
    Param("mincpunumber", "integer", description="a custom offering's fewest vCPUs"),
    Param("maxcpunumber", "integer", description="a custom offering's most vCPUs"),
    Param("minmemory", "integer", description="a custom offering's least memory (MiB)"),
    Param("maxmemory", "integer", description="a custom offering's most memory (MiB)"),
    Param("hosttags", description="comma-separated tags a host must have"),
    Param("tags", description="comma-separated storage tags the root disk's pool must have"),
    Param("offerha", "boolean", description="whether VMs are HA-enabled by default"),
    Param("rootdisksize", "long", description="the root disk's size in GB (default: the template's)"),
    Param("deploymentplanner", description=f"the planner for its VMs: {', '.join(PLANNERS)} (admins)"),
    Param("limitcpuuse", "boolean", description="cap each VM's CPU at its offering's speed (libvirt quota)"),
    *refuse("recreating the root disk at each reboot (volatile VMs) is not supported yet", "isvolatile",
            harmless=("false",), applies=True),
    Param("networkrate", "integer", description="each NIC's rate limit in Mb/s (-1: none)"),
    Param("diskofferingid", "uuid",
          description="a disk offering whose provisioning, cache mode, I/O limits and tags the root disk "
                      "takes"),
    Param("diskofferingstrictness", "boolean", description="VMs may not override the root disk's offering"),
    Param("serviceofferingdetails", "map", description="details kept with the offering (key/value)"),
    Param("issystem", "boolean", description="false only: there are no system VMs"),
    *DISK_TUNING,
    *_NOT_APPLYING,
    *refuse(SYSTEM_VMS, "systemvmtype"),
    *refuse(ENCRYPTION, "encryptroot", harmless=("false",), applies=True),
    *refuse(LIVE_SCALING, "dynamicscalingenabled", harmless=("false",), applies=True),
    admin=True,
    event="SERVICE.OFFERING.CREATE",
    response="serviceoffering",
)
async def create_service_offering(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("issystem"):
        raise InvalidParameter(f"issystem=true: {SYSTEM_VMS}")
    if args.get("customized") and ("cpunumber" in args or "memory" in args):
        raise InvalidParameter("a customized offering takes no cpunumber or memory (each deploy gives them)")
    if args.get("customized") is False and not all(k in args for k in ("cpunumber", "cpuspeed", "memory")):
        raise InvalidParameter("customized=false needs cpunumber, cpuspeed and memory")
    disk_args = dict(args)
    details = as_dict(args.get("serviceofferingdetails", []))
    if "diskofferingid" in args:  # the root disk takes the disk offering's tuning and tags
        disk = await ctx.services.resources.get(DISK_OFFERING, args["diskofferingid"])
        disk_args = {**_tuning_args(disk), **disk_args}
        if disk.tags and "tags" not in args:
            disk_args["tags"] = disk.tags
        details["diskofferingid"] = disk.uuid
    if args.get("diskofferingstrictness"):
        details["diskofferingstrictness"] = "true"
    if disk_args.get("tags"):
        details["storagetags"] = ",".join(tags(disk_args["tags"]))
    spec = ServiceOfferingSpec(
        args["name"], args.get("cpunumber", 0), args.get("cpuspeed", 0), args.get("memory", 0),
        args.get("displaytext", ""), tags(args.get("hosttags", "")), args.get("offerha", False),
        min_cpus=args.get("mincpunumber"), max_cpus=args.get("maxcpunumber"),
        min_memory_mb=args.get("minmemory"), max_memory_mb=args.get("maxmemory"),
        root_disk_gb=args.get("rootdisksize"), deployment_planner=args.get("deploymentplanner", ""),
        limit_cpu_use=args.get("limitcpuuse", False), is_volatile=False,
        network_rate=args.get("networkrate"), disk=DiskTuning.from_args(disk_args), details=details,
        domain_uuids=tuple(uuids(args, "domainid")), zone_uuids=tuple(uuids(args, "zoneid")))
    made = await created(ctx, spec, "SERVICE.OFFERING.CREATE", "ServiceOffering", service_offering_view)
    return {"serviceoffering": made}


def _tuning_args(r: Any) -> dict[str, Any]:
    """An offering's tuning as the API's parameters (to copy it to another offering)."""
    shown = view_tuning(r)
    out: dict[str, Any] = {"provisioningtype": r.provisioning_type, "cachemode": r.cache_mode,
                           "storagetype": r.storage_type}
    out.update({param: shown[field] for param, field in IO_PARAMS.items() if field in shown})
    return out


@command(
    "updateServiceOffering",
    "Changes a service offering's name, description or host tags (VMs keep what they were made with).",
    Param("id", "uuid", required=True, description="the offering's id"),
    Param("name", description="the new name"),
    Param("displaytext", description="the new description"),
    Param("hosttags", description="the new comma-separated host tags (empty: none)"),
    Param("sortkey", "integer",
          description="its place in lists (sortkey.algorithm: ascending or descending)"),
    Param("domainid", description="the domains it is for, comma-separated, or public"),
    Param("zoneid", description="the zones it is offered in, comma-separated, or public (every zone)"),
    Param("storagetags", description="the storage tags the root disks of its new VMs need (empty: none)"),
    admin=True,
    event="SERVICE.OFFERING.EDIT",
    response="serviceoffering",
)
async def update_service_offering(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return {"serviceoffering": await updated(ctx, SERVICE_OFFERING, args, "SERVICE.OFFERING.EDIT",
                                              "ServiceOffering", service_offering_view)}



command(
    "deleteServiceOffering",
    "Deletes a service offering (VMs using it keep it).",
    Param("id", "uuid", required=True, description="the offering's id"),
    admin=True,
    event="SERVICE.OFFERING.DELETE",
)(deleter(SERVICE_OFFERING, "SERVICE.OFFERING.DELETE", "ServiceOffering", __name__))


def disk_offering_view(r: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": r.uuid,
        "name": r.name,
        "displaytext": r.display_text,
        "disksize": r.size_gb,
        "tags": r.tags,
        "iscustomized": r.size_gb == 0,
        "storagetype": r.storage_type,
        "displayoffering": r.display,
        "disksizestrictness": r.size_strict,
        "details": _json(r.details) or None,
        "iscustomizediops": False,
        **_dedication_view(r),
        **view_tuning(r),
        "created": date(r.created),
    }
    return {k: v for k, v in view.items() if v is not None}


_list_disk_offerings = lister(DISK_OFFERING, "diskoffering", disk_offering_view, __name__)


@command(
    "listDiskOfferings",
    "Lists disk offerings (sizes of data disks); users see only those with displayoffering=true.",
    Param("id", "uuid", description="the offering's id"),
    Param("name", description="the offering's name"),
    Param("storagetype", description="shared or local"),
    Param("zoneid", "uuid", description="the offerings of the zone (public or dedicated to it)"),
    Param("domainid", "uuid", description="the offerings the domain's accounts may use (public, or "
                                          "dedicated to it or a domain above)"),
    Param("account", description="the offerings the account may use (with domainid)"),
    Param("isrecursive", "boolean", description="with domainid: offerings are inherited downward, so this "
                                                "changes nothing"),
    Param("listall", "boolean", description="admins: every offering, whoever it is dedicated to"),
    Param("projectid", "uuid", description="the offerings the project may use (those of its domain)"),
    *refuse(ENCRYPTION, "encrypt", harmless=("false",), applies=True),
    Param("storageid", "uuid", description="the offerings whose storage tags this pool has"),
    Param("volumeid", "uuid", description="the offerings whose storage tags the volume's pool has"),
    Param("virtualmachineid", "uuid", description="the offerings whose storage tags the VM's root volume's "
                                                  "pool has (data disks it may take there)"),
    *PAGING,
    response="diskoffering",
)
async def list_disk_offerings(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if not ctx.caller.is_admin:
        args = {**args, "display": True}
    args = await _visibility(ctx, args)
    if not any(k in args for k in ("storageid", "volumeid", "virtualmachineid")):
        answer: dict[str, Any] = await _list_disk_offerings(ctx, args)
        return answer
    has = await ctx.services.volumes.pool_tags(ctx.caller, pool_uuid=args.get("storageid", ""),
                                               volume_uuid=args.get("volumeid", ""),
                                               vm_uuid=args.get("virtualmachineid", ""))
    everything = await _list_disk_offerings(ctx, {**args, "page": 1, "pagesize": -1})
    suitable = [o for o in everything.get("diskoffering", []) if set(tags(o.get("tags", ""))) <= has]
    offset, limit = page(args)
    return listing("diskoffering", suitable[offset: None if limit is None else offset + limit], len(suitable))


@command(
    "createDiskOffering",
    "Creates a disk offering: a fixed size, or custom (customized=true, or no disksize) where each volume "
    "gives its size.",
    Param("name", required=True, description="the offering's name"),
    Param("displaytext", description="its description (default: the name)"),
    Param("disksize", "long", description="size in GB (absent, or customized=true: the volume gives it)"),
    Param("customized", "boolean", description="true: a custom size"),
    Param("disksizestrictness", "boolean", description="volumes of it keep their size"),
    Param("displayoffering", "boolean", description="whether users see it (default true)"),
    Param("tags", description="comma-separated storage tags a pool must have"),
    Param("details", "map", description="details kept with the offering (key/value)"),
    *DISK_TUNING,
    *_NOT_APPLYING,
    *refuse(ENCRYPTION, "encrypt", harmless=("false",), applies=True),
    admin=True,
    event="DISK.OFFERING.CREATE",
    response="diskoffering",
)
async def create_disk_offering(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("customized") and "disksize" in args:
        raise InvalidParameter("a customized disk offering takes no disksize (each volume gives its size)")
    spec = DiskOfferingSpec(args["name"], 0 if args.get("customized") else args.get("disksize", 0),
                            args.get("displaytext", ""), tags(args.get("tags", "")),
                            args.get("disksizestrictness", False), args.get("displayoffering", True),
                            DiskTuning.from_args(args), as_dict(args.get("details", [])),
                            tuple(uuids(args, "domainid")), tuple(uuids(args, "zoneid")))
    made = await created(ctx, spec, "DISK.OFFERING.CREATE", "DiskOffering", disk_offering_view)
    return {"diskoffering": made}


@command(
    "updateDiskOffering",
    "Changes a disk offering's names, storage tags, whether users see it, and the cache mode and I/O "
    "limits of volumes made from it from now on.",
    Param("id", "uuid", required=True, description="the offering's id"),
    Param("name", description="the new name"),
    Param("displaytext", description="the new description"),
    Param("displayoffering", "boolean", description="whether users see it"),
    Param("tags", description="the new comma-separated storage tags (empty: none)"),
    Param("cachemode", description="none, writeback or writethrough"),
    Param("sortkey", "integer",
          description="its place in lists (sortkey.algorithm: ascending or descending)"),
    *(p for p in DISK_TUNING if p.name not in ("provisioningtype", "cachemode", "storagetype")),
    Param("domainid", description="the domains it is for, comma-separated, or public"),
    Param("zoneid", description="the zones it is offered in, comma-separated, or public (every zone)"),
    admin=True,
    event="DISK.OFFERING.EDIT",
    response="diskoffering",
)
async def update_disk_offering(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return {"diskoffering": await updated(ctx, DISK_OFFERING, args, "DISK.OFFERING.EDIT", "DiskOffering",
                                           disk_offering_view)}


command(
    "deleteDiskOffering",
    "Deletes a disk offering (volumes made from it stay).",
    Param("id", "uuid", required=True, description="the offering's id"),
    admin=True,
    event="DISK.OFFERING.DELETE",
)(deleter(DISK_OFFERING, "DISK.OFFERING.DELETE", "DiskOffering", __name__))
