"""Affinity groups (the planner honours them: host anti-affinity keeps members on different hosts, host
affinity on one): list, create, delete, and the group types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...services.affinity import TYPES, AffinityGroup
from ..registry import Param, command
from .common import OWNER, PAGING, PROJECT, listing, page

if TYPE_CHECKING:
    from ..app import Context


def _view(group: AffinityGroup) -> dict[str, Any]:
    r = group.row
    return {
        "id": r.uuid,
        "name": r.name,
        "type": r.type,
        "description": r.description,
        "account": r.account_name,
        "domainid": r.domain_uuid,
        "domain": r.domain_name,
        "virtualmachineIds": group.members,
    }


@command("listAffinityGroupTypes", "Lists the affinity group types.", *PAGING, response="affinityGroupType")
async def list_affinity_group_types(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    found = [{"type": t} for t in TYPES if args.get("keyword", "").lower() in t]
    offset, limit = page(args)
    return listing("affinityGroupType", found[offset: None if limit is None else offset + limit], len(found))


@command(
    "listAffinityGroups",
    "Lists affinity groups: the caller's own (admins: every account's with listall=true).",
    Param("id", "uuid", description="the group's id"),
    Param("name", description="the group's name"),
    Param("type", description="host anti-affinity or host affinity"),
    Param("virtualmachineid", "uuid", description="the groups of this VM"),
    *OWNER,
    *PAGING,
    response="affinitygroup",
)
async def list_affinity_groups(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    found, total = await ctx.services.affinity.matching(ctx.caller, args)
    return listing("affinitygroup", [_view(g) for g in found], total)


@command(
    "createAffinityGroup",
    "Creates an affinity group for the caller's VMs.",
    Param("name", required=True, description="the group's name"),
    Param("type", required=True, description="host anti-affinity or host affinity"),
    Param("description", description="what it is for"),
    Param("account", description="the account it is for (admins, with domainid)"),
    Param("domainid", "uuid", description="that account's domain"),
    PROJECT,
    is_async=True,
    event="AG.CREATE",
    response="affinitygroup",
)
async def create_affinity_group(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    group = _view(await ctx.services.affinity.create(ctx.caller, args["name"], args["type"],
                                                     args.get("description", ""),
                                                     account_name=args.get("account", ""),
                                                     domain_uuid=args.get("domainid", ""),
                                                     project_uuid=args.get("projectid", "")))

    async def work() -> dict[str, Any]:
        return {"affinitygroup": group}

    job = await ctx.submit(
        work,
        description=f"created affinity group {group['name']}",
        instance_type="AffinityGroup",
        instance_uuid=group["id"],
    )
    return {"id": group["id"], "jobid": job}


@command(
    "deleteAffinityGroup",
    "Deletes an affinity group that has no VMs.",
    Param("id", "uuid", description="the group's id"),
    Param("name", description="the group's name"),
    Param("account", description="with name: the account it is of (admins, with domainid)"),
    Param("domainid", "uuid", description="that account's domain"),
    PROJECT,
    is_async=True,
    event="AG.DELETE",
)
async def delete_affinity_group(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    row = await ctx.services.affinity.delete(ctx.caller, ident=args.get("id", ""), name=args.get("name", ""),
                                             account_name=args.get("account", ""),
                                             domain_uuid=args.get("domainid", ""),
                                             project_uuid=args.get("projectid", ""))

    async def work() -> dict[str, Any]:
        return {"success": True}

    job = await ctx.submit(
        work,
        description=f"deleted affinity group {row.name}",
        instance_type="AffinityGroup",
        instance_uuid=row.uuid,
    )
    return {"jobid": job}
