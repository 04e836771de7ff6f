"""What the command modules share: list shapes, paging parameters, dates, tags, and the handlers of
declared kinds' lists and deletes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ...services.crud import Kind, kind_of
from ...services.queries import MAX_PAGE, page, uuids
from ..registry import Param

if TYPE_CHECKING:
    from ..app import Context

__all__ = ["ICON", "OWNER", "PAGING", "PROJECT",
           "as_dict", "created", "date", "deleter", "lister", "listing", "page",
           "success", "tags", "updated", "uuids"]


def listing(key: str, items: list[dict[str, Any]], total: int) -> dict[str, Any]:
    """CloudStack's list shape: ``{"count": total over all pages, key: [...]}``, or ``{}`` when empty."""
    return {"count": total, key: items} if items else {}


# Why a CloudStack parameter is refused (registry.refuse). Those that do not apply to a KVM cloud:
VMWARE = "it applies to VMware only"
OVM3 = "it applies to OVM3 only"
IPV6 = "IPv6 is not supported"
MANAGED = "it applies to managed storage (per-volume IOPS), which file pools are not"
SYSTEM_VMS = "Cumulo runs no system VMs (virtual routers, console proxies, secondary storage VMs)"
NO_VR = "it configures virtual routers, which Cumulo does not run"
ICONS = "resource icons are not supported"
# ... and those that would apply but Cumulo lacks yet (refused with applies=True):
VPCS = "VPCs are not supported yet"
SNAPSHOTS = "snapshots are not supported yet"
RESOURCE_TAGS = "resource tags are not supported yet"
ENCRYPTION = "volume encryption is not supported yet"
LIVE_SCALING = "scaling a running VM is not supported yet"
DEDICATION = "zones are public here: dedicating a zone to a domain is not supported yet"


ICON = Param("showicon", "boolean", description="add resource icons (none can be set here: nothing is added)")
PAGING = (
    Param("page", "integer", description="the page to list, from 1 (with pagesize)"),
    Param("pagesize", "integer", description=f"items per page, up to {MAX_PAGE}; -1: all (with page)"),
    Param("keyword", description="a part of the name to match"),
)
OWNER = (
    Param("listall", "boolean", description="admins: every account's items, not only their own"),
    Param("account", description="with domainid: the account whose items to list (admins)"),
    Param("domainid", "uuid", description="the domain of account"),
    Param("isrecursive", "boolean", description="with domainid (or listall): its subdomains' items too"),
    Param("projectid", length=36, description="a project's items (a member's, or an admin's above it); -1: "
                                              "those of every project in the caller's reach"),
)
# Who a create acts for: the caller, an account (admins), or a project the caller is a member of.
PROJECT = Param("projectid", "uuid", description="create it for this project (the caller is a member, or "
                                                 "an admin above it; the project is active)")


def date(dt: datetime | None) -> str | None:
    """CloudStack's date format, in UTC: ``2026-05-01T12:00:00+0000``."""
    if dt is None:
        return None
    if dt.tzinfo is None:  # SQLite keeps no offset: every stamp is written in UTC
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def success(text: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"success": True}
    if text:
        body["displaytext"] = text
    return body


Handler = Callable[["Context", dict[str, Any]], Awaitable[dict[str, Any]]]


def lister(kind: Kind, key: str, view: Callable[[Any], dict[str, Any]], module: str) -> Handler:
    """The handler of a declared kind's list command: its rows, filtered and paged, as ``view`` shows them.
    ``module``: the command module it belongs to (its docs section)."""
    async def handler(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        rows, total = await ctx.services.resources.list(kind, args)
        return listing(key, [view(r) for r in rows], total)

    handler.__module__ = module
    return handler


def deleter(kind: Kind, event: str, resource_type: str, module: str) -> Handler:
    """The handler of a declared kind's delete command (by ``id``), recording ``event``."""
    async def handler(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        name = await ctx.services.resources.delete(ctx.caller, kind, args["id"])
        await ctx.event(event, f"deleted {kind.name} {name}", resource_type=resource_type,
                        resource_uuid=args["id"])
        return success()

    handler.__module__ = module
    return handler


async def updated(ctx: Context, kind: Kind, args: dict[str, Any], event: str, resource_type: str,
                  view: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """Change a declared kind's resource as ``args`` asks, record the event; it as ``view`` shows it."""
    row, changed = await ctx.services.resources.update(ctx.caller, kind, args["id"], args)
    await ctx.event(event, f"updated {kind.name} {row.name}: {', '.join(changed) or 'nothing'}",
                    resource_type=resource_type, resource_uuid=row.uuid)
    return view(row)


def as_dict(entries: list[dict[str, str]]) -> dict[str, str]:
    """A map parameter's entries as one dict: ``details[0].key=k&details[0].value=v`` or
    ``details[0].k=v``."""
    out: dict[str, str] = {}
    for entry in entries:
        out.update({entry["key"]: entry["value"]} if set(entry) == {"key", "value"} else entry)
    return out


async def created(ctx: Context, spec: object, event: str, resource_type: str,
                  view: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """Create what ``spec`` declares, record the event; the new resource as ``view`` shows it."""
    made = view(await ctx.services.resources.create(ctx.caller, spec))
    await ctx.event(event, f"created {kind_of(spec).name} {made['name']}", resource_type=resource_type,
                    resource_uuid=made["id"])
    return made


def tags(text: str) -> tuple[str, ...]:
    """A comma-separated list of tags, trimmed, empty ones dropped."""
    return tuple(t.strip() for t in text.split(",") if t.strip())
