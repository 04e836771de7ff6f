"""Domains, accounts and users: listDomains, listAccounts, createAccount, listUsers, registerUserKeys,
getUserKeys. A user sees their own account and user; admins see everyone."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import trio
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ...db.database import inserted_id
from ...db.schema import accounts, domains, users
from ...errors import InvalidParameter, PermissionDenied
from ..accounts import ROOT_ADMIN, USER
from ..passwords import hash_password
from ..registry import Param, command
from .common import PAGING, date, fetch, find, keyword, listing, matching, new_uuid, now

if TYPE_CHECKING:
    from ..app import Context

ACCOUNT_TYPES = {USER: "User", ROOT_ADMIN: "Admin"}


def domain_view(r: Any) -> dict[str, Any]:
    return {
        "id": r.uuid,
        "name": r.name,
        "path": "ROOT" + r.path.rstrip("/") if r.path != "/" else "ROOT",
        "level": r.path.count("/") - 1,
        "haschild": False,
        "state": "Active",
    }


def _domains(conn: Connection, caller: Any, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = [domains.c.removed.is_(None), *keyword(domains.c.name, args)]
    if not caller.is_admin:
        where.append(domains.c.id == caller.domain_id)
    where += matching(args, {"id": domains.c.uuid, "name": domains.c.name})
    rows, total = fetch(conn, sa.select(domains).where(*where), domains.c.id, args)
    return [domain_view(r) for r in rows], total


@command(
    "listDomains",
    "Lists domains (a user: their own).",
    Param("id", "uuid", description="the domain's id"),
    Param("name", description="the domain's name"),
    Param("listall", "boolean", description="accepted for compatibility"),
    Param("details", description="accepted for compatibility"),
    *PAGING,
    response="domain",
)
async def list_domains(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    items, total = await ctx.read(_domains, ctx.caller, args)
    return listing("domain", items, total)


def _account_query() -> sa.Select[Any]:
    return sa.select(
        accounts,
        domains.c.uuid.label("domain_uuid"),
        domains.c.name.label("domain_name"),
        domains.c.path.label("domain_path"),
    ).join(domains, domains.c.id == accounts.c.domain_id)


def account_view(r: Any, user_views: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": r.uuid,
        "name": r.name,
        "accounttype": r.type,
        "roletype": ACCOUNT_TYPES.get(r.type, "User"),
        "domainid": r.domain_uuid,
        "domain": r.domain_name,
        "domainpath": "ROOT" + r.domain_path.rstrip("/") if r.domain_path != "/" else "ROOT",
        "state": r.state,
        "isdefault": r.name == "admin" and r.type == ROOT_ADMIN,
        "created": date(r.created),
        "user": user_views,
    }


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


def user_view(r: Any) -> dict[str, Any]:
    return {
        "id": r.uuid,
        "username": r.username,
        "firstname": r.first_name,
        "lastname": r.last_name,
        "email": r.email,
        "account": r.account_name,
        "accountid": r.account_uuid,
        "accounttype": r.account_type,
        "roletype": ACCOUNT_TYPES.get(r.account_type, "User"),
        "domainid": r.domain_uuid,
        "domain": r.domain_name,
        "state": r.state,
        "apikey": r.api_key,  # CloudStack lists the API key (never the secret)
        "created": date(r.created),
        "isdefault": r.username == "admin",
    }


def _accounts(conn: Connection, caller: Any, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = [accounts.c.removed.is_(None), *keyword(accounts.c.name, args)]
    if not caller.is_admin:
        where.append(accounts.c.id == caller.account_id)
    where += matching(
        args,
        {
            "id": accounts.c.uuid,
            "name": accounts.c.name,
            "accounttype": accounts.c.type,
            "domainid": domains.c.uuid,
            "state": accounts.c.state,
        },
    )
    rows, total = fetch(conn, _account_query().where(*where), accounts.c.id, args)
    members: dict[int, list[dict[str, Any]]] = {r.id: [] for r in rows}
    if rows:
        for u in conn.execute(
            _user_query().where(users.c.account_id.in_(members), users.c.removed.is_(None))
        ):
            members[u.account_id].append(user_view(u))
    return [account_view(r, members[r.id]) for r in rows], total


@command(
    "listAccounts",
    "Lists accounts with their users (a user: their own account).",
    Param("id", "uuid", description="the account's id"),
    Param("name", description="the account's name"),
    Param("accounttype", "integer", description="0 user, 1 root admin"),
    Param("domainid", "uuid", description="the domain's id"),
    Param("state", description="enabled or disabled"),
    Param("listall", "boolean", description="accepted for compatibility"),
    Param("isrecursive", "boolean", description="accepted for compatibility"),
    *PAGING,
    response="account",
)
async def list_accounts(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    items, total = await ctx.read(_accounts, ctx.caller, args)
    return listing("account", items, total)


def _create_account(
    conn: Connection, caller: Any, args: dict[str, Any], password_hash: str
) -> dict[str, Any]:
    domain_id = caller.domain_id
    if "domainid" in args:
        domain_id = find(conn, caller, domains, args["domainid"], "domain").id
    name = args.get("account") or args["username"]
    if conn.scalar(sa.select(users.c.id).where(users.c.username == args["username"])):
        raise InvalidParameter(f"a user named {args['username']!r} exists already")
    if conn.scalar(
        sa.select(accounts.c.id).where(
            accounts.c.name == name, accounts.c.domain_id == domain_id, accounts.c.removed.is_(None)
        )
    ):
        raise InvalidParameter(f"an account named {name!r} exists already in that domain")
    stamp = now()
    try:
        with conn.begin_nested():
            account_id = inserted_id(conn.execute(
                accounts.insert().values(
                    uuid=new_uuid(),
                    name=name,
                    domain_id=domain_id,
                    type=args.get("accounttype", USER),
                    state="enabled",
                    created=stamp,
                )
            ))
            conn.execute(
                users.insert().values(
                    uuid=new_uuid(),
                    account_id=account_id,
                    username=args["username"],
                    password=password_hash,
                    email=args["email"],
                    first_name=args["firstname"],
                    last_name=args["lastname"],
                    state="enabled",
                    created=stamp,
                )
            )
    except IntegrityError:
        raise InvalidParameter(
            f"a user or account named {args['username']!r} was created concurrently"
        ) from None
    return _accounts(
        conn, caller, {"id": conn.scalar(sa.select(accounts.c.uuid).where(accounts.c.id == account_id))}
    )[0][0]


@command(
    "createAccount",
    "Creates an account and its first user.",
    Param("username", required=True, description="the user's login name"),
    Param("password", required=True, description="the user's password (stored as a PBKDF2 hash)"),
    Param("email", required=True, description="the user's e-mail address"),
    Param("firstname", required=True, description="the user's first name"),
    Param("lastname", required=True, description="the user's last name"),
    Param("accounttype", "integer", description="0 user (default), 1 root admin"),
    Param("account", description="the account's name (default: the user name)"),
    Param("domainid", "uuid", description="the account's domain (default: ROOT)"),
    Param("roleid", "uuid", description="accepted for compatibility (accounttype decides)"),
    admin=True,
    event="ACCOUNT.CREATE",
    response="account",
)
async def create_account(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("accounttype", USER) not in ACCOUNT_TYPES:
        raise InvalidParameter("accounttype must be 0 (user) or 1 (root admin)")
    if len(args["password"]) < 8:
        raise InvalidParameter("password must be at least 8 characters long")
    password_hash = await trio.to_thread.run_sync(hash_password, args["password"])
    account = await ctx.run(_create_account, ctx.caller, args, password_hash)
    await ctx.event(
        "ACCOUNT.CREATE",
        f"created account {account['name']}",
        resource_type="Account",
        resource_uuid=account["id"],
    )
    return {"account": account}


def _users(conn: Connection, caller: Any, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = [users.c.removed.is_(None), *keyword(users.c.username, args)]
    if not caller.is_admin:
        where.append(users.c.account_id == caller.account_id)
    where += matching(
        args,
        {
            "id": users.c.uuid,
            "username": users.c.username,
            "account": accounts.c.name,
            "domainid": domains.c.uuid,
            "state": users.c.state,
        },
    )
    rows, total = fetch(conn, _user_query().where(*where), users.c.id, args)
    return [user_view(r) for r in rows], total


@command(
    "listUsers",
    "Lists users (a user: those of their own account).",
    Param("id", "uuid", description="the user's id"),
    Param("username", description="the user's login name"),
    Param("account", description="the account's name"),
    Param("domainid", "uuid", description="the domain's id"),
    Param("state", description="enabled or disabled"),
    Param("listall", "boolean", description="accepted for compatibility"),
    *PAGING,
    response="user",
)
async def list_users(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    items, total = await ctx.read(_users, ctx.caller, args)
    return listing("user", items, total)


def _user_for(conn: Connection, caller: Any, ident: str) -> Any:
    row = conn.execute(sa.select(users).where(users.c.uuid == ident, users.c.removed.is_(None))).first()
    if row is None or (not caller.is_admin and row.id != caller.user_id):
        if caller.is_admin:
            raise InvalidParameter(f"unable to find user with id {ident}")
        raise PermissionDenied(f"unable to find or access user {ident}")
    return row


def _new_keys(conn: Connection, caller: Any, ident: str) -> dict[str, str]:
    row = _user_for(conn, caller, ident)
    api_key, secret_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    conn.execute(users.update().where(users.c.id == row.id).values(api_key=api_key, secret_key=secret_key))
    return {"apikey": api_key, "secretkey": secret_key}


@command(
    "registerUserKeys",
    "Makes new API keys for a user (yourself, or anyone for admins); the old ones stop working.",
    Param("id", "uuid", required=True, description="the user's id"),
    event="REGISTER.USER.KEY",
    response="userkeys",
)
async def register_user_keys(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    keys = await ctx.run(_new_keys, ctx.caller, args["id"])
    ctx.api.callers.clear()  # the old keys stop working now, not when their cache entry ages
    await ctx.event(
        "REGISTER.USER.KEY",
        f"new API keys for user {args['id']}",
        resource_type="User",
        resource_uuid=args["id"],
    )
    return {"userkeys": keys}


def _keys(conn: Connection, caller: Any, ident: str) -> dict[str, str]:
    row = _user_for(conn, caller, ident)
    return {"apikey": row.api_key or "", "secretkey": row.secret_key or ""}


@command(
    "getUserKeys",
    "A user's API keys (yourself, or anyone for admins).",
    Param("id", "uuid", required=True, description="the user's id"),
    response="userkeys",
)
async def get_user_keys(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return {"userkeys": await ctx.read(_keys, ctx.caller, args["id"])}
