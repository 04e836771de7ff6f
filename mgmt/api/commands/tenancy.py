"""Tenancy: domains, accounts and users through their life, roles, resource limits and counts.

Root admins reach everything; a domain admin (account type 2) its domain's subtree (and never a root
admin's account); a user, itself. What is out of reach answers 531 with the text a missing one gets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import InvalidParameter
from ...limits import NAMES, ResourceType
from ...services.domains import cs_path
from ...services.tenancy import ROLES, TYPE_OF_ROLE, UserSpec
from ..registry import Param, command, refuse
from .accounts import _account, account_settings, domain_view, user_view
from .common import ICON, NO_VR, PAGING, listing, page, success

if TYPE_CHECKING:
    from ..app import Context


# --- domains -------------------------------------------------------------------------------------------


@command(
    "createDomain",
    "Creates a domain under another (default: the caller's).",
    Param("name", required=True, description="its name (no '/')"),
    Param("parentdomainid", "uuid", description="the parent domain (default: the caller's)"),
    Param("domainid", "uuid", description="its id (an identity provider's; default: a new one)"),
    *refuse(NO_VR, "networkdomain"),
    admin=True,
    domain_admin=True,
    event="DOMAIN.CREATE",
    response="domain",
)
async def create_domain(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    made = await ctx.services.tenancy.create_domain(ctx.caller, args["name"], args.get("parentdomainid", ""),
                                                    args.get("domainid", ""))
    view = domain_view(made)
    await ctx.event("DOMAIN.CREATE", f"created domain {view['path']}", resource_type="Domain",
                    resource_uuid=view["id"])
    return {"domain": view}


@command(
    "updateDomain",
    "Renames a domain (the paths below it follow).",
    Param("id", "uuid", required=True, description="the domain"),
    Param("name", description="its new name"),
    *refuse(NO_VR, "networkdomain"),
    admin=True,
    domain_admin=True,
    event="DOMAIN.UPDATE",
    response="domain",
)
async def update_domain(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if "name" not in args:
        raise InvalidParameter("give name (the domain's new name)")
    view = domain_view(await ctx.services.tenancy.update_domain(ctx.caller, args["id"], args["name"]))
    await ctx.event("DOMAIN.UPDATE", f"renamed domain to {view['path']}", resource_type="Domain",
                    resource_uuid=view["id"])
    return {"domain": view}


@command(
    "deleteDomain",
    "Deletes a domain; with cleanup=true its accounts (and everything they own) and subdomains first.",
    Param("id", "uuid", required=True, description="the domain"),
    Param("cleanup", "boolean", description="delete its accounts and subdomains too (default false)"),
    admin=True,
    domain_admin=True,
    is_async=True,
    event="DOMAIN.DELETE",
    response="success",
)
async def delete_domain(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    tenancy = ctx.services.tenancy
    row, account_ids = await tenancy.deletable_domain(ctx.caller, args["id"], bool(args.get("cleanup")))

    async def work() -> dict[str, Any]:
        await tenancy.delete_domain(ctx.caller, row.id, account_ids)
        return success()

    job = await ctx.submit(work, description=f"deleted domain {cs_path(row.path)}", instance_type="Domain",
                           instance_id=row.id, instance_uuid=row.uuid)
    return {"jobid": job}


@command(
    "listDomainChildren",
    "Lists a domain's subdomains (default: the caller's domain's), all the way down with isrecursive.",
    Param("id", "uuid", description="the domain"),
    Param("name", description="subdomains of this name"),
    Param("isrecursive", "boolean", description="every level below, not just the children"),
    Param("listall", "boolean", description="the subdomains in the caller's reach (the only ones it sees)"),
    ICON,
    *PAGING,
    admin=True,
    domain_admin=True,
    response="domain",
)
async def list_domain_children(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    found, total = await ctx.services.tenancy.domain_children(ctx.caller, args)
    return listing("domain", [domain_view(d) for d in found], total)


# --- accounts ------------------------------------------------------------------------------------------


@command(
    "updateAccount",
    "Renames an account.",
    Param("id", "uuid", description="the account"),
    Param("account", description="the account, by name (with domainid)"),
    Param("domainid", "uuid", description="the account's domain (default: the caller's)"),
    Param("newname", description="its new name"),
    Param("roleid", "uuid", description="its role (listRoles): the role it has (changing the role type of "
                                       "an account is not supported)"),
    *refuse(NO_VR, "networkdomain"),
    Param("accountdetails", "map", description="the account's own values of account-scoped settings: "
                                                "accountdetails[0].allow.user.expunge.recover.vm=true"),
    admin=True,
    domain_admin=True,
    event="ACCOUNT.UPDATE",
    response="account",
)
async def update_account(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    tenancy = ctx.services.tenancy
    row = await _account_row(ctx, args)
    if "roleid" in args and TYPE_OF_ROLE.get(args["roleid"]) != row.type:
        raise InvalidParameter("changing an account's role type is not supported yet: give its own role")
    details = account_settings(args)
    if "newname" in args:
        await tenancy.rename_account(ctx.caller, row.uuid, args["newname"])
    for name, value in details.items():
        await ctx.services.settings.update(name, value, {"accountid": row.uuid})
    view = _account((await ctx.services.accounts.accounts(ctx.caller, {"id": row.uuid}))[0][0])
    await ctx.event("ACCOUNT.UPDATE", f"updated account {view['name']}", resource_type="Account",
                    resource_uuid=row.uuid)
    return {"account": view}


async def _account_row(ctx: Context, args: dict[str, Any]) -> Any:
    return await ctx.services.tenancy.account(ctx.caller, args.get("id", ""), args.get("account", ""),
                                              args.get("domainid", ""))


async def _account_state(ctx: Context, args: dict[str, Any], state: str, event: str,
                         verb: str) -> dict[str, Any]:
    tenancy = ctx.services.tenancy
    row = await _account_row(ctx, args)

    async def work() -> dict[str, Any]:
        await tenancy.set_account_state(ctx.caller, row.uuid, state)
        ctx.api.callers.clear()  # its users' keys stop working now, not when their cache entries age
        found = (await ctx.services.accounts.accounts(ctx.caller, {"id": row.uuid}))[0]
        return {"account": _account(found[0])} if found else success()

    job = await ctx.submit(work, description=f"{verb} account {row.name}", instance_type="Account",
                           instance_id=row.id, instance_uuid=row.uuid)
    return {"jobid": job}


_ACCOUNT_ID = (Param("id", "uuid", description="the account"),
               Param("account", description="the account, by name (with domainid)"),
               Param("domainid", "uuid", description="the account's domain (default: the caller's)"))


@command(
    "disableAccount",
    "Disables an account (its users can no longer log in or call; lock=false also stops its running VMs) "
    "or, with lock=true, locks it.",
    *_ACCOUNT_ID,
    Param("lock", "boolean", required=True, description="lock (VMs keep running) instead of disable"),
    admin=True,
    domain_admin=True,
    is_async=True,
    event="ACCOUNT.DISABLE",
    response="account",
)
async def disable_account(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    locked = bool(args["lock"])
    return await _account_state(ctx, args, "locked" if locked else "disabled", "ACCOUNT.DISABLE",
                                "locked" if locked else "disabled")


@command(
    "lockAccount",
    "Locks an account: its users can no longer log in or call; its VMs keep running.",
    *_ACCOUNT_ID,
    admin=True,
    domain_admin=True,
    event="ACCOUNT.DISABLE",
    response="account",
)
async def lock_account(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _account_state_now(ctx, args, "locked", "ACCOUNT.DISABLE")


async def _account_state_now(ctx: Context, args: dict[str, Any], state: str, event: str) -> dict[str, Any]:
    """Set an account's state at once (no job: nothing to stop); the account as listAccounts shows it."""
    row = await _account_row(ctx, args)
    await ctx.services.tenancy.set_account_state(ctx.caller, row.uuid, state)
    ctx.api.callers.clear()  # its users' keys change at once, not when their cache entries age
    await ctx.event(event, f"{state} account {row.name}", resource_type="Account", resource_uuid=row.uuid)
    return {"account": _account((await ctx.services.accounts.accounts(ctx.caller, {"id": row.uuid}))[0][0])}


@command(
    "enableAccount",
    "Enables a disabled or locked account.",
    *_ACCOUNT_ID,
    admin=True,
    domain_admin=True,
    event="ACCOUNT.ENABLE",
    response="account",
)
async def enable_account(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _account_state_now(ctx, args, "enabled", "ACCOUNT.ENABLE")


@command(
    "deleteAccount",
    "Deletes an account: its VMs destroyed and expunged, its volumes and isolated networks deleted, its "
    "users removed.",
    Param("id", "uuid", required=True, description="the account"),
    admin=True,
    domain_admin=True,
    is_async=True,
    event="ACCOUNT.DELETE",
    response="success",
)
async def delete_account(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    tenancy = ctx.services.tenancy
    row = await tenancy.deletable_account(ctx.caller, args["id"])

    async def work() -> dict[str, Any]:
        await tenancy.delete_account(ctx.caller, row.id)
        ctx.api.callers.clear()
        return success()

    job = await ctx.submit(work, description=f"deleted account {row.name}", instance_type="Account",
                           instance_id=row.id, instance_uuid=row.uuid)
    return {"jobid": job}


# --- users ---------------------------------------------------------------------------------------------


@command(
    "createUser",
    "Creates a user in an account.",
    Param("account", required=True, description="the account's name"),
    Param("domainid", "uuid", description="the account's domain (default: the caller's)"),
    Param("username", required=True, description="the login name (unique in the cloud)"),
    Param("password", required=True, description="the password (password.policy.* settings apply)"),
    Param("email", required=True, description="the e-mail address"),
    Param("firstname", required=True, description="the first name"),
    Param("lastname", required=True, description="the last name"),
    Param("timezone", description="the user's time zone (an IANA name: Europe/Paris, UTC...)"),
    Param("userid", "uuid", description="the user's id (an identity provider's; default: a new one)"),
    admin=True,
    domain_admin=True,
    event="USER.CREATE",
    response="user",
)
async def create_user(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    spec = UserSpec(args["username"], args["password"], args["email"], args["firstname"], args["lastname"],
                    args.get("userid", ""), args.get("timezone"))
    row = await ctx.services.tenancy.create_user(ctx.caller, args["account"], args.get("domainid", ""), spec)
    await ctx.event("USER.CREATE", f"created user {row.username}", resource_type="User",
                    resource_uuid=row.uuid)
    return {"user": user_view(row)}


@command(
    "updateUser",
    "Updates a user; a password change by the user itself needs currentpassword, by an admin not.",
    Param("id", "uuid", required=True, description="the user"),
    Param("username", description="a new login name"),
    Param("password", description="a new password"),
    Param("currentpassword", description="the current password (a user changing its own)"),
    Param("email", description="a new e-mail address"),
    Param("firstname", description="a new first name"),
    Param("lastname", description="a new last name"),
    Param("timezone", description="the user's time zone (an IANA name: Europe/Paris, UTC...)"),
    *refuse("two-factor authentication is not supported yet", "mandate2fa", harmless=("false",),
            applies=True),
    Param("userapikey", description="not settable here: use registerUserKeys"),
    Param("usersecretkey", description="not settable here: use registerUserKeys"),
    event="USER.UPDATE",
    response="user",
)
async def update_user(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if "userapikey" in args or "usersecretkey" in args:
        raise InvalidParameter("API keys are made by registerUserKeys, not given")
    row = await ctx.services.tenancy.update_user(ctx.caller, args["id"], args)
    await ctx.event("USER.UPDATE", f"updated user {row.username}", resource_type="User",
                    resource_uuid=row.uuid)
    return {"user": user_view(row)}


async def _user_state(ctx: Context, args: dict[str, Any], state: str, event: str,
                      verb: str) -> dict[str, Any]:
    row = await ctx.services.tenancy.set_user_state(ctx.caller, args["id"], state)
    ctx.api.callers.clear()
    await ctx.event(event, f"{verb} user {row.username}", resource_type="User", resource_uuid=row.uuid)
    return {"user": user_view(await ctx.services.tenancy.user(ctx.caller, row.uuid))} if state != "removed" \
        else success()


@command("disableUser", "Disables a user: it can no longer log in or call.",
         Param("id", "uuid", required=True, description="the user"), admin=True, domain_admin=True,
         is_async=True, event="USER.DISABLE", response="user")
async def disable_user(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    user = await ctx.services.tenancy.user_in_reach(ctx.caller, args["id"])

    async def work() -> dict[str, Any]:
        return await _user_state(ctx, args, "disabled", "USER.DISABLE", "disabled")

    job = await ctx.submit(work, description=f"disabled user {user.username}", instance_type="User",
                           instance_uuid=user.uuid)
    return {"jobid": job}


@command("lockUser", "Locks a user: it can no longer log in or call.",
         Param("id", "uuid", required=True, description="the user"), admin=True, domain_admin=True,
         event="USER.LOCK", response="user")
async def lock_user(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _user_state(ctx, args, "locked", "USER.LOCK", "locked")


@command("enableUser", "Enables a disabled or locked user.",
         Param("id", "uuid", required=True, description="the user"), admin=True, domain_admin=True,
         event="USER.ENABLE", response="user")
async def enable_user(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _user_state(ctx, args, "enabled", "USER.ENABLE", "enabled")


@command("deleteUser", "Deletes a user (its keys stop working).",
         Param("id", "uuid", required=True, description="the user"), admin=True, domain_admin=True,
         event="USER.DELETE", response="success")
async def delete_user(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _user_state(ctx, args, "removed", "USER.DELETE", "deleted")


@command(
    "moveUser",
    "Moves a user to another account of the same domain.",
    Param("id", "uuid", required=True, description="the user"),
    Param("account", description="the account it moves to, by name"),
    Param("accountid", "uuid", description="the account it moves to"),
    admin=True,
    domain_admin=True,
    event="USER.MOVE",
    response="success",
)
async def move_user(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if ("account" in args) == ("accountid" in args):
        raise InvalidParameter("give account or accountid")
    row = await ctx.services.tenancy.move_user(ctx.caller, args["id"], args.get("accountid", ""),
                                               args.get("account", ""))
    await ctx.event("USER.MOVE", f"moved user {row.username} to account {row.account_name}",
                    resource_type="User", resource_uuid=row.uuid)
    return success()


# --- roles ---------------------------------------------------------------------------------------------


@command(
    "listRoles",
    "Lists CloudStack's default roles (Root Admin, Resource Admin, Domain Admin, User).",
    Param("id", "uuid", description="one role"),
    Param("name", description="roles of this name"),
    Param("type", description="Admin, ResourceAdmin, DomainAdmin or User"),
    *PAGING,
    response="role",
)
async def list_roles(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    items = [{"id": uuid, "name": name, "type": kind, "description": text, "isdefault": True,
              "state": "ENABLED", "ispublic": True}
             for uuid, name, kind, text, _type in ROLES
             if args.get("id", uuid) == uuid and args.get("name", name) == name
             and args.get("type", kind) == kind and args.get("keyword", "").lower() in name.lower()]
    offset, limit = page(args)
    return listing("role", items[offset: None if limit is None else offset + limit], len(items))


# --- resource limits and counts ------------------------------------------------------------------------


def _types(args: dict[str, Any]) -> list[ResourceType]:
    if "resourcetype" in args:
        try:
            return [ResourceType(int(args["resourcetype"]))]
        except ValueError:
            raise InvalidParameter("resourcetype is 0 to 11 (0 instances, 2 volumes, 6 networks, 8 cpu, "
                                   "9 memory, 10 primary storage, ...)") from None
    if "resourcetypename" in args:
        by_name = {v: k for k, v in NAMES.items()}
        if args["resourcetypename"] not in by_name:
            raise InvalidParameter(f"resourcetypename is one of {', '.join(NAMES.values())}")
        return [by_name[args["resourcetypename"]]]
    return list(ResourceType)


def _owner_fields(who: Any) -> dict[str, Any]:
    fields = {"domainid": who.domain_uuid, "domain": who.domain_name, "domainpath": cs_path(who.domain_path)}
    if who.project_uuid:
        fields.update(projectid=who.project_uuid, project=who.name)
    elif who.kind == "account":
        fields["account"] = who.name
    return fields


PROJECT_OWNER = Param("projectid", "uuid",
                      description="a project: its own limits and counts (not with account)")
_OWNER = (Param("account", description="an account, by name (with domainid; default: the caller's)"),
          Param("domainid", "uuid",
                description="a domain (alone: the domain's own; with account: the account's)"))


@command(
    "listResourceLimits",
    "Lists an account's or a domain's resource limits (-1: none).",
    *_OWNER,
    Param("resourcetype", "integer", description="one type (0 instance, 2 volume, 6 network, 8 cpu, ...)"),
    Param("resourcetypename", description="one type, by name (user_vm, volume, network, cpu, ...)"),
    Param("id", "long", description="one limit an admin set, by its number"),
    Param("listall", "boolean", description="admins: the limits of every account in their reach"),
    Param("isrecursive", "boolean", description="with domainid: that domain's and every subdomain's"),
    *refuse("limits and counts by host or storage tag are not supported yet", "tag", applies=True),
    PROJECT_OWNER,
    *PAGING,
    response="resourcelimit",
)
async def list_resource_limits(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    owners, only = await ctx.services.tenancy.resource_limits_of(ctx.caller, args)
    types = [t for t in _types(args) if only is None or t == only]
    items = [{"resourcetype": str(int(t)), "resourcetypename": NAMES[t], "max": found[t],
              **_owner_fields(who)} for who, found in owners
             for t in types if args.get("keyword", "").lower() in NAMES[t]]
    offset, limit = page(args)
    return listing("resourcelimit", items[offset: None if limit is None else offset + limit], len(items))


@command(
    "updateResourceLimit",
    "Sets an account's or a domain's limit of one resource type (-1: none; no max: back to the default). "
    "A domain admin sets those below its own domain.",
    *_OWNER,
    Param("resourcetype", "integer", required=True,
          description="the type (0 instance, 2 volume, 8 cpu, ...)"),
    Param("max", "long", description="the limit (memory in MiB, storage in GiB; -1: none)"),
    *refuse("limits and counts by host or storage tag are not supported yet", "tag", applies=True),
    PROJECT_OWNER,
    admin=True,
    domain_admin=True,
    event="RESOURCE.LIMIT.UPDATE",
    response="resourcelimit",
)
async def update_resource_limit(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    rtype = _types(args)[0]
    who, found = await ctx.services.tenancy.set_limit(ctx.caller, args.get("account", ""),
                                                      args.get("domainid", ""), rtype, args.get("max"),
                                                      args.get("projectid", ""))
    await ctx.event("RESOURCE.LIMIT.UPDATE", f"{NAMES[rtype]} limit of {who.kind} {who.name}: {found[rtype]}",
                    resource_type="Account" if who.kind == "account" else "Domain")
    return {"resourcelimit": {"resourcetype": str(int(rtype)), "resourcetypename": NAMES[rtype],
                              "max": found[rtype], **_owner_fields(who)}}


async def _counts(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    who, found = await ctx.services.tenancy.resource_counts(ctx.caller, args.get("account", ""),
                                                            args.get("domainid", ""),
                                                            args.get("projectid", ""))
    items = [{"resourcetype": str(int(t)), "resourcetypename": NAMES[t], "resourcecount": found[t],
              **_owner_fields(who)} for t in _types(args) if args.get("keyword", "").lower() in NAMES[t]]
    offset, limit = page(args)
    return listing("resourcecount", items[offset: None if limit is None else offset + limit], len(items))


@command(
    "listResourceCounts",
    "Lists an account's or a domain's resource counts (what it holds now; storage in bytes).",
    *_OWNER,
    PROJECT_OWNER,
    Param("resourcetype", "integer", description="one type"),
    *PAGING,
    response="resourcecount",
)
async def list_resource_counts(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _counts(ctx, args)


@command(
    "updateResourceCount",
    "Counts an account's or a domain's resources again (counts are always read from the resources "
    "themselves, so this answers what they are now).",
    Param("domainid", "uuid", required=True, description="the domain (alone, or the account's)"),
    Param("account", description="an account of that domain, by name"),
    Param("resourcetype", "integer", description="one type"),
    *refuse("limits and counts by host or storage tag are not supported yet", "tag", applies=True),
    PROJECT_OWNER,
    admin=True,
    domain_admin=True,
    response="resourcecount",
)
async def update_resource_count(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _counts(ctx, args)

