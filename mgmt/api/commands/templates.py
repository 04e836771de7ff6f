"""Templates (listTemplates with every templatefilter, registerTemplate, deleteTemplate) and OS types."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson

from ...errors import InvalidParameter
from ...services.templates import FILTERS, FORMATS, OS_TYPES, TemplateSpec, os_type_id
from ..registry import Param, command
from .common import PAGING, date, listing, page, success

if TYPE_CHECKING:
    from ..app import Context


@command(
    "listOsTypes",
    "Lists the guest operating system types a template can declare.",
    Param("id", "uuid", description="the OS type's id"),
    Param("description", description="the OS type's description"),
    *PAGING,
    response="ostype",
)
async def list_os_types(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    items = [
        {
            "id": os_type_id(d),
            "description": d,
            "oscategoryid": os_type_id("category " + c),
            "isuserdefined": False,
        }
        for d, c in OS_TYPES
        if ("id" not in args or os_type_id(d) == args["id"])
        and ("description" not in args or d == args["description"])
        and ("keyword" not in args or args["keyword"].lower() in d.lower())
    ]
    offset, limit = page(args)
    return listing("ostype", items[offset : None if limit is None else offset + limit], len(items))


def template_view(r: Any) -> dict[str, Any]:
    ready = r.state == "Ready"
    return {
        "id": r.uuid,
        "name": r.name,
        "displaytext": r.display_text,
        "hypervisor": r.hypervisor_type,
        "format": r.format,
        "ostypename": r.os_type or "Other Linux (64-bit)",
        "ostypeid": os_type_id(r.os_type or "Other Linux (64-bit)"),
        "isready": ready,
        "status": "Download Complete" if ready else r.state,
        "templatetype": "USER",
        "zoneid": r.zone_uuid,
        "zonename": r.zone_name,
        "size": r.size_bytes,
        "ispublic": r.public,
        "isfeatured": r.featured,
        "isextractable": False,
        "passwordenabled": False,
        "crossZones": r.zone_id is None,
        "account": r.account_name,
        "domainid": r.domain_uuid,
        "domain": r.domain_name,
        "url": r.url,
        "details": orjson.loads(r.details or "{}"),
        "created": date(r.created),
        "tags": [],
    }


@command(
    "listTemplates",
    "Lists templates: featured, self, selfexecutable, sharedexecutable, executable, community or all "
    "(admins).",
    Param("templatefilter", required=True, description=", ".join(FILTERS)),
    Param("id", "uuid", description="the template's id"),
    Param("name", description="the template's name"),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("hypervisor", description="the hypervisor type"),
    Param("listall", "boolean", description="accepted for compatibility"),
    *PAGING,
    response="template",
)
async def list_templates(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    rows, total = await ctx.services.templates.visible(ctx.caller, args)
    return listing("template", [template_view(r) for r in rows], total)


@command(
    "registerTemplate",
    "Registers a template from a URL or a path on the management server (agents fetch it from there).",
    Param("name", required=True, description="the template's name"),
    Param("displaytext", description="its description (default: the name)"),
    Param("url", required=True, description="http(s)://..., file:///path or /path", length=2048),
    Param("format", required=True, description=", ".join(FORMATS)),
    Param("hypervisor", required=True, description="KVM or Simulator"),
    Param("zoneid", description="the zone's id, or -1 for every zone"),
    Param("ostypeid", "uuid", description="the guest OS type (listOsTypes)"),
    Param("ispublic", "boolean", description="whether every account may use it"),
    Param("isfeatured", "boolean", description="whether it is featured (admins)"),
    Param("size", "long", description="its size in bytes, when the URL is not a local file"),
    Param("passwordenabled", "boolean", description="accepted for compatibility"),
    Param("details", "map", description="KVM direct kernel boot: details[0].kernel=/path, "
          "details[0].initrd=/path, details[0].bootargs=... (paths readable on every host)"),
    event="TEMPLATE.CREATE",
    response="template",
)
async def register_template(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    zone = args.get("zoneid", "-1")
    if zone != "-1":
        try:
            zone = str(uuid.UUID(zone))
        except ValueError:
            raise InvalidParameter("parameter zoneid must be a UUID or -1") from None
    spec = TemplateSpec(
        name=args["name"], url=args["url"], format=args["format"], hypervisor=args["hypervisor"],
        display_text=args.get("displaytext", ""), zone_uuid="" if zone == "-1" else zone,
        os_type_uuid=args.get("ostypeid", ""), public=args.get("ispublic", False),
        featured=args.get("isfeatured", False), size=args.get("size", 0), details=args.get("details", []),
    )
    items = [template_view(r) for r in await ctx.services.templates.register(ctx.caller, spec)]
    await ctx.event(
        "TEMPLATE.CREATE",
        f"registered template {args['name']}",
        resource_type="Template",
        resource_uuid=items[0]["id"] if items else None,
    )
    return listing("template", items, len(items))


@command(
    "deleteTemplate",
    "Deletes a template no VM uses (copies already on primary storage stay until their pool is removed).",
    Param("id", "uuid", required=True, description="the template's id"),
    Param("zoneid", "uuid", description="accepted for compatibility (deleted from every zone)"),
    event="TEMPLATE.DELETE",
)
async def delete_template(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    name = await ctx.services.templates.delete(ctx.caller, args["id"])
    await ctx.event(
        "TEMPLATE.DELETE", f"deleted template {name}", resource_type="Template", resource_uuid=args["id"]
    )
    return success()
