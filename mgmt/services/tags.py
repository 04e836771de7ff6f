"""Resource tags, as CloudStack has them: key/value pairs an account puts on its VMs, volumes, templates,
networks and security groups (an admin on zones too), which their lists show and filter by
(``tags[0].key=env&tags[0].value=prod``: those carrying every pair given). A key is unique per resource;
tags go when their resource is deleted or expunged (lists only show live resources anyway)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.schema import (
    accounts,
    domains,
    networks,
    projects,
    resource_tags,
    security_groups,
    templates,
    vms,
    volumes,
    zones,
)
from ..errors import InvalidParameter, PermissionDenied
from .caller import Caller
from .crud import Filters, Row
from .queries import fetch, find, keyword, matching, new_uuid, now, owner_filter, owns

if TYPE_CHECKING:
    from ..db.database import Database

# CloudStack's resource type names -> (table, what errors call it)
TYPES: dict[str, tuple[sa.Table, str]] = {
    "UserVm": (vms, "virtual machine"),
    "Volume": (volumes, "volume"),
    "Template": (templates, "template"),
    "Network": (networks, "network"),
    "SecurityGroup": (security_groups, "security group"),
    "Zone": (zones, "zone"),
    "Project": (projects, "project"),
}
_BY_LOWER = {name.lower(): name for name in TYPES}
MAX_TAGS = 64  # tags a resource may carry


def resource_type(name: str) -> str:
    found = _BY_LOWER.get(name.lower())
    if found is None:
        raise InvalidParameter(f"resourcetype must be one of {', '.join(TYPES)} (tags on others are not "
                               "supported yet)")
    return found


def pairs(entries: list[dict[str, str]], *, values: bool = True) -> list[tuple[str, str | None]]:
    """A ``tags`` map parameter as (key, value) pairs (value None: any, when ``values`` is false)."""
    out: list[tuple[str, str | None]] = []
    for entry in entries:
        key = entry.get("key", "")
        if not 1 <= len(key) <= 255 or (values and "value" not in entry) or len(entry.get("value", "")) > 255:
            raise InvalidParameter("each tag needs a key (1 to 255 characters)"
                                   + (" and a value (at most 255)" if values else ""))
        out.append((key, entry.get("value")))
    return out


def tagged(args: Filters, rtype: str, uuid_column: Any) -> list[Any]:
    """List conditions for a ``tags`` filter: the resources carrying every pair given."""
    where = []
    for key, value in pairs(args.get("tags", []), values=False):
        query = sa.select(resource_tags.c.resource_uuid).where(resource_tags.c.resource_type == rtype,
                                                               resource_tags.c.key == key)
        if value is not None:
            query = query.where(resource_tags.c.value == value)
        where.append(uuid_column.in_(query))
    return where


def _resources(conn: Connection, caller: Caller, rtype: str, idents: list[str]) -> list[tuple[str, int]]:
    """The resources a tag command names, each with the account its tags belong to; the caller must own
    each (zones, shared networks and public templates without an owner: admins only)."""
    table, what = TYPES[rtype]
    out = []
    for ident in dict.fromkeys(idents):
        row = find(conn, caller, table, ident, what)
        owner = row.account_id if "account_id" in table.c else None
        if owner is None:
            if not caller.is_admin:
                raise PermissionDenied(f"only admins may tag {what} {ident}")
            owner = caller.account_id
        elif not caller.is_admin and not owns(conn, caller, owner):
            raise PermissionDenied(f"unable to find or access {what} {ident}")
        out.append((row.uuid, int(owner)))
    return out


def _create(conn: Connection, caller: Caller, rtype: str, idents: list[str],
            tags: list[tuple[str, str | None]], customer: str) -> int:
    made = 0
    for resource_uuid, owner in _resources(conn, caller, rtype, idents):
        existing = set(conn.scalars(sa.select(resource_tags.c.key).where(
            resource_tags.c.resource_type == rtype, resource_tags.c.resource_uuid == resource_uuid)))
        clash = existing & {k for k, _ in tags}
        if clash:
            raise InvalidParameter(f"{rtype} {resource_uuid} has a tag {sorted(clash)[0]!r} already")
        if len(existing) + len(tags) > MAX_TAGS:
            raise InvalidParameter(f"a resource carries at most {MAX_TAGS} tags")
        for key, value in tags:
            conn.execute(resource_tags.insert().values(
                uuid=new_uuid(), key=key, value=value or "", resource_type=rtype, resource_uuid=resource_uuid,
                account_id=owner, customer=customer or None, created=now()))
            made += 1
    return made


def _delete(conn: Connection, caller: Caller, rtype: str, idents: list[str],
            tags: list[tuple[str, str | None]]) -> int:
    gone = 0
    for resource_uuid, _owner in _resources(conn, caller, rtype, idents):
        where = [resource_tags.c.resource_type == rtype, resource_tags.c.resource_uuid == resource_uuid]
        if tags:  # those pairs (a pair without value: that key, whatever its value); none: every tag
            where.append(sa.or_(*[sa.and_(resource_tags.c.key == k,
                                          *([resource_tags.c.value == v] if v is not None else []))
                                  for k, v in tags]))
        gone += conn.execute(resource_tags.delete().where(*where)).rowcount
    return gone


def _query() -> sa.Select[Any]:
    return (sa.select(resource_tags, accounts.c.name.label("account_name"),
                      domains.c.uuid.label("domain_uuid"), domains.c.name.label("domain_name"))
            .join(accounts, accounts.c.id == resource_tags.c.account_id)
            .join(domains, domains.c.id == accounts.c.domain_id))


def _live() -> Any:
    """Tags whose resource still exists (a deleted resource's tags are not shown)."""
    return sa.or_(*[
        sa.and_(resource_tags.c.resource_type == name, resource_tags.c.resource_uuid.in_(
            sa.select(table.c.uuid).where(*([table.c.removed.is_(None)] if "removed" in table.c else []))))
        for name, (table, _) in TYPES.items()])


def _list(conn: Connection, caller: Caller, args: Filters) -> tuple[list[Row], int]:
    where = [*owner_filter(conn, caller, args, resource_tags.c.account_id),
             *keyword(resource_tags.c.key, args), _live()]
    if "resourcetype" in args:
        where.append(resource_tags.c.resource_type == resource_type(args["resourcetype"]))
    where += matching(args, {"key": resource_tags.c.key, "value": resource_tags.c.value,
                             "resourceid": resource_tags.c.resource_uuid,
                             "customer": resource_tags.c.customer})
    return fetch(conn, _query().where(*where), resource_tags.c.id, args)


def _copy(conn: Connection, from_type: str, from_uuid: str, to_type: str, to_uuid: str) -> int:
    table, _what = TYPES[to_type]
    owner = conn.scalar(sa.select(table.c.account_id).where(table.c.uuid == to_uuid))
    rows = conn.execute(sa.select(resource_tags).where(resource_tags.c.resource_type == from_type,
                                                       resource_tags.c.resource_uuid == from_uuid)).all()
    for r in rows:
        conn.execute(resource_tags.insert().values(
            uuid=new_uuid(), key=r.key, value=r.value, resource_type=to_type, resource_uuid=to_uuid,
            account_id=owner, customer=r.customer, created=now()))
    return len(rows)


def _of(conn: Connection, rtype: str, uuids: list[str]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    if uuids:
        for row in conn.execute(_query().where(resource_tags.c.resource_type == rtype,
                                               resource_tags.c.resource_uuid.in_(uuids))
                                .order_by(resource_tags.c.id)):
            out.setdefault(row.resource_uuid, []).append(row)
    return out


class Tags:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, caller: Caller, rtype: str, idents: list[str], tags: Mapping[str, str] | list[Any],
                     customer: str = "") -> int:
        """Tag the resources (each with every pair); how many tags were made. All or none."""
        given: list[tuple[str, str | None]] = pairs(list(tags)) if not isinstance(tags, Mapping) else [
            (k, v) for k, v in tags.items()]
        if not given:
            raise InvalidParameter("give at least one tag: tags[0].key=...&tags[0].value=...")
        return await self.db.run(_create, caller, resource_type(rtype), idents, given, customer)

    async def delete(self, caller: Caller, rtype: str, idents: list[str], tags: list[Any]) -> int:
        """Remove those tags (or every tag) from the resources; how many went."""
        return await self.db.run(_delete, caller, resource_type(rtype), idents, pairs(tags, values=False))

    async def matching(self, caller: Caller, args: Filters) -> tuple[list[Row], int]:
        return await self.db.read(_list, caller, args)

    async def copy(self, from_type: str, from_uuid: str, to_type: str, to_uuid: str) -> int:
        """Give a resource the tags of another (a VM its template's: copyimagetags); how many."""
        return await self.db.run(_copy, from_type, from_uuid, to_type, to_uuid)

    async def of(self, rtype: str, uuids: list[str]) -> dict[str, list[Row]]:
        """The tags of these resources, by resource uuid."""
        return await self.db.read(_of, rtype, uuids)
