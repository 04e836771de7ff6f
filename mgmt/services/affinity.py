"""Affinity groups (the planner honours them: host anti-affinity keeps members on different hosts, host
affinity on one): which a caller has, creating one, deleting one no VM is in any more."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..db.database import inserted_id
from ..db.schema import accounts, affinity_group_vms, affinity_groups, domains, vms
from ..errors import InvalidParameter, ResourceInUse
from .caller import Caller
from .crud import Filters, Row
from .queries import acting_for, fetch, find, keyword, matching, new_uuid, now, owner_filter

if TYPE_CHECKING:
    from ..db.database import Database

TYPES = ("host anti-affinity", "host affinity")


@dataclass(frozen=True)
class AffinityGroup:
    """A group's row (with its owner's names) and the uuids of the live VMs in it."""

    row: Row
    members: list[str]


def _with_members(conn: Connection, rows: list[Row]) -> list[AffinityGroup]:
    members: dict[int, list[str]] = {r.id: [] for r in rows}
    if rows:
        for group_id, vm_uuid in conn.execute(
            sa.select(affinity_group_vms.c.group_id, vms.c.uuid)
            .join(vms, vms.c.id == affinity_group_vms.c.vm_id)
            .where(affinity_group_vms.c.group_id.in_(members), vms.c.removed.is_(None))
        ):
            members[group_id].append(vm_uuid)
    return [AffinityGroup(r, members[r.id]) for r in rows]


def _query() -> sa.Select[Any]:
    return (
        sa.select(affinity_groups, accounts.c.name.label("account_name"),
                  domains.c.uuid.label("domain_uuid"), domains.c.name.label("domain_name"))
        .join(accounts, accounts.c.id == affinity_groups.c.account_id)
        .join(domains, domains.c.id == accounts.c.domain_id)
    )


def _list(conn: Connection, caller: Caller, args: Filters) -> tuple[list[AffinityGroup], int]:
    where = [
        affinity_groups.c.removed.is_(None),
        *owner_filter(conn, caller, args, affinity_groups.c.account_id),
        *keyword(affinity_groups.c.name, args),
    ]
    where += matching(
        args, {"id": affinity_groups.c.uuid, "name": affinity_groups.c.name, "type": affinity_groups.c.type}
    )
    if "virtualmachineid" in args:
        where.append(affinity_groups.c.id.in_(
            sa.select(affinity_group_vms.c.group_id)
            .join(vms, vms.c.id == affinity_group_vms.c.vm_id)
            .where(vms.c.uuid == args["virtualmachineid"])
        ))
    rows, total = fetch(conn, _query().where(*where), affinity_groups.c.id, args)
    return _with_members(conn, rows), total


def _create(conn: Connection, caller: Caller, name: str, type_: str, description: str, account_name: str = "",
            domain_uuid: str = "", project_uuid: str = "") -> AffinityGroup:
    owner = acting_for(conn, caller, account_name, domain_uuid, project_uuid)
    try:
        with conn.begin_nested():
            group_id = inserted_id(conn.execute(affinity_groups.insert().values(
                uuid=new_uuid(), name=name, type=type_, description=description,
                account_id=owner, created=now(),
            )))
    except IntegrityError:
        raise InvalidParameter(f"an affinity group named {name!r} exists already") from None
    return _with_members(conn, [conn.execute(_query().where(affinity_groups.c.id == group_id)).one()])[0]


def _delete(conn: Connection, caller: Caller, ident: str, name: str, account_name: str = "",
            domain_uuid: str = "", project_uuid: str = "") -> Row:
    row: Row | None
    if ident:
        row = find(conn, caller, affinity_groups, ident, "affinity group", owned=True)
    elif name:
        row = conn.execute(
            sa.select(affinity_groups).where(
                affinity_groups.c.name == name,
                affinity_groups.c.account_id == acting_for(conn, caller, account_name, domain_uuid,
                                                           project_uuid),
                affinity_groups.c.removed.is_(None),
            )
        ).first()
        if row is None:
            raise InvalidParameter(f"unable to find affinity group {name!r}")
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


class AffinityGroups:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def matching(self, caller: Caller, args: Filters) -> tuple[list[AffinityGroup], int]:
        return await self.db.read(_list, caller, args)

    async def create(self, caller: Caller, name: str, type_: str, description: str = "", *,
                     account_name: str = "", domain_uuid: str = "", project_uuid: str = "") -> AffinityGroup:
        """A new group of the caller's account, or (admins) of ``account_name`` in ``domain_uuid`` (names
        are unique per account)."""
        if type_ not in TYPES:
            raise InvalidParameter(f"type must be one of: {', '.join(TYPES)}")
        return await self.db.run(_create, caller, name, type_, description, account_name, domain_uuid,
                                 project_uuid)

    async def delete(self, caller: Caller, *, ident: str = "", name: str = "", account_name: str = "",
                     domain_uuid: str = "", project_uuid: str = "") -> Row:
        """Delete a group named by id (or by name, in the caller's account or the one named) when no live
        VM is in it; its row."""
        return await self.db.run(_delete, caller, ident, name, account_name, domain_uuid, project_uuid)
