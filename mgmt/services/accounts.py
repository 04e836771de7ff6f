"""Domains, accounts and users: the admin made on first start (its keys written for the operator), the
caller behind an API key or a login, and the lists, accounts and keys callers ask for."""

from __future__ import annotations

import json
import os
import secrets
import uuid
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import trio
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..db.database import DELTAS, inserted_id
from ..db.journal import journaled
from ..db.schema import accounts, domains, users
from ..errors import InvalidParameter, PermissionDenied
from . import domains as domain_rows
from .caller import DOMAIN_ADMIN, PROJECT, ROOT_ADMIN, USER, Caller
from .crud import Filters, Row
from .domains import DomainView
from .passwords import check_password, hash_password
from .queries import accounts_under, domain_in_reach, fetch, keyword, matching, new_uuid, now, owns
from .settings import password_policy

if TYPE_CHECKING:
    from ..db.database import Database

def ensure_admin(conn: Connection, credentials: Path, api_url: str) -> bool:
    """Create the ROOT domain and the admin account and user once, writing their API keys (and password)
    to ``credentials`` (mode 0600). False when the admin existed already."""
    if conn.scalar(sa.select(users.c.id).where(users.c.username == "admin")) is not None:
        return False
    now = datetime.now(UTC)
    domain_id = conn.scalar(sa.select(domains.c.id).where(domains.c.path == "/"))
    if domain_id is None:
        domain_id = inserted_id(conn.execute(
            domains.insert().values(uuid=str(uuid.uuid4()), name="ROOT", path="/", created=now)
        ))
    account_id = inserted_id(conn.execute(
        accounts.insert().values(
            uuid=str(uuid.uuid4()),
            name="admin",
            domain_id=domain_id,
            type=ROOT_ADMIN,
            state="enabled",
            created=now,
        )
    ))
    api_key, secret_key, password = (
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(12),
    )
    conn.execute(
        users.insert().values(
            uuid=str(uuid.uuid4()),
            account_id=account_id,
            username="admin",
            password=hash_password(password),
            api_key=api_key,
            secret_key=secret_key,
            state="enabled",
            created=now,
        )
    )
    tmp = credentials.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {
                "url": api_url,
                "apikey": api_key,
                "secretkey": secret_key,
                "username": "admin",
                "password": password,
            },
            f,
        )
    os.replace(tmp, credentials)
    return True


@journaled
@dataclass(frozen=True, slots=True)
class KeysChanged:
    """A user's API keys changed (a delta, as ``planner.deltas``): servers forget the callers they keep."""

    user_id: int


def _caller_query() -> sa.Select[Any]:
    return (
        sa.select(
            users.c.id,
            users.c.uuid,
            users.c.username,
            users.c.password,
            users.c.account_id,
            users.c.secret_key,
            accounts.c.type,
            accounts.c.name.label("account_name"),
            accounts.c.uuid.label("account_uuid"),
            domains.c.id.label("domain_id"),
            domains.c.uuid.label("domain_uuid"),
            domains.c.name.label("domain_name"),
            domains.c.path.label("domain_path"),
        )
        .join(accounts, accounts.c.id == users.c.account_id)
        .join(domains, domains.c.id == accounts.c.domain_id)
        .where(
            users.c.state == "enabled",
            users.c.removed.is_(None),
            accounts.c.state == "enabled",
            accounts.c.removed.is_(None),
        )
    )


def _caller(row: Any) -> Caller:
    return Caller(
        row.id,
        row.account_id,
        row.type,
        row.secret_key or "",
        row.username,
        row.uuid,
        row.account_name,
        row.account_uuid,
        row.domain_id,
        row.domain_uuid,
        row.domain_name,
        row.domain_path,
    )


def caller_by_key(conn: Connection, api_key: str) -> Caller | None:
    row = conn.execute(_caller_query().where(users.c.api_key == api_key)).first()
    if row is None or not row.secret_key:
        return None
    return _caller(row)


def login_candidate(conn: Connection, username: str, domain: str) -> tuple[Caller, str] | None:
    """The enabled user of that name in the domain named by its path (``/`` is ROOT) or id, with its
    password hash to check; None when there is none (the caller does not say which part was wrong)."""
    path = "/" + domain.strip("/") + ("/" if domain.strip("/") else "")
    row = conn.execute(
        _caller_query().where(
            users.c.username == username, sa.or_(domains.c.path == path, domains.c.uuid == domain)
        )
    ).first()
    return None if row is None else (_caller(row), row.password)


# --- domains, accounts and users as callers list and make them ----------------------------------------


@dataclass(frozen=True)
class Account:
    """An account's row (with its domain's uuid, name and path) and its live users' rows."""

    row: Row
    users: list[Row]


@dataclass(frozen=True)
class AccountSpec:
    username: str
    password: str
    email: str
    first_name: str
    last_name: str
    account_name: str = ""  # default: the username
    account_type: int = USER
    domain_uuid: str = ""  # default: the caller's domain
    account_uuid: str = ""  # the ids to give them (an identity provider's); default: new ones
    user_uuid: str = ""
    timezone: str | None = None


def _account_query() -> sa.Select[Any]:
    return sa.select(
        accounts,
        domains.c.uuid.label("domain_uuid"),
        domains.c.name.label("domain_name"),
        domains.c.path.label("domain_path"),
    ).join(domains, domains.c.id == accounts.c.domain_id)


def _reach(conn: Connection, caller: Caller, args: Filters, account_column: Any) -> list[Any]:
    """Which accounts a list of accounts or users covers: a user, its own; a domain admin, its subtree
    (narrowed to ``domainid``, and with ``isrecursive`` that domain's subtree); the root admin, all."""
    if not caller.manages_accounts:
        return [account_column == caller.account_id]
    if "domainid" in args:
        domain = domain_in_reach(conn, caller, args["domainid"])
        if args.get("isrecursive") or args.get("listall"):
            return [account_column.in_(accounts_under(domain.path))]
        return [account_column.in_(sa.select(accounts.c.id).where(accounts.c.domain_id == domain.id))]
    return [] if caller.is_admin else [account_column.in_(accounts_under(caller.domain_path))]


def _accounts(conn: Connection, caller: Caller, args: Filters) -> tuple[list[Account], int]:
    where = [accounts.c.removed.is_(None), *keyword(accounts.c.name, args),
             *_reach(conn, caller, args, accounts.c.id)]
    where.append(accounts.c.type != PROJECT)  # (a project's account: listProjects)
    if caller.is_domain_admin:
        where.append(accounts.c.type != ROOT_ADMIN)
    where += matching(
        args,
        {
            "id": accounts.c.uuid,
            "name": accounts.c.name,
            "accounttype": accounts.c.type,
            "state": accounts.c.state,
        },
    )
    rows, total = fetch(conn, _account_query().where(*where), accounts.c.id, args)
    members: dict[int, list[Row]] = {r.id: [] for r in rows}
    if rows:
        for u in conn.execute(
            _user_query().where(users.c.account_id.in_(members), users.c.removed.is_(None))
        ):
            members[u.account_id].append(u)
    return [Account(r, members[r.id]) for r in rows], total


def check_timezone(name: str | None) -> str | None:
    """A time zone a user gives: an IANA name this machine knows (Europe/Paris, UTC...)."""
    if name is None:
        return None
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidParameter(f"timezone {name[:64]!r} is not a time zone name (Europe/Paris...)") from None
    return name


def _create_account(conn: Connection, caller: Caller, spec: AccountSpec, password_hash: str) -> Account:
    domain_id = caller.domain_id
    if spec.domain_uuid:
        domain_id = domain_in_reach(conn, caller, spec.domain_uuid).id
    if spec.account_type == ROOT_ADMIN and not caller.is_admin:
        raise PermissionDenied("only the root admin makes root admin accounts")
    if spec.account_type == ROOT_ADMIN and domain_id != conn.scalar(
            sa.select(domains.c.id).where(domains.c.path == "/")):
        raise InvalidParameter("a root admin account belongs to the ROOT domain")
    name = spec.account_name or spec.username
    if conn.scalar(sa.select(users.c.id).where(users.c.username == spec.username)):
        raise InvalidParameter(f"a user named {spec.username!r} exists already")
    if conn.scalar(
        sa.select(accounts.c.id).where(
            accounts.c.name == name, accounts.c.domain_id == domain_id, accounts.c.removed.is_(None)
        )
    ):
        raise InvalidParameter(f"an account named {name!r} exists already in that domain")
    for table, ident in ((accounts, spec.account_uuid), (users, spec.user_uuid)):
        if ident and conn.scalar(sa.select(table.c.id).where(table.c.uuid == ident)):
            raise InvalidParameter(f"the id {ident} is taken")
    stamp = now()
    try:
        with conn.begin_nested():
            account_id = inserted_id(conn.execute(
                accounts.insert().values(
                    uuid=spec.account_uuid or new_uuid(),
                    name=name,
                    domain_id=domain_id,
                    type=spec.account_type,
                    state="enabled",
                    created=stamp,
                )
            ))
            conn.execute(
                users.insert().values(
                    uuid=spec.user_uuid or new_uuid(),
                    account_id=account_id,
                    username=spec.username,
                    password=password_hash,
                    email=spec.email,
                    first_name=spec.first_name,
                    last_name=spec.last_name,
                    state="enabled",
                    timezone=check_timezone(spec.timezone),
                    created=stamp,
                )
            )
    except IntegrityError:
        raise InvalidParameter(
            f"a user or account named {spec.username!r} was created concurrently"
        ) from None
    return _accounts(
        conn, caller, {"id": conn.scalar(sa.select(accounts.c.uuid).where(accounts.c.id == account_id))}
    )[0][0]


def _user_query() -> sa.Select[Any]:
    return (
        sa.select(
            users,
            accounts.c.name.label("account_name"),
            accounts.c.uuid.label("account_uuid"),
            accounts.c.type.label("account_type"),
            domains.c.uuid.label("domain_uuid"),
            domains.c.name.label("domain_name"),
        )
        .join(accounts, accounts.c.id == users.c.account_id)
        .join(domains, domains.c.id == accounts.c.domain_id)
    )


def _users(conn: Connection, caller: Caller, args: Filters) -> tuple[list[Row], int]:
    where = [users.c.removed.is_(None), *keyword(users.c.username, args),
             *_reach(conn, caller, args, users.c.account_id)]
    if caller.is_domain_admin:
        where.append(accounts.c.type != ROOT_ADMIN)
    where += matching(
        args,
        {
            "id": users.c.uuid,
            "username": users.c.username,
            "account": accounts.c.name,
            "accounttype": accounts.c.type,
            "state": users.c.state,
        },
    )
    return fetch(conn, _user_query().where(*where), users.c.id, args)


def _user_for(conn: Connection, caller: Caller, ident: str) -> Row:
    row = conn.execute(sa.select(users, accounts.c.type.label("account_type"))
                       .join(accounts, accounts.c.id == users.c.account_id)
                       .where(users.c.uuid == ident, users.c.removed.is_(None))).first()
    mine = row is not None and row.id == caller.user_id
    managed = caller.is_domain_admin and row is not None and row.account_type != ROOT_ADMIN \
        and owns(conn, caller, row.account_id)
    if row is None or not (mine or caller.is_admin or managed):
        if caller.is_admin:
            raise InvalidParameter(f"unable to find user with id {ident}")
        raise PermissionDenied(f"unable to find or access user {ident}")
    return row


def _new_keys(conn: Connection, caller: Caller, ident: str) -> dict[str, str]:
    row = _user_for(conn, caller, ident)
    api_key, secret_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    conn.execute(users.update().where(users.c.id == row.id).values(api_key=api_key, secret_key=secret_key))
    pending = conn.info.get(DELTAS)
    if pending is not None:  # every server's cache of API keys forgets the old ones
        pending.append(KeysChanged(row.id))
    return {"apikey": api_key, "secretkey": secret_key}


def _keys(conn: Connection, caller: Caller, ident: str) -> dict[str, str]:
    row = _user_for(conn, caller, ident)
    return {"apikey": row.api_key or "", "secretkey": row.secret_key or ""}


class Accounts:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def caller_by_key(self, api_key: str) -> Caller | None:
        return await self.db.read(caller_by_key, api_key)

    async def login_candidate(self, username: str, domain: str) -> tuple[Caller, str] | None:
        return await self.db.read(login_candidate, username, domain)

    async def domains(self, caller: Caller, args: Filters) -> tuple[list[DomainView], int]:
        return await self.db.read(domain_rows.listing, caller, args)

    async def accounts(self, caller: Caller, args: Filters) -> tuple[list[Account], int]:
        return await self.db.read(_accounts, caller, args)

    async def users(self, caller: Caller, args: Filters) -> tuple[list[Row], int]:
        return await self.db.read(_users, caller, args)

    async def create_account(self, caller: Caller, spec: AccountSpec) -> Account:
        """An account and its first user (the password hashed off the event loop)."""
        if spec.account_type not in (USER, ROOT_ADMIN, DOMAIN_ADMIN):
            raise InvalidParameter("accounttype must be 0 (user), 1 (root admin) or 2 (domain admin)")
        policy = await self.db.read(password_policy, domain_uuid=spec.domain_uuid or caller.domain_uuid)
        check_password(policy, spec.password, spec.username)
        password_hash = await trio.to_thread.run_sync(hash_password, spec.password)
        return await self.db.run(_create_account, caller, spec, password_hash)

    async def new_keys(self, caller: Caller, user_uuid: str) -> dict[str, str]:
        """New API keys for the user (the caller, or anyone for admins); the old ones stop working."""
        return await self.db.run(_new_keys, caller, user_uuid)

    async def keys(self, caller: Caller, user_uuid: str) -> dict[str, str]:
        return await self.db.read(_keys, caller, user_uuid)
