"""Domains, accounts and users as lists and keys: listDomains, listAccounts, createAccount, listUsers,
registerUserKeys, getUserKeys. A user sees its own account's; a domain admin its subtree's; the root
admin everyone's. Their life after creation is in ``tenancy.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import InvalidParameter
from ...services.accounts import Account, AccountSpec
from ...services.caller import DOMAIN_ADMIN, ROOT_ADMIN, USER
from ...services.domains import DomainView, cs_path, level
from ...services.settings import check
from ...services.tenancy import TYPE_OF_ROLE
from ...settings import SETTINGS
from ..registry import Param, command, refuse
from .common import ICON, NO_VR, PAGING, as_dict, date, listing

TAGGED_LIMITS = "limits and counts by host or storage tag are not supported yet"

if TYPE_CHECKING:
    from ..app import Context

ACCOUNT_TYPES = {USER: "User", ROOT_ADMIN: "Admin", DOMAIN_ADMIN: "DomainAdmin"}


def domain_view(d: DomainView) -> dict[str, Any]:
    r = d.row
    view = {
        "id": r.uuid,
        "name": r.name,
        "path": cs_path(r.path),
        "level": level(r.path),
        "haschild": d.has_child,
        "state": "Active",
        "created": date(r.created),
    }
    if d.parent_uuid is not None:
        view.update(parentdomainid=d.parent_uuid, parentdomainname=d.parent_name)
    return view


@command(
    "listDomains",
    "Lists domains: the caller's, or with listall every domain in its reach (a domain admin: its subtree).",
    Param("id", "uuid", description="the domain's id"),
    Param("name", description="the domain's name"),
    Param("level", "integer", description="domains this deep (ROOT is 0)"),
    Param("listall", "boolean", description="every domain in the caller's reach"),
    Param("details", "list", description="all or min (the same fields here: a domain's limits are "
                                          "listResourceLimits')"),
    ICON,
    *refuse(TAGGED_LIMITS, "tag", applies=True),
    *PAGING,
    response="domain",
)
async def list_domains(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if {d.lower() for d in args.get("details", [])} - {"all", "min"}:
        raise InvalidParameter("details must be all or min (resource limits: listResourceLimits)")
    found, total = await ctx.services.accounts.domains(ctx.caller, args)
    return listing("domain", [domain_view(d) for d in found], total)


def account_view(r: Any, user_views: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": r.uuid,
        "name": r.name,
        "accounttype": r.type,
        "roletype": ACCOUNT_TYPES.get(r.type, "User"),
        "domainid": r.domain_uuid,
        "domain": r.domain_name,
        "domainpath": cs_path(r.domain_path),
        "state": r.state,
        "isdefault": r.name == "admin" and r.type == ROOT_ADMIN,
        "created": date(r.created),
        "user": user_views,
    }


def _account(account: Account) -> dict[str, Any]:
    return account_view(account.row, [user_view(u) for u in account.users])


def account_settings(args: dict[str, Any]) -> dict[str, str]:
    """``accountdetails``: values of account-scoped settings, checked before anything is made."""
    out = as_dict(args.get("accountdetails", []))
    for name, value in out.items():
        setting = SETTINGS.get(name)
        if setting is None or setting.scope != "Account":
            names = ", ".join(n for n, s in SETTINGS.items() if s.scope == "Account")
            raise InvalidParameter(f"accountdetails: {name[:64]!r} is not an account-scoped setting "
                                   f"({names})")
        check(setting, value)
    return out


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
        **({"timezone": r.timezone} if r.timezone else {}),
    }


@command(
    "listAccounts",
    "Lists accounts with their users (a user: their own account).",
    Param("id", "uuid", description="the account's id"),
    Param("name", description="the account's name"),
    Param("accounttype", "integer", description="0 user, 1 root admin, 2 domain admin"),
    Param("domainid", "uuid", description="the accounts of this domain"),
    Param("isrecursive", "boolean", description="with domainid: its subdomains' accounts too"),
    Param("state", description="enabled, disabled or locked"),
    Param("listall", "boolean", description="every account in the caller's reach (the default for admins)"),
    Param("details", "list", description="all (default) or min (without their users)"),
    Param("iscleanuprequired", "boolean",
          description="true: accounts whose deletion is unfinished (none: a deletion is one job)"),
    ICON,
    *refuse(TAGGED_LIMITS, "tag", applies=True),
    *PAGING,
    response="account",
)
async def list_accounts(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    wanted = {d.lower() for d in args.get("details", ["all"])}
    if wanted - {"all", "min", "resource"}:
        raise InvalidParameter("details must be all or min")
    if args.get("iscleanuprequired"):
        return {}
    found, total = await ctx.services.accounts.accounts(ctx.caller, args)
    items = [_account(a) for a in found]
    if "min" in wanted:
        for item in items:
            item.pop("user", None)
    return listing("account", items, total)


@command(
    "createAccount",
    "Creates an account and its first user.",
    Param("username", required=True, description="the user's login name"),
    Param("password", required=True, description="the user's password (stored as a PBKDF2 hash)"),
    Param("email", required=True, description="the user's e-mail address"),
    Param("firstname", required=True, description="the user's first name"),
    Param("lastname", required=True, description="the user's last name"),
    Param("accounttype", "integer", description="0 user (default), 1 root admin, 2 domain admin"),
    Param("account", description="the account's name (default: the user name)"),
    Param("domainid", "uuid", description="the account's domain (default: the caller's)"),
    Param("roleid", "uuid", description="one of listRoles' roles (instead of accounttype)"),
    Param("timezone", description="the user's time zone (an IANA name: Europe/Paris, UTC...)"),
    Param("accountid", "uuid", description="the account's id (an identity provider's; default: a new one)"),
    Param("userid", "uuid", description="the user's id (an identity provider's; default: a new one)"),
    *refuse(NO_VR, "networkdomain"),
    Param("accountdetails", "map", description="the account's own values of account-scoped settings: "
                                                "accountdetails[0].allow.user.expunge.recover.vm=true"),
    admin=True,
    domain_admin=True,
    event="ACCOUNT.CREATE",
    response="account",
)
async def create_account(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_type = args.get("accounttype", USER)
    if "roleid" in args:
        role_type = TYPE_OF_ROLE.get(args["roleid"], -1)
        if role_type is None or role_type < 0 or ("accounttype" in args and account_type != role_type):
            raise InvalidParameter("roleid names no role an account can have here, or not accounttype's")
        account_type = role_type
    details = account_settings(args)
    spec = AccountSpec(args["username"], args["password"], args["email"], args["firstname"],
                       args["lastname"], args.get("account", ""), account_type, args.get("domainid", ""),
                       args.get("accountid", ""), args.get("userid", ""), args.get("timezone"))
    account = _account(await ctx.services.accounts.create_account(ctx.caller, spec))
    for name, value in details.items():
        await ctx.services.settings.update(name, value, {"accountid": account["id"]})
    await ctx.event(
        "ACCOUNT.CREATE",
        f"created account {account['name']}",
        resource_type="Account",
        resource_uuid=account["id"],
    )
    return {"account": account}


@command(
    "listUsers",
    "Lists users (a user: those of their own account).",
    Param("id", "uuid", description="the user's id"),
    Param("username", description="the user's login name"),
    Param("account", description="the account's name"),
    Param("accounttype", "integer", description="0 user, 1 root admin, 2 domain admin"),
    Param("domainid", "uuid", description="the users of this domain's accounts"),
    Param("isrecursive", "boolean", description="with domainid: its subdomains' users too"),
    Param("state", description="enabled, disabled or locked"),
    Param("listall", "boolean", description="every user in the caller's reach (the default for admins)"),
    ICON,
    *PAGING,
    response="user",
)
async def list_users(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    rows, total = await ctx.services.accounts.users(ctx.caller, args)
    return listing("user", [user_view(r) for r in rows], total)


@command(
    "registerUserKeys",
    "Makes new API keys for a user (yourself, or anyone for admins); the old ones stop working.",
    Param("id", "uuid", required=True, description="the user's id"),
    event="REGISTER.USER.KEY",
    response="userkeys",
)
async def register_user_keys(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    keys = await ctx.services.accounts.new_keys(ctx.caller, args["id"])
    ctx.api.callers.clear()  # the old keys stop working now, not when their cache entry ages
    await ctx.event(
        "REGISTER.USER.KEY",
        f"new API keys for user {args['id']}",
        resource_type="User",
        resource_uuid=args["id"],
    )
    return {"userkeys": keys}


@command(
    "getUserKeys",
    "A user's API keys (yourself, or anyone for admins).",
    Param("id", "uuid", required=True, description="the user's id"),
    response="userkeys",
)
async def get_user_keys(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    keys = await ctx.services.accounts.keys(ctx.caller, args["id"])
    # A user without keys: CloudStack answers an empty object (its null fields are left out).
    return {"userkeys": {k: v for k, v in keys.items() if v}}
