"""Queries the services share: paging, finding a resource the caller may see, the account filter of
lists, equality and keyword filters, new ids and timestamps."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.schema import accounts, configuration, domains, project_accounts, projects
from ..errors import InvalidParameter, PermissionDenied
from .caller import PROJECT, Caller

MAX_PAGE = 500


def page(args: Mapping[str, Any]) -> tuple[int, int | None]:
    """(offset, limit) from page and pagesize, which come together (pagesize -1: everything)."""
    if ("page" in args) != ("pagesize" in args):
        raise InvalidParameter("page and pagesize must be given together")
    if "page" not in args:
        return 0, MAX_PAGE
    number, size = args["page"], args["pagesize"]
    if number < 1 or size == 0 or size < -1 or size > MAX_PAGE:
        raise InvalidParameter(f"page must be at least 1 and pagesize -1 or 1 to {MAX_PAGE}")
    return (0, None) if size == -1 else ((number - 1) * size, size)


def fetch(
    conn: Connection, query: sa.Select[Any], order: Any, args: Mapping[str, Any]
) -> tuple[list[sa.Row[Any]], int]:
    """One page of ``query``'s rows (by ``order``: a column or a tuple of them) and the total count
    over every page."""
    offset, limit = page(args)
    total = conn.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())) or 0
    order = order if isinstance(order, tuple) else (order,)
    rows = list(conn.execute(query.order_by(*order).offset(offset).limit(limit))) if total else []
    return rows, total


def uuids(args: Mapping[str, Any], name: str) -> list[str]:
    """A list parameter whose items must be UUIDs (normalized)."""
    out = []
    for item in args.get(name, []):
        try:
            out.append(str(uuid.UUID(item)))
        except ValueError:
            raise InvalidParameter(f"parameter {name}: {item[:64]!r} is not a UUID") from None
    return out


def find(
    conn: Connection,
    caller: Caller,
    table: sa.Table,
    ident: str,
    kind: str,
    *,
    owned: bool = False,
    removed_ok: bool = False,
) -> sa.Row[Any]:
    """The row with uuid ``ident``. For owned resources (VMs, volumes...) another account's is, to a
    user, exactly like a missing one: 531 with the same text, so ids do not leak."""
    where = [table.c.uuid == ident]
    if "removed" in table.c and not removed_ok:
        where.append(table.c.removed.is_(None))
    row = conn.execute(sa.select(table).where(*where)).first()
    if owned and not caller.is_admin:
        if row is None or not owns(conn, caller, row.account_id):
            raise PermissionDenied(f"unable to find or access {kind} {ident}")
    elif row is None:
        raise InvalidParameter(f"unable to find {kind} with id {ident}")
    return row


def subtree(path: str) -> sa.Select[Any]:
    """The ids of the domains at and below ``path``."""
    return sa.select(domains.c.id).where(domains.c.path.startswith(path, autoescape=True))


def accounts_under(path: str) -> sa.Select[Any]:
    """The ids of the accounts in the domains at and below ``path``."""
    return sa.select(accounts.c.id).where(accounts.c.domain_id.in_(subtree(path)))


def owns(conn: Connection, caller: Caller, account_id: int) -> bool:
    """Whether the caller may act on what ``account_id`` owns: its own; a domain admin, anything of an
    account in its subtree; the root admin, everything."""
    if caller.is_admin or account_id == caller.account_id:
        return True
    if conn.scalar(sa.select(projects.c.id).where(projects.c.account_id == account_id,
                                                  projects.c.id.in_(member_of(caller)))) is not None:
        return True  # a project's resource, and the caller is one of its members
    if not caller.is_domain_admin:
        return False
    path = conn.scalar(sa.select(domains.c.path).join(accounts, accounts.c.domain_id == domains.c.id)
                       .where(accounts.c.id == account_id))
    return path is not None and caller.sees_domain(path)


def domain_in_reach(conn: Connection, caller: Caller, domain_uuid: str) -> sa.Row[Any]:
    """The live domain of that uuid when the caller may see it; 531 with the text a missing one gets."""
    row = conn.execute(sa.select(domains).where(domains.c.uuid == domain_uuid,
                                                domains.c.removed.is_(None))).first()
    if row is None or not caller.sees_domain(row.path):
        if caller.is_admin:
            raise InvalidParameter(f"unable to find domain with id {domain_uuid}")
        raise PermissionDenied(f"unable to find or access domain {domain_uuid}")
    return row


def owner_filter(conn: Connection, caller: Caller, args: Mapping[str, Any], column: Any) -> list[Any]:
    """Which accounts' items a list shows, as CloudStack decides it. A user: their own account's. An
    admin (root, or a domain's): their own, unless ``account`` (with ``domainid``, default the
    caller's domain) names one, ``domainid`` names a domain (with ``isrecursive``, and its subdomains),
    or ``listall`` (or ``id``/``ids``) asks for everything they may see: the root admin, the cloud; a
    domain admin, the accounts of its subtree. A project's items are listed only when ``projectid``
    names it (-1: every project the caller is a member of; an admin, every project in its reach), or,
    to an admin, by ``id``."""
    if "projectid" in args:
        if args["projectid"] == "-1":
            return [column.in_(project_accounts_of(caller))]
        return [column == project_in_reach(conn, caller, args["projectid"]).account_id]
    if not caller.manages_accounts:
        return [column == caller.account_id]
    domain = domain_in_reach(conn, caller, args["domainid"]) if "domainid" in args else None
    if "account" in args:
        query = sa.select(accounts.c.id).where(
            accounts.c.name == args["account"], accounts.c.removed.is_(None),
            accounts.c.domain_id == (domain.id if domain is not None else caller.domain_id))
        found = list(conn.scalars(query))
        if not found:
            raise InvalidParameter(f"unable to find account {args['account']!r}")
        return [column.in_(found)]
    if domain is not None:
        if args.get("isrecursive") or args.get("listall"):
            return [column.in_(accounts_under(domain.path).where(accounts.c.type != PROJECT))]
        return [column.in_(sa.select(accounts.c.id).where(accounts.c.domain_id == domain.id,
                                                          accounts.c.type != PROJECT))]
    if "id" in args or "ids" in args:
        return [] if caller.is_admin else [column.in_(accounts_under(caller.domain_path))]
    if args.get("listall"):
        if caller.is_admin:
            return [column.not_in(sa.select(accounts.c.id).where(accounts.c.type == PROJECT))]
        return [column.in_(accounts_under(caller.domain_path).where(accounts.c.type != PROJECT))]
    return [column == caller.account_id]


def acting_for(conn: Connection, caller: Caller, account_name: str = "", domain_uuid: str = "",
               project_uuid: str = "") -> int:
    """The account a call acts for: the caller's, or (admins only) the one named by ``account`` and
    ``domainid`` (default: the caller's domain), in the caller's reach, or the account of the project
    ``project_uuid``, of which the caller is a member (or an admin above it); the project is active."""
    if project_uuid:
        if account_name:
            raise InvalidParameter("give account or projectid, not both")
        project = project_in_reach(conn, caller, project_uuid)
        if project.state != "Active":
            raise InvalidParameter(f"project {project.name!r} is {project.state.lower()}: activate it first")
        return int(project.account_id)
    if not account_name:
        return int(caller.account_id)
    if not caller.manages_accounts:
        raise PermissionDenied("only admins may act for another account")
    domain_id = domain_in_reach(conn, caller, domain_uuid).id if domain_uuid else caller.domain_id
    found = conn.scalar(sa.select(accounts.c.id).where(accounts.c.name == account_name,
                                                       accounts.c.removed.is_(None),
                                                       accounts.c.domain_id == domain_id))
    if found is None:
        raise InvalidParameter(f"unable to find account {account_name!r}")
    return int(found)


def member_of(caller: Caller) -> sa.Select[Any]:
    """The ids of the projects the caller is a member of: its account's, or itself as a single user."""
    return sa.select(project_accounts.c.project_id).where(
        project_accounts.c.account_id == caller.account_id,
        sa.or_(project_accounts.c.user_id.is_(None), project_accounts.c.user_id == caller.user_id))


def projects_in_reach(caller: Caller) -> list[Any]:
    """Filters on ``projects``: the live projects the caller may see and use: a member's; a domain
    admin's, its subtree's; the root admin's, all."""
    where: list[Any] = [projects.c.removed.is_(None)]
    if caller.is_domain_admin:
        where.append(sa.or_(projects.c.id.in_(member_of(caller)),
                            projects.c.domain_id.in_(subtree(caller.domain_path))))
    elif not caller.is_admin:
        where.append(projects.c.id.in_(member_of(caller)))
    return where


def project_accounts_of(caller: Caller) -> sa.Select[Any]:
    """The accounts of the projects in the caller's reach (``projectid=-1``)."""
    return sa.select(projects.c.account_id).where(*projects_in_reach(caller))


def project_in_reach(conn: Connection, caller: Caller, project_uuid: str) -> sa.Row[Any]:
    """The live project of that uuid when the caller may see it; 531 with the text a missing one gets."""
    try:
        project_uuid = str(uuid.UUID(project_uuid))
    except ValueError:
        raise InvalidParameter(f"parameter projectid: {project_uuid[:64]!r} is not a UUID") from None
    row = conn.execute(sa.select(projects).where(projects.c.uuid == project_uuid,
                                                 *projects_in_reach(caller))).first()
    if row is None:
        if caller.is_admin:
            raise InvalidParameter(f"unable to find project with id {project_uuid}")
        raise PermissionDenied(f"unable to find or access project {project_uuid}")
    return row


def sort_order(conn: Connection, table: sa.Table) -> tuple[Any, ...]:
    """How a list of ``table`` is ordered: by its sort key when it has one (``sortkey.algorithm``: true
    ascending, false descending, as CloudStack), then in the order the rows were made."""
    if "sort_key" not in table.c:
        return (table.c.id,)
    value = conn.scalar(sa.select(sa.func.coalesce(configuration.c.value, configuration.c.default_value))
                        .where(configuration.c.name == "sortkey.algorithm"))
    ascending = str(value).strip().lower() == "true"
    return (table.c.sort_key.asc() if ascending else table.c.sort_key.desc(), table.c.id)


def keyword(column: Any, args: Mapping[str, Any]) -> list[Any]:
    return [column.contains(args["keyword"], autoescape=True)] if "keyword" in args else []


def now() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


def matching(args: Mapping[str, Any], columns: dict[str, Any]) -> list[Any]:
    """Equality filters for the parameters given: ``{parameter name: column}`` (a list value: any of
    them)."""
    return [column.in_(args[key]) if isinstance(args[key], list) else column == args[key]
            for key, column in columns.items() if key in args]
