"""Affinity groups (the planner honours them: host anti-affinity keeps members on different hosts, host
affinity on one): list, create, delete, and the group types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ...db.database import inserted_id
from ...db.schema import accounts, affinity_group_vms, affinity_groups, domains, vms
from ...errors import InvalidParameter, ResourceInUse
from ..registry import Param, command
from .common import OWNER, PAGING, fetch, find, keyword, listing, matching, new_uuid, now, owner_filter

if TYPE_CHECKING:
    from ..app import Context

TYPES = ("host anti-affinity", "host affinity")


@command("listAffinityGroupTypes", "Lists the affinity group types.", response="affinityGroupType")
async def list_affinity_group_types(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return listing("affinityGroupType", [{"type": t} for t in TYPES], len(TYPES))


def _views(conn: Connection, rows: list[Any]) -> list[dict[str, Any]]:
    members: dict[int, list[str]] = {r.id: [] for r in rows}
    if rows:
        for group_id, vm_uuid in conn.execute(
            sa.select(affinity_group_vms.c.group_id, vms.c.uuid)
            .join(vms, vms.c.id == affinity_group_vms.c.vm_id)
            .where(affinity_group_vms.c.group_id.in_(members), vms.c.removed.is_(None))
        ):
            members[group_id].append(vm_uuid)
    return [
        {
            "id": r.uuid,
            "name": r.name,
            "type": r.type,
            "description": r.description,
            "account": r.account_name,
            "domainid": r.domain_uuid,
            "domain": r.domain_name,
            "virtualmachineIds": members[r.id],
        }
        for r in rows
    ]


def _query() -> sa.Select[Any]:
    return (
        sa.select(
            affinity_groups,
            accounts.c.name.label("account_name"),
            domains.c.uuid.label("domain_uuid"),
            domains.c.name.label("domain_name"),
        )
        .join(accounts, accounts.c.id == affinity_groups.c.account_id)
        .join(domains, domains.c.id == accounts.c.domain_id)
    )


def _list(conn: Connection, caller: Any, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = [
        affinity_groups.c.removed.is_(None),
        *owner_filter(conn, caller, args, affinity_groups.c.account_id),
        *keyword(affinity_groups.c.name, args),
    ]
    where += matching(
        args, {"id": affinity_groups.c.uuid, "name": affinity_groups.c.name, "type": affinity_groups.c.type}
    )
    if "virtualmachineid" in args:
        where.append(
            affinity_groups.c.id.in_(
                sa.select(affinity_group_vms.c.group_id)
                .join(vms, vms.c.id == affinity_group_vms.c.vm_id)
                .where(vms.c.uuid == args["virtualmachineid"])
            )
        )
    rows, total = fetch(conn, _query().where(*where), affinity_groups.c.id, args)
    return _views(conn, rows), total


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
    items, total = await ctx.read(_list, ctx.caller, args)
    return listing("affinitygroup", items, total)


def _create(conn: Connection, caller: Any, args: dict[str, Any]) -> dict[str, Any]:
    try:
        with conn.begin_nested():
            group_id = inserted_id(conn.execute(
                affinity_groups.insert().values(
                    uuid=new_uuid(),
                    name=args["name"],
                    type=args["type"],
                    description=args.get("description", ""),
                    account_id=caller.account_id,
                    created=now(),
                )
            ))
    except IntegrityError:
        raise InvalidParameter(f"an affinity group named {args['name']!r} exists already") from None
    return _views(conn, [conn.execute(_query().where(affinity_groups.c.id == group_id)).one()])[0]


@command(
    "createAffinityGroup",
    "Creates an affinity group for the caller's VMs.",
    Param("name", required=True, description="the group's name"),
    Param("type", required=True, description="host anti-affinity or host affinity"),
    Param("description", description="what it is for"),
    is_async=True,
    event="AG.CREATE",
    response="affinitygroup",
)
async def create_affinity_group(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args["type"] not in TYPES:
        raise InvalidParameter(f"type must be one of: {', '.join(TYPES)}")
    group = await ctx.run(_create, ctx.caller, args)

    async def work() -> dict[str, Any]:
        return {"affinitygroup": group}

    job = await ctx.submit(
        work,
        description=f"created affinity group {group['name']}",
        instance_type="AffinityGroup",
        instance_uuid=group["id"],
    )
    return {"id": group["id"], "jobid": job}


def _delete(conn: Connection, caller: Any, args: dict[str, Any]) -> Any:
    row: sa.Row[Any] | None
    if "id" in args:
        row = find(conn, caller, affinity_groups, args["id"], "affinity group", owned=True)
    elif "name" in args:
        row = conn.execute(
            sa.select(affinity_groups).where(
                affinity_groups.c.name == args["name"],
                affinity_groups.c.account_id == caller.account_id,
                affinity_groups.c.removed.is_(None),
            )
        ).first()
        if row is None:
            raise InvalidParameter(f"unable to find affinity group {args['name']!r}")
    else:
        raise InvalidParameter("give id or name")
    live = conn.scalar(
        sa.select(sa.func.count())
        .select_from(affinity_group_vms)
        .join(vms, vms.c.id == affinity_group_vms.c.vm_id)
        .where(affinity_group_vms.c.group_id == row.id, vms.c.removed.is_(None))
    )
    if live:
        raise ResourceInUse(f"affinity group {row.name} still has {live} VM(s)")
    conn.execute(affinity_groups.update().where(affinity_groups.c.id == row.id).values(removed=now()))
    return row


@command(
    "deleteAffinityGroup",
    "Deletes an affinity group that has no VMs.",
    Param("id", "uuid", description="the group's id"),
    Param("name", description="the group's name"),
    is_async=True,
    event="AG.DELETE",
)
async def delete_affinity_group(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    row = await ctx.run(_delete, ctx.caller, args)

    async def work() -> dict[str, Any]:
        return {"success": True}

    job = await ctx.submit(
        work,
        description=f"deleted affinity group {row.name}",
        instance_type="AffinityGroup",
        instance_uuid=row.uuid,
    )
    return {"jobid": job}
