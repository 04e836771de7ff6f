"""Templates (listTemplates with every templatefilter, registerTemplate, deleteTemplate) and OS types."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson

from ...errors import InvalidParameter
from ...services.templates import FILTERS, FORMATS, OS_TYPES, TemplateSpec, os_type_id
from ..registry import Param, command, refuse
from .common import ICON, PAGING, PROJECT, SYSTEM_VMS, VMWARE, date, listing, page, success, uuids
from .tags import TAGS, with_tags

if TYPE_CHECKING:
    from ..app import Context


@command(
    "listOsTypes",
    "Lists the guest operating system types a template can declare.",
    Param("id", "uuid", description="the OS type's id"),
    Param("description", description="the OS type's description"),
    Param("oscategoryid", "uuid", description="the OS types of this category"),
    Param("fordisplay", "boolean", description="the OS types users see (all of them here; false: none)"),
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
        and ("oscategoryid" not in args or os_type_id("category " + c) == args["oscategoryid"])
        and args.get("fordisplay", True)
    ]
    offset, limit = page(args)
    return listing("ostype", items[offset : None if limit is None else offset + limit], len(items))


def template_view(r: Any, *, details: bool = True) -> dict[str, Any]:
    ready = r.state == "Ready"
    view: dict[str, Any] = {
        "id": r.uuid,
        "name": r.name,
        "displaytext": r.display_text,
        "hypervisor": r.hypervisor_type,
        "format": r.format,
        "ostypename": r.os_type or "Other Linux (64-bit)",
        "ostypeid": os_type_id(r.os_type or "Other Linux (64-bit)"),
        "isready": ready,
        "status": "Download Complete" if ready else r.state,
        "templatetype": r.template_type,
        "zoneid": r.zone_uuid,
        "zonename": r.zone_name,
        "size": r.size_bytes,
        "ispublic": r.public,
        "isfeatured": r.featured,
        "isextractable": r.extractable,
        "passwordenabled": r.password_enabled,
        "sshkeyenabled": r.sshkey_enabled,
        "isdynamicallyscalable": r.dynamically_scalable,
        "bits": r.bits,
        "checksum": r.checksum or None,
        "directdownload": r.direct_download,
        "templatetag": r.template_tag or None,
        "crossZones": r.zone_id is None,
        "account": r.account_name,
        "domainid": r.domain_uuid,
        "domain": r.domain_name,
        "url": r.url,
        "created": date(r.created),
        "tags": [],
    }
    if details:
        view["details"] = orjson.loads(r.details or "{}")
    return {k: v for k, v in view.items() if v is not None}


@command(
    "listTemplates",
    "Lists templates: featured, self, selfexecutable, sharedexecutable, executable, community or all "
    "(admins).",
    Param("templatefilter", required=True, description=", ".join(FILTERS)),
    Param("id", "uuid", description="the template's id"),
    Param("ids", "list", description="comma-separated template ids"),
    Param("name", description="the template's name"),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("hypervisor", description="the hypervisor type"),
    Param("templatetype", description="USER, BUILTIN or PERHOST"),
    Param("storageid", "uuid", description="the templates copied to this storage pool"),
    Param("showremoved", "boolean", description="deleted templates too (admins)"),
    Param("showunique", "boolean", description="one item per template (not one per zone it is in)"),
    Param("details", "list", description="all (default) or min (without their details)"),
    ICON,
    Param("listall", "boolean", description="with templatefilter=self: the templates of every account the "
                                            "caller manages (admins)"),
    Param("account", description="the templates of this account (admins, with domainid)"),
    Param("domainid", "uuid", description="the templates of this domain's accounts (admins)"),
    Param("isrecursive", "boolean", description="with domainid: its subdomains' too"),
    TAGS,
    Param("projectid", length=36, description="a project's templates (with templatefilter self or "
                                              "selfexecutable; -1: every project's in the caller's reach)"),
    *refuse("VNF appliances are not supported yet", "isvnf", harmless=("false",), applies=True),
    *refuse(VMWARE, "parenttemplateid"),
    *refuse(SYSTEM_VMS + ": templates live on primary storage and their URLs", "imagestoreid"),
    *PAGING,
    response="template",
)
async def list_templates(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    wanted = {d.lower() for d in args.get("details", ["all"])}
    if wanted - {"all", "min"}:
        raise InvalidParameter("details must be all or min")
    if "ids" in args:
        args = {**args, "ids": uuids(args, "ids")}
    if args.get("listall") and args.get("templatefilter") == "self" and ctx.caller.is_admin:
        args = {**args, "templatefilter": "all"}
    rows, total = await ctx.services.templates.visible(ctx.caller, args)
    answer = listing("template", [template_view(r, details="min" not in wanted) for r in rows], total)
    return await with_tags(ctx, answer, "template", "Template")


_TEMPLATE_FLAGS = (
    Param("passwordenabled", "boolean", description="the guest takes its password from the cloud (config "
                                                    "drive); deploys then make one"),
    Param("sshkeyenabled", "boolean", description="the guest takes SSH keys from the cloud"),
    Param("isdynamicallyscalable", "boolean", description="the guest can be scaled while it runs"),
    Param("templatetag", description="a tag of the template"),
    Param("templatetype", description="USER (default), BUILTIN or PERHOST (root admins)"),
    Param("requireshvm", "boolean", description="true only: KVM guests are always HVM"),
    *refuse(SYSTEM_VMS, "isrouting", harmless=("false",)),
)


@command(
    "registerTemplate",
    "Registers a template from a URL or a path on the management server (agents fetch it from there).",
    Param("name", required=True, description="the template's name"),
    Param("displaytext", description="its description (default: the name)"),
    Param("url", required=True, description="http(s)://..., file:///path or /path", length=2048),
    Param("format", required=True, description=", ".join(FORMATS)),
    Param("hypervisor", required=True, description="KVM or Simulator"),
    Param("zoneid", description="the zone's id, or -1 for every zone"),
    Param("zoneids", "list", description="one zone's id (a template is in one zone or in all here)"),
    Param("ostypeid", "uuid", description="the guest OS type (listOsTypes)"),
    Param("ispublic", "boolean", description="whether every account may use it"),
    Param("isfeatured", "boolean", description="whether it is featured (admins)"),
    Param("isextractable", "boolean", description="whether it may be downloaded"),
    Param("size", "long", description="its size in bytes, when the URL is not a local file"),
    Param("bits", "integer", description="32 or 64 (default)"),
    Param("checksum", description="{MD5}, {SHA-256}... and the digest in hex (a file on the management "
                                  "server is checked at once)"),
    Param("directdownload", "boolean", description="hosts download it themselves (they always do here)"),
    Param("account", description="register it for this account (admins, with domainid)"),
    Param("domainid", "uuid", description="that account's domain"),
    Param("details", "map", description="KVM direct kernel boot: details[0].kernel=/path, "
          "details[0].initrd=/path, details[0].bootargs=... (paths readable on every host)"),
    *_TEMPLATE_FLAGS,
    *refuse(VMWARE, "deployasis", harmless=("false",)),
    PROJECT,
    event="TEMPLATE.CREATE",
    response="template",
)
async def register_template(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    zone = args.get("zoneid", "-1")
    if "zoneids" in args:
        if "zoneid" in args or len(args["zoneids"]) != 1:
            raise InvalidParameter("give one zone in zoneids (or zoneid; -1: every zone)")
        zone = args["zoneids"][0]
    if zone != "-1":
        try:
            zone = str(uuid.UUID(zone))
        except ValueError:
            raise InvalidParameter("parameter zoneid must be a UUID or -1") from None
    if args.get("requireshvm") is False:
        raise InvalidParameter("requireshvm=false (paravirtual guests) applies to Xen; KVM guests are HVM")
    spec = TemplateSpec(
        name=args["name"], url=args["url"], format=args["format"], hypervisor=args["hypervisor"],
        display_text=args.get("displaytext", ""), zone_uuid="" if zone == "-1" else zone,
        os_type_uuid=args.get("ostypeid", ""), public=args.get("ispublic", False),
        featured=args.get("isfeatured", False), size=args.get("size", 0), details=args.get("details", []),
        account_name=args.get("account", ""), domain_uuid=args.get("domainid", ""),
        project_uuid=args.get("projectid", ""), bits=args.get("bits", 64),
        checksum=args.get("checksum", ""), password_enabled=args.get("passwordenabled", False),
        sshkey_enabled=args.get("sshkeyenabled", False), extractable=args.get("isextractable", False),
        dynamically_scalable=args.get("isdynamicallyscalable", False),
        template_tag=args.get("templatetag", ""), template_type=args.get("templatetype", "USER"),
        direct_download=args.get("directdownload", False),
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
    "updateTemplate",
    "Changes a template's names, flags, guest OS type, format or boot details.",
    Param("id", "uuid", required=True, description="the template's id"),
    Param("name", description="the new name"),
    Param("displaytext", description="the new description"),
    Param("ostypeid", "uuid", description="the guest OS type (listOsTypes)"),
    Param("format", description=", ".join(FORMATS)),
    Param("bootable", "boolean", description="true only: every template here boots"),
    Param("details", "map", description="KVM boot details to set (kernel, initrd, bootargs; root admins)"),
    Param("cleanupdetails", "boolean", description="remove its details"),
    *_TEMPLATE_FLAGS,
    Param("sortkey", "integer",
          description="its place in lists (sortkey.algorithm: ascending or descending)"),
    event="TEMPLATE.UPDATE",
    response="template",
)
async def update_template(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("bootable") is False:
        raise InvalidParameter("bootable=false is for ISOs, which are not supported")
    if args.get("requireshvm") is False:
        raise InvalidParameter("requireshvm=false (paravirtual guests) applies to Xen; KVM guests are HVM")
    columns = {"name": "name", "displaytext": "display_text", "ostypeid": "os_type", "format": "format",
               "passwordenabled": "password_enabled", "sshkeyenabled": "sshkey_enabled",
               "isdynamicallyscalable": "dynamically_scalable", "templatetag": "template_tag",
               "templatetype": "template_type", "sortkey": "sort_key"}
    values = {column: args[param] for param, column in columns.items() if param in args}
    details: dict[str, str] | None = None
    if "details" in args:
        details = {}
        for entry in args["details"]:
            details.update(entry)
    rows = await ctx.services.templates.update(ctx.caller, args["id"], values, details,
                                               args.get("cleanupdetails", False))
    await ctx.event("TEMPLATE.UPDATE", f"updated template {rows[0].name if rows else args['id']}",
                    resource_type="Template", resource_uuid=args["id"])
    return {"template": template_view(rows[0])} if rows else {}


@command(
    "deleteTemplate",
    "Deletes a template no VM uses (copies already on primary storage stay until their pool is removed).",
    Param("id", "uuid", required=True, description="the template's id"),
    Param("zoneid", "uuid", description="the zone it is in (a template in every zone goes from all: omit "
                                        "it)"),
    Param("forced", "boolean", description="delete it even when VMs use it (they keep it)"),
    is_async=True,
    event="TEMPLATE.DELETE",
)
async def delete_template(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    template = await ctx.services.templates.find_owned(ctx.caller, args["id"])

    async def work() -> dict[str, Any]:
        name = await ctx.services.templates.delete(ctx.caller, args["id"], zone_uuid=args.get("zoneid", ""),
                                                   forced=args.get("forced", False))
        await ctx.event("TEMPLATE.DELETE", f"deleted template {name}", resource_type="Template",
                        resource_uuid=args["id"])
        return success()

    job = await ctx.submit(work, description=f"deleted template {template.name}", instance_type="Template",
                           instance_id=template.id, instance_uuid=template.uuid)
    return {"jobid": job}
