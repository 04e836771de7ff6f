"""Templates (listTemplates with every templatefilter, registerTemplate, deleteTemplate) and OS types."""

from __future__ import annotations

import os
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ...db.database import inserted_id
from ...db.schema import accounts, domains, templates, vms, zones
from ...errors import InvalidParameter, PermissionDenied, ResourceInUse
from ..registry import Param, command
from .common import PAGING, date, fetch, find, keyword, listing, matching, new_uuid, now, page, success

if TYPE_CHECKING:
    from ..app import Context

FILTERS = ("featured", "self", "selfexecutable", "sharedexecutable", "executable", "community", "all")
FORMATS = ("QCOW2", "RAW", "VHD", "OVA", "ISO")
_OS_NAMESPACE = uuid.UUID("6f1c2a59-0d1e-4c55-9a63-6d0d9b3e2c11")
OS_TYPES = (
    ("Other Linux (64-bit)", "Other"),
    ("Debian GNU/Linux 12 (64-bit)", "Debian"),
    ("Debian GNU/Linux 11 (64-bit)", "Debian"),
    ("Ubuntu 24.04 LTS", "Ubuntu"),
    ("Ubuntu 22.04 LTS", "Ubuntu"),
    ("Rocky Linux 9", "CentOS"),
    ("Windows Server 2022 (64-bit)", "Windows"),
    ("Other (64-bit)", "Other"),
)


def os_type_id(description: str) -> str:
    return str(uuid.uuid5(_OS_NAMESPACE, description))


OS_BY_ID = {os_type_id(d): d for d, _ in OS_TYPES}


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


def _query() -> sa.Select[Any]:
    # A template with no zone is in every zone: one item per zone, as CloudStack lists them.
    return (
        sa.select(
            templates,
            zones.c.uuid.label("zone_uuid"),
            zones.c.name.label("zone_name"),
            accounts.c.name.label("account_name"),
            domains.c.uuid.label("domain_uuid"),
            domains.c.name.label("domain_name"),
        )
        .join(zones, sa.or_(templates.c.zone_id.is_(None), templates.c.zone_id == zones.c.id))
        .outerjoin(accounts, accounts.c.id == sa.func.coalesce(templates.c.account_id, 1))
        .outerjoin(domains, domains.c.id == accounts.c.domain_id)
        .where(zones.c.removed.is_(None))
    )


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


def _visible(caller: Any, flt: str) -> list[Any]:
    own = sa.func.coalesce(templates.c.account_id, 1) == caller.account_id
    ready = templates.c.state == "Ready"
    match flt:
        case "featured":
            return [templates.c.featured.is_(True), templates.c.public.is_(True)]
        case "self":
            return [own]
        case "selfexecutable":
            return [own, ready]
        case "sharedexecutable":
            return [ready, templates.c.public.is_(True), ~own]
        case "executable":
            return [ready, sa.or_(own, templates.c.public.is_(True))]
        case "community":
            return [templates.c.public.is_(True), templates.c.featured.is_(False)]
    if not caller.is_admin:  # "all"
        raise PermissionDenied("templatefilter=all is for admins; use executable")
    return []


def _list(conn: Connection, caller: Any, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = [
        templates.c.removed.is_(None),
        *_visible(caller, args["templatefilter"]),
        *keyword(templates.c.name, args),
    ]
    where += matching(
        args,
        {
            "id": templates.c.uuid,
            "name": templates.c.name,
            "zoneid": zones.c.uuid,
            "hypervisor": templates.c.hypervisor_type,
        },
    )
    rows, total = fetch(conn, _query().where(*where), (templates.c.id, zones.c.id), args)
    return [template_view(r) for r in rows], total


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
    if args["templatefilter"] not in FILTERS:
        raise InvalidParameter(f"templatefilter must be one of {', '.join(FILTERS)}")
    items, total = await ctx.read(_list, ctx.caller, args)
    return listing("template", items, total)


def _source(url: str, *, local_files: bool) -> tuple[str, int]:
    """The template's URL as agents will fetch it, and its size when it is a file here. A path on the
    management server (file:///path or /path) is a root admin's to name: anyone else could learn which
    files exist there, or have hosts copy them."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return url, 0
    if not local_files:
        raise InvalidParameter(f"url {url[:128]!r}: give an http(s):// URL (files on the management server "
                               f"are for root admins)")
    path = parsed.path if parsed.scheme == "file" else url if not parsed.scheme else ""
    if not path.startswith("/"):
        raise InvalidParameter(f"url {url[:128]!r}: give http(s)://..., file:///path or an absolute path")
    try:
        size = os.stat(path).st_size
    except OSError as e:
        raise InvalidParameter(
            f"url {url[:128]!r}: the management server cannot read it ({e.strerror})"
        ) from None
    return f"file://{path}", size


BOOT_DETAILS = ("kernel", "initrd", "bootargs")


def boot_details(args: dict[str, Any]) -> dict[str, str]:
    """The direct-boot details of a template: a kernel (and initrd, boot arguments) by absolute path."""
    merged: dict[str, str] = {}
    for entry in args.get("details", []):
        merged.update(entry)
    unknown = sorted(set(merged) - set(BOOT_DETAILS))
    if unknown:
        raise InvalidParameter(
            f"unknown template details {', '.join(unknown)} (known: {', '.join(BOOT_DETAILS)})"
        )
    if merged and args["hypervisor"] != "KVM":
        raise InvalidParameter("kernel, initrd and bootargs details are for KVM templates")
    if ("initrd" in merged or "bootargs" in merged) and "kernel" not in merged:
        raise InvalidParameter("details initrd and bootargs need details kernel too")
    for key in ("kernel", "initrd"):
        if key in merged:
            path = urllib.parse.urlparse(merged[key]).path if merged[key].startswith("file:") else merged[key]
            if not path.startswith("/"):
                raise InvalidParameter(
                    f"details {key} must be an absolute path on the hosts, not {merged[key]!r}"
                )
            merged[key] = path
    if any(c in merged.get("bootargs", "") for c in "\n\r\0"):
        raise InvalidParameter("details bootargs must be one line")
    if len(merged.get("bootargs", "")) > 1024:
        raise InvalidParameter("details bootargs must be at most 1024 characters")
    return merged


def _register(
    conn: Connection, caller: Any, args: dict[str, Any], url: str, size: int
) -> list[dict[str, Any]]:
    zone_id = None
    if args.get("zoneid") and args["zoneid"] != "-1":
        zone_id = find(conn, caller, zones, args["zoneid"], "zone").id
    os_type = OS_BY_ID.get(args.get("ostypeid", ""), "")
    if args.get("ostypeid") and not os_type:
        raise InvalidParameter(f"unable to find OS type {args['ostypeid']} (see listOsTypes)")
    if args.get("isfeatured") and not caller.is_admin:
        raise PermissionDenied("only admins may feature a template")
    template_id = inserted_id(conn.execute(
        templates.insert().values(
            uuid=new_uuid(),
            name=args["name"],
            display_text=args.get("displaytext", args["name"]),
            format=args["format"].upper(),
            hypervisor_type=args["hypervisor"],
            os_type=os_type,
            url=url,
            size_bytes=size,
            details=orjson.dumps(args["details"]).decode(),
            public=args.get("ispublic", False),
            featured=args.get("isfeatured", False),
            account_id=caller.account_id,
            zone_id=zone_id,
            state="Ready",
            created=now(),
        )
    ))
    rows = conn.execute(_query().where(templates.c.id == template_id).order_by(zones.c.id))
    return [template_view(r) for r in rows]


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
    if args["format"].upper() not in FORMATS:
        raise InvalidParameter(f"format must be one of {', '.join(FORMATS)}")
    if args["hypervisor"] not in ("KVM", "Simulator"):
        raise InvalidParameter("hypervisor must be KVM or Simulator")
    if args.get("zoneid") not in (None, "-1"):
        try:
            args["zoneid"] = str(uuid.UUID(args["zoneid"]))
        except ValueError:
            raise InvalidParameter("parameter zoneid must be a UUID or -1") from None
    url, size = _source(args["url"], local_files=ctx.caller.is_admin)
    args["details"] = boot_details(args)
    if args["details"] and not ctx.caller.is_admin:
        raise InvalidParameter("kernel, initrd and bootargs details name files on the hosts: they are for "
                               "root admins")
    if not size:
        size = args.get("size", 0)
        if size < 0:
            raise InvalidParameter("size must not be negative")
    items = await ctx.run(_register, ctx.caller, args, url, size)
    await ctx.event(
        "TEMPLATE.CREATE",
        f"registered template {args['name']}",
        resource_type="Template",
        resource_uuid=items[0]["id"] if items else None,
    )
    return listing("template", items, len(items))


def _delete(conn: Connection, caller: Any, ident: str) -> str:
    row = find(conn, caller, templates, ident, "template")
    if not caller.is_admin and row.account_id != caller.account_id:
        raise PermissionDenied(f"unable to find or access template {ident}")
    if conn.scalar(sa.select(vms.c.id).where(vms.c.template_id == row.id, vms.c.removed.is_(None)).limit(1)):
        raise ResourceInUse(f"template {row.name} is used by VMs; expunge them first")
    conn.execute(templates.update().where(templates.c.id == row.id).values(removed=now()))
    return str(row.name)


@command(
    "deleteTemplate",
    "Deletes a template no VM uses (copies already on primary storage stay until their pool is removed).",
    Param("id", "uuid", required=True, description="the template's id"),
    Param("zoneid", "uuid", description="accepted for compatibility (deleted from every zone)"),
    event="TEMPLATE.DELETE",
)
async def delete_template(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    name = await ctx.run(_delete, ctx.caller, args["id"])
    await ctx.event(
        "TEMPLATE.DELETE", f"deleted template {name}", resource_type="Template", resource_uuid=args["id"]
    )
    return success()
