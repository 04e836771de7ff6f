"""Domains: the tree tenants live in (``ROOT/sales/eu``), as CloudStack keeps it.

A domain's ``path`` is its place in the tree (``/`` for ROOT, ``/sales/eu/`` below it); a domain admin
reaches its domain and every domain whose path starts with its own. Renaming a domain renames the
paths below it; a domain is deleted only when nothing lives in it, unless ``cleanup`` (an async job)
deletes its accounts (and their resources) and its subdomains first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..db.database import inserted_id
from ..db.schema import accounts, domains
from ..errors import InvalidParameter, PermissionDenied
from .caller import Caller
from .crud import Filters, Row
from .queries import domain_in_reach, fetch, keyword, new_uuid, now, subtree

MAX_NAME = 255


@dataclass(frozen=True)
class DomainView:
    row: Row
    parent_uuid: str | None
    parent_name: str | None
    has_child: bool


def cs_path(path: str) -> str:
    """"/sales/eu/" -> "ROOT/sales/eu"."""
    return "ROOT" + path.rstrip("/") if path != "/" else "ROOT"


def level(path: str) -> int:
    return path.count("/") - 1


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or "/" in name or any(ord(c) < 32 for c in name):
        raise InvalidParameter("a domain's name is 1 to 255 printable characters without '/'")
    return name


def _views(conn: Connection, rows: list[Row]) -> list[DomainView]:
    parents = {r.id: (r.uuid, r.name) for r in conn.execute(
        sa.select(domains.c.id, domains.c.uuid, domains.c.name)
        .where(domains.c.id.in_({r.parent_id for r in rows if r.parent_id is not None})))}
    with_children = set(conn.scalars(sa.select(domains.c.parent_id).where(
        domains.c.parent_id.in_([r.id for r in rows]), domains.c.removed.is_(None))))
    return [DomainView(r, *parents.get(r.parent_id, (None, None)), r.id in with_children) for r in rows]


def create(conn: Connection, caller: Caller, name: str, parent_uuid: str = "",
           domain_uuid: str = "") -> DomainView:
    name = _check_name(name)
    if domain_uuid and conn.scalar(sa.select(domains.c.id).where(domains.c.uuid == domain_uuid)):
        raise InvalidParameter(f"the id {domain_uuid} is taken")
    parent = domain_in_reach(conn, caller, parent_uuid) if parent_uuid else conn.execute(
        sa.select(domains).where(domains.c.id == caller.domain_id)).one()
    path = f"{parent.path}{name}/"
    if conn.scalar(sa.select(domains.c.id).where(domains.c.path == path, domains.c.removed.is_(None))):
        raise InvalidParameter(f"domain {cs_path(path)} exists already")
    try:
        with conn.begin_nested():
            domain_id = inserted_id(conn.execute(domains.insert().values(
                uuid=domain_uuid or new_uuid(), name=name, path=path, parent_id=parent.id, created=now())))
    except IntegrityError:  # a removed domain of that path (paths stay unique), or a concurrent create
        raise InvalidParameter(f"domain {cs_path(path)} exists, or existed, already") from None
    return _views(conn, [conn.execute(sa.select(domains).where(domains.c.id == domain_id)).one()])[0]


def update(conn: Connection, caller: Caller, ident: str, name: str) -> DomainView:
    """Rename a domain (not ROOT, nor the caller's own): the paths below it follow."""
    row = domain_in_reach(conn, caller, ident)
    if row.path == "/" or row.id == caller.domain_id:
        raise PermissionDenied("ROOT, and the caller's own domain, cannot be renamed by this caller")
    name = _check_name(name)
    parent_path = row.path[: -len(row.name) - 1]
    new_path = f"{parent_path}{name}/"
    if new_path != row.path:
        if conn.scalar(sa.select(domains.c.id).where(domains.c.path == new_path)):
            raise InvalidParameter(f"domain {cs_path(new_path)} exists, or existed, already")
        below = conn.execute(sa.select(domains.c.id, domains.c.path).where(
            domains.c.path.startswith(row.path, autoescape=True))).all()
        for d in sorted(below, key=lambda d: len(d.path)):
            conn.execute(domains.update().where(domains.c.id == d.id)
                         .values(path=new_path + d.path[len(row.path):]))
    conn.execute(domains.update().where(domains.c.id == row.id).values(name=name))
    return _views(conn, [conn.execute(sa.select(domains).where(domains.c.id == row.id)).one()])[0]


def deletable(conn: Connection, caller: Caller, ident: str, cleanup: bool) -> tuple[Row, list[int]]:
    """The domain to delete and the ids of the live accounts in its subtree (to delete first, with
    ``cleanup``); refuses ROOT, the caller's own domain, and, without ``cleanup``, a domain with
    accounts or subdomains."""
    row = domain_in_reach(conn, caller, ident)
    if row.path == "/" or row.id == caller.domain_id or caller.domain_path.startswith(row.path):
        raise PermissionDenied("ROOT, and the caller's own domain, cannot be deleted by this caller")
    account_ids = list(conn.scalars(sa.select(accounts.c.id).where(
        accounts.c.domain_id.in_(subtree(row.path)), accounts.c.removed.is_(None))))
    children = conn.scalar(sa.select(sa.func.count()).select_from(domains).where(
        domains.c.parent_id == row.id, domains.c.removed.is_(None))) or 0
    if not cleanup and (account_ids or children):
        raise InvalidParameter(f"domain {cs_path(row.path)} has {len(account_ids)} accounts and {children} "
                               f"subdomains; delete them first, or pass cleanup=true")
    return row, account_ids


def remove_tree(conn: Connection, domain_id: int) -> int:
    """Mark the domain and its subdomains removed (their accounts are gone already); how many."""
    path = conn.scalar(sa.select(domains.c.path).where(domains.c.id == domain_id))
    if path is None:
        return 0
    left = conn.scalar(sa.select(sa.func.count()).select_from(accounts).where(
        accounts.c.domain_id.in_(subtree(path)), accounts.c.removed.is_(None))) or 0
    if left:
        raise InvalidParameter(f"domain {cs_path(path)} still has {left} accounts")
    stamp = now()
    gone = list(conn.scalars(sa.select(domains.c.id).where(domains.c.path.startswith(path, autoescape=True),
                                                           domains.c.removed.is_(None))))
    for d in gone:  # (a removed domain's path is freed: a new domain may take its name again)
        conn.execute(domains.update().where(domains.c.id == d).values(removed=stamp, path=f"/.removed/{d}/"))
    return len(gone)


def listing(conn: Connection, caller: Caller, args: Filters) -> tuple[list[DomainView], int]:
    """listDomains: the caller's domain, or with ``listall`` every domain in its reach (a user: its own
    only); ``id``, ``name``, ``level`` and ``keyword`` narrow it."""
    where: list[Any] = [domains.c.removed.is_(None), *keyword(domains.c.name, args)]
    if caller.manages_accounts and (args.get("listall") or "id" in args or "name" in args or "level" in args):
        if not caller.is_admin:
            where.append(domains.c.path.startswith(caller.domain_path, autoescape=True))
    else:
        where.append(domains.c.id == caller.domain_id)
    if "id" in args:
        where.append(domains.c.uuid == args["id"])
    if "name" in args:
        where.append(domains.c.name == args["name"])
    if "level" in args:
        depth = int(args["level"])
        where.append(sa.func.length(domains.c.path) - sa.func.length(sa.func.replace(domains.c.path, "/", ""))
                     == depth + 1)
    rows, total = fetch(conn, sa.select(domains).where(*where), (domains.c.path,), args)
    return _views(conn, rows), total


def children(conn: Connection, caller: Caller, args: Filters) -> tuple[list[DomainView], int]:
    """listDomainChildren: the subdomains of ``id`` (default: the caller's domain), all the way down with
    ``isrecursive``."""
    if not caller.manages_accounts:
        raise PermissionDenied("only admins list subdomains")
    parent = domain_in_reach(conn, caller, args["id"]) if "id" in args else conn.execute(
        sa.select(domains).where(domains.c.id == caller.domain_id)).one()
    where: list[Any] = [domains.c.removed.is_(None), domains.c.id != parent.id,
                        *keyword(domains.c.name, args)]
    if args.get("isrecursive"):
        where.append(domains.c.path.startswith(parent.path, autoescape=True))
    else:
        where.append(domains.c.parent_id == parent.id)
    if "name" in args:
        where.append(domains.c.name == args["name"])
    rows, total = fetch(conn, sa.select(domains).where(*where), (domains.c.path,), args)
    return _views(conn, rows), total


def chain(conn: Connection, path: str) -> list[str]:
    """The uuids of the domain at ``path`` and of every domain above it."""
    parts = [x for x in path.split("/") if x]
    paths = ["/"] + ["/" + "/".join(parts[:i]) + "/" for i in range(1, len(parts) + 1)]
    return list(conn.scalars(sa.select(domains.c.uuid).where(domains.c.path.in_(paths))))
