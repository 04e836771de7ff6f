"""Accounts and users through their life, domains' deletion, resource limits: what domain and root
admins (and users, for themselves) do to tenants.

Every change is scoped: a domain admin reaches the accounts and users of its subtree, never its own
account's type nor a domain above it; a user reaches only itself (its password, its keys). Deleting an
account (or a domain with ``cleanup``) is a workflow run as a job: its VMs are destroyed and expunged
(their capacity and addresses go back), then its data volumes and isolated networks are deleted, then
its users and itself are marked removed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import trio
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from .. import limits
from ..db.database import DELTAS, Database, inserted_id
from ..db.schema import (
    accounts,
    domains,
    networks,
    project_accounts,
    projects,
    resource_limits,
    users,
    vms,
    volumes,
)
from ..errors import CumuloError, InvalidParameter, PermissionDenied
from . import domains as domain_rows
from .accounts import KeysChanged, _caller, _caller_query, _user_query, check_timezone
from .caller import DOMAIN_ADMIN, PROJECT, ROOT_ADMIN, USER, Caller
from .crud import Row
from .passwords import check_password, hash_password, verify_password
from .queries import domain_in_reach, new_uuid, now, owns, project_in_reach
from .settings import password_policy

if TYPE_CHECKING:
    from .networks import Networks
    from .vms import VirtualMachines
    from .volumes import Volumes

log = logging.getLogger(__name__)

# CloudStack's default roles (dynamic roles can come later): uuid, name, type, description.
ROLES = (
    ("1d3d9e2c-0b1a-4c1e-9e4f-000000000001", "Root Admin", "Admin", "Default root admin role", ROOT_ADMIN),
    ("1d3d9e2c-0b1a-4c1e-9e4f-000000000002", "Resource Admin", "ResourceAdmin",
     "Default resource admin role", None),
    ("1d3d9e2c-0b1a-4c1e-9e4f-000000000003", "Domain Admin", "DomainAdmin", "Default domain admin role",
     DOMAIN_ADMIN),
    ("1d3d9e2c-0b1a-4c1e-9e4f-000000000004", "User", "User", "Default user role", USER),
)
TYPE_OF_ROLE = {uuid: t for uuid, _n, _k, _d, t in ROLES}


# --- rows ----------------------------------------------------------------------------------------------


def _account_in_reach(conn: Connection, caller: Caller, ident: str) -> Row:
    row = conn.execute(sa.select(accounts, domains.c.path.label("domain_path"))
                       .join(domains, domains.c.id == accounts.c.domain_id)
                       .where(accounts.c.uuid == ident, accounts.c.removed.is_(None))).first()
    if row is None or not (caller.manages_accounts and caller.sees_domain(row.domain_path)):
        raise PermissionDenied(f"unable to find or access account {ident}")
    if (caller.is_domain_admin and row.type == ROOT_ADMIN) or row.type == PROJECT:
        raise PermissionDenied(f"unable to find or access account {ident}")  # (projects: *Project)
    return row


def account_named(conn: Connection, caller: Caller, name: str, domain_uuid: str) -> Row:
    domain_id = domain_in_reach(conn, caller, domain_uuid).id if domain_uuid else caller.domain_id
    uuid = conn.scalar(sa.select(accounts.c.uuid).where(
        accounts.c.name == name, accounts.c.domain_id == domain_id, accounts.c.removed.is_(None)))
    if uuid is None:
        raise InvalidParameter(f"unable to find account {name!r}")
    return _account_in_reach(conn, caller, uuid)


def _user_in_reach(conn: Connection, caller: Caller, ident: str, *, self_ok: bool = False) -> Row:
    row = conn.execute(_user_query().add_columns(domains.c.path.label("domain_path"))
                       .where(users.c.uuid == ident, users.c.removed.is_(None))).first()
    if row is not None and self_ok and row.id == caller.user_id:
        return row
    if row is None or not (caller.manages_accounts and caller.sees_domain(row.domain_path)) or (
            caller.is_domain_admin and row.account_type == ROOT_ADMIN):
        raise PermissionDenied(f"unable to find or access user {ident}")
    return row


def _forget_callers(conn: Connection, user_ids: list[int]) -> None:
    pending = conn.info.get(DELTAS)
    if pending is not None:
        pending.extend(KeysChanged(u) for u in user_ids)


def update_account(conn: Connection, caller: Caller, ident: str, new_name: str) -> Row:
    row = _account_in_reach(conn, caller, ident)
    new_name = new_name.strip()
    if not new_name or len(new_name) > 255:
        raise InvalidParameter("newname is 1 to 255 characters")
    try:
        with conn.begin_nested():
            conn.execute(accounts.update().where(accounts.c.id == row.id).values(name=new_name))
    except IntegrityError:
        raise InvalidParameter(f"an account named {new_name!r} exists already in that domain") from None
    return row


def set_account_state(conn: Connection, caller: Caller, ident: str, state: str) -> tuple[Row, list[int]]:
    """Enable, disable or lock an account; its row and its running VMs' ids (a disable stops them)."""
    row = _account_in_reach(conn, caller, ident)
    if row.id == caller.account_id:
        raise PermissionDenied("an account cannot disable or lock itself")
    if row.type == ROOT_ADMIN and row.name == "admin" and row.domain_path == "/":
        raise PermissionDenied("the default admin account cannot be disabled or locked")
    conn.execute(accounts.update().where(accounts.c.id == row.id).values(state=state))
    _forget_callers(conn, list(conn.scalars(sa.select(users.c.id).where(users.c.account_id == row.id))))
    running = list(conn.scalars(sa.select(vms.c.id).where(vms.c.account_id == row.id, vms.c.removed.is_(None),
                                                          vms.c.state == "Running")))
    return row, running if state == "disabled" else []


def deletable_account(conn: Connection, caller: Caller, ident: str) -> Row:
    row = _account_in_reach(conn, caller, ident)
    if row.id == caller.account_id:
        raise PermissionDenied("an account cannot delete itself")
    if row.type == ROOT_ADMIN and row.name == "admin" and row.domain_path == "/":
        raise PermissionDenied("the default admin account cannot be deleted")
    return row


def account_resources(conn: Connection, account_id: int) -> tuple[list[int], list[int], list[int]]:
    """(VMs not expunged, data volumes not attached, isolated networks) of the account."""
    vm_ids = list(conn.scalars(sa.select(vms.c.id).where(vms.c.account_id == account_id,
                                                         vms.c.removed.is_(None))))
    vol_ids = list(conn.scalars(sa.select(volumes.c.id).where(
        volumes.c.account_id == account_id, volumes.c.removed.is_(None), volumes.c.type == "DATADISK",
        volumes.c.vm_id.is_(None), volumes.c.state != "Expunged")))
    net_ids = list(conn.scalars(sa.select(networks.c.id).where(networks.c.account_id == account_id,
                                                                networks.c.removed.is_(None))))
    return vm_ids, vol_ids, net_ids


def remove_account(conn: Connection, account_id: int) -> None:
    stamp = now()
    user_ids = list(conn.scalars(sa.select(users.c.id).where(users.c.account_id == account_id)))
    conn.execute(users.update().where(users.c.account_id == account_id, users.c.removed.is_(None))
                 .values(removed=stamp, state="disabled", api_key=None, secret_key=None))
    conn.execute(accounts.update().where(accounts.c.id == account_id).values(removed=stamp, state="disabled"))
    conn.execute(project_accounts.delete().where(project_accounts.c.account_id == account_id))  # a member
    conn.execute(projects.update().where(projects.c.account_id == account_id, projects.c.removed.is_(None))
                 .values(removed=stamp))  # a project's own account: the project goes with it
    _forget_callers(conn, user_ids)


@dataclass(frozen=True)
class UserSpec:
    username: str
    password: str
    email: str
    first_name: str
    last_name: str
    user_uuid: str = ""  # the id to give it (an identity provider's); default: a new one
    timezone: str | None = None


def create_user(conn: Connection, caller: Caller, account: Row, spec: UserSpec, password_hash: str) -> Row:
    if conn.scalar(sa.select(users.c.id).where(users.c.username == spec.username)):
        raise InvalidParameter(f"a user named {spec.username!r} exists already")
    if spec.user_uuid and conn.scalar(sa.select(users.c.id).where(users.c.uuid == spec.user_uuid)):
        raise InvalidParameter(f"the id {spec.user_uuid} is taken")
    try:
        with conn.begin_nested():
            user_id = inserted_id(conn.execute(users.insert().values(
                uuid=spec.user_uuid or new_uuid(), account_id=account.id, username=spec.username,
                password=password_hash, email=spec.email, first_name=spec.first_name,
                last_name=spec.last_name, state="enabled", timezone=check_timezone(spec.timezone),
                created=now())))
    except IntegrityError:
        raise InvalidParameter(f"a user named {spec.username!r} was created concurrently") from None
    return conn.execute(_user_query().where(users.c.id == user_id)).one()


def update_user(conn: Connection, caller: Caller, ident: str, values: dict[str, Any]) -> Row:
    row = _user_in_reach(conn, caller, ident, self_ok=True)
    if "username" in values and values["username"] != row.username and conn.scalar(
            sa.select(users.c.id).where(users.c.username == values["username"])):
        raise InvalidParameter(f"a user named {values['username']!r} exists already")
    if values:
        conn.execute(users.update().where(users.c.id == row.id).values(**values))
        if "password" in values:
            _forget_callers(conn, [row.id])
    return conn.execute(_user_query().where(users.c.id == row.id)).one()


def password_of(conn: Connection, caller: Caller, ident: str) -> tuple[Row, str]:
    row = _user_in_reach(conn, caller, ident, self_ok=True)
    return row, str(conn.scalar(sa.select(users.c.password).where(users.c.id == row.id)) or "")


def set_user_state(conn: Connection, caller: Caller, ident: str, state: str) -> Row:
    row = _user_in_reach(conn, caller, ident)
    if row.id == caller.user_id:
        raise PermissionDenied("a user cannot disable, lock or delete itself")
    if state == "removed":
        if row.username == "admin" and row.account_type == ROOT_ADMIN:
            raise PermissionDenied("the default admin user cannot be deleted")
        conn.execute(users.update().where(users.c.id == row.id).values(removed=now(), api_key=None,
                                                                       secret_key=None))
    else:
        conn.execute(users.update().where(users.c.id == row.id).values(state=state))
    _forget_callers(conn, [row.id])
    return row


def move_user(conn: Connection, caller: Caller, ident: str, account: Row) -> Row:
    row = _user_in_reach(conn, caller, ident)
    old_domain = conn.scalar(sa.select(accounts.c.domain_id).where(accounts.c.id == row.account_id))
    if old_domain != account.domain_id:
        raise InvalidParameter("a user moves only to another account of the same domain")
    if row.account_id == account.id:
        raise InvalidParameter("the user is in that account already")
    conn.execute(users.update().where(users.c.id == row.id).values(account_id=account.id))
    _forget_callers(conn, [row.id])
    return conn.execute(_user_query().where(users.c.id == row.id)).one()


def caller_of(conn: Connection, user_id: int) -> Caller | None:
    row = conn.execute(_caller_query().where(users.c.id == user_id)).first()
    return None if row is None else _caller(row)


# --- limits ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """Whose limits or counts: an account, or a domain."""

    kind: str  # account, domain
    id: int
    name: str
    domain_uuid: str
    domain_name: str
    domain_path: str
    account_type: int = USER
    project_uuid: str = ""  # a project's account: the project


def owner(conn: Connection, caller: Caller, account_name: str, domain_uuid: str,
          project_uuid: str = "") -> Owner:
    """The project's account, else the account named (in ``domain_uuid``, default the caller's), else the
    domain, else the caller."""
    if project_uuid:
        if account_name:
            raise InvalidParameter("give account or projectid, not both")
        p = project_in_reach(conn, caller, project_uuid)
        d = conn.execute(sa.select(domains).where(domains.c.id == p.domain_id)).one()
        return Owner("account", p.account_id, p.name, d.uuid, d.name, d.path, PROJECT, p.uuid)
    if account_name:
        row = account_named(conn, caller, account_name, domain_uuid) if caller.manages_accounts else None
        if row is None:
            raise PermissionDenied("only admins look at other accounts' limits")
        d = conn.execute(sa.select(domains).where(domains.c.id == row.domain_id)).one()
        return Owner("account", row.id, row.name, d.uuid, d.name, d.path, row.type)
    if domain_uuid:
        d = domain_in_reach(conn, caller, domain_uuid)
        return Owner("domain", d.id, d.name, d.uuid, d.name, d.path)
    return Owner("account", caller.account_id, caller.account_name, caller.domain_uuid, caller.domain_name,
                 caller.domain_path, caller.account_type)


def limit_owners(conn: Connection, caller: Caller,
                 args: Any) -> tuple[list[Owner], limits.ResourceType | None]:
    """Whose limits listResourceLimits shows: the limit ``id`` names (and its type); with ``domainid`` and
    ``isrecursive``, that domain and every domain below it; with ``listall`` (and no account, domain or
    project), every account in the caller's reach; else the one owner ``owner`` finds."""
    if "id" in args:
        row = conn.execute(sa.select(resource_limits).where(resource_limits.c.id == args["id"])).first()
        found = None
        if row is not None and row.owner_type == "account":
            a = conn.execute(sa.select(accounts.c.id, accounts.c.name, accounts.c.type, domains.c.uuid,
                                       domains.c.name.label("domain_name"), domains.c.path)
                             .join(domains, domains.c.id == accounts.c.domain_id)
                             .where(accounts.c.id == row.owner_id, accounts.c.removed.is_(None))).first()
            if a is not None and caller.manages_accounts and owns(conn, caller, a.id):
                found = Owner("account", a.id, a.name, a.uuid, a.domain_name, a.path, a.type)
        elif row is not None:
            d = conn.execute(sa.select(domains).where(domains.c.id == row.owner_id,
                                                      domains.c.removed.is_(None))).first()
            if d is not None and caller.manages_accounts and caller.sees_domain(d.path):
                found = Owner("domain", d.id, d.name, d.uuid, d.name, d.path)
        if found is None or row is None:
            raise InvalidParameter(f"unable to find resource limit {args['id']}")
        return [found], limits.ResourceType(row.type)
    if args.get("isrecursive") and "domainid" in args and not args.get("account"):
        top = domain_in_reach(conn, caller, args["domainid"])
        rows = conn.execute(sa.select(domains).where(domains.c.path.startswith(top.path, autoescape=True),
                                                     domains.c.removed.is_(None)).order_by(domains.c.path))
        return [Owner("domain", d.id, d.name, d.uuid, d.name, d.path) for d in rows], None
    if args.get("listall") and caller.manages_accounts and not (
            args.get("account") or args.get("domainid") or args.get("projectid")):
        where = [accounts.c.removed.is_(None), accounts.c.type != PROJECT]
        if not caller.is_admin:
            where.append(accounts.c.domain_id.in_(sa.select(domains.c.id).where(
                domains.c.path.startswith(caller.domain_path, autoescape=True))))
        rows = conn.execute(sa.select(accounts.c.id, accounts.c.name, accounts.c.type, domains.c.uuid,
                                      domains.c.name.label("domain_name"), domains.c.path)
                            .join(domains, domains.c.id == accounts.c.domain_id).where(*where)
                            .order_by(accounts.c.id))
        return [Owner("account", a.id, a.name, a.uuid, a.domain_name, a.path, a.type) for a in rows], None
    return [owner(conn, caller, args.get("account", ""), args.get("domainid", ""),
                  args.get("projectid", ""))], None


def limits_for(conn: Connection, who: Owner) -> dict[limits.ResourceType, int]:
    if (who.kind == "account" and who.account_type == ROOT_ADMIN) or (who.kind == "domain" and
                                                                      who.domain_path == "/"):
        return dict.fromkeys(limits.ResourceType, -1)
    return limits.limits_of(conn, who.kind, who.id)


def counts_for(conn: Connection, who: Owner) -> dict[limits.ResourceType, int]:
    if who.kind == "account":
        return limits.account_counts(conn, who.id)
    return limits.domain_counts(conn, who.domain_path)


def update_limit(conn: Connection, caller: Caller, who: Owner, rtype: limits.ResourceType,
                 maximum: int | None) -> None:
    """Only an admin above the owner sets its limits: the root admin anyone's, a domain admin those of
    the accounts and domains strictly below its own domain (never its own domain's or account's)."""
    if not caller.manages_accounts:
        raise PermissionDenied("only admins set resource limits")
    if caller.is_domain_admin:
        own = who.domain_path == caller.domain_path and (who.kind == "domain" or who.id == caller.account_id)
        if own or not caller.sees_domain(who.domain_path):
            raise PermissionDenied("a domain admin sets the limits of what is below its own domain only")
    if who.kind == "domain" and who.domain_path == "/":
        raise InvalidParameter("the ROOT domain has no limits")
    if maximum is not None and maximum < -1:
        raise InvalidParameter("max is -1 (no limit) or more")
    limits.set_limit(conn, who.kind, who.id, rtype, maximum)


# --- the service ---------------------------------------------------------------------------------------


class Tenancy:
    def __init__(self, db: Database, vms: VirtualMachines, volumes: Volumes, networks: Networks) -> None:
        self.db = db
        self.vms, self.volumes, self.networks = vms, volumes, networks

    async def hashed(self, password: str, username: str, *, domain_id: int | None = None,
                     domain_uuid: str = "") -> str:
        """The hash of a new password, checked against the password policy of the user's domain."""
        policy = await self.db.read(password_policy, domain_id=domain_id, domain_uuid=domain_uuid)
        check_password(policy, password, username)
        return await trio.to_thread.run_sync(hash_password, password)

    async def change_password(self, caller: Caller, ident: str, password: str, current: str | None) -> str:
        """The new hash; a user changing its own password gives the current one (an admin of its
        account does not)."""
        row, stored = await self.db.read(password_of, caller, ident)
        if row.id == caller.user_id:  # one's own: prove it (a stolen session cannot take the account)
            if not current:
                raise InvalidParameter("give currentpassword to change your own password")
            if not await trio.to_thread.run_sync(verify_password, current, stored):
                raise InvalidParameter("the current password is wrong")
        return await self.hashed(password, row.username, domain_uuid=row.domain_uuid)

    # --- domains ---------------------------------------------------------------------------------------

    async def domain_chain(self, caller: Caller, domain_uuid: str = "") -> list[str]:
        """The uuids of a domain in the caller's reach (default: the caller's) and of those above it."""
        def read(conn: Connection) -> list[str]:
            path = domain_in_reach(conn, caller, domain_uuid).path if domain_uuid else caller.domain_path
            return domain_rows.chain(conn, path)

        return await self.db.read(read)

    async def create_domain(self, caller: Caller, name: str, parent_uuid: str,
                            domain_uuid: str = "") -> domain_rows.DomainView:
        return await self.db.run(domain_rows.create, caller, name, parent_uuid, domain_uuid)

    async def update_domain(self, caller: Caller, ident: str, name: str) -> domain_rows.DomainView:
        return await self.db.run(domain_rows.update, caller, ident, name)

    async def deletable_domain(self, caller: Caller, ident: str, cleanup: bool) -> tuple[Row, list[int]]:
        return await self.db.read(domain_rows.deletable, caller, ident, cleanup)

    async def delete_domain(self, caller: Caller, domain_id: int, account_ids: list[int]) -> None:
        """Delete its accounts (everything they own) and then the domain and its subdomains."""
        for account_id in account_ids:
            await self.delete_account(caller, account_id)
        await self.db.run(domain_rows.remove_tree, domain_id)

    async def domain_children(self, caller: Caller, args: Any) -> tuple[list[domain_rows.DomainView], int]:
        return await self.db.read(domain_rows.children, caller, args)

    # --- accounts --------------------------------------------------------------------------------------

    async def account(self, caller: Caller, ident: str, name: str, domain_uuid: str) -> Row:
        """An account in the caller's reach, by id or by name (and domain)."""
        if ident:
            return await self.db.read(_account_in_reach, caller, ident)
        if not name:
            raise InvalidParameter("give id, or account (with domainid)")
        return await self.db.read(account_named, caller, name, domain_uuid)

    async def rename_account(self, caller: Caller, ident: str, new_name: str) -> Row:
        return await self.db.run(update_account, caller, ident, new_name)

    async def set_account_state(self, caller: Caller, ident: str, state: str) -> None:
        """Enable, disable (its running VMs are stopped) or lock an account."""
        _row, running = await self.db.run(set_account_state, caller, ident, state)
        for vm_id in running:
            try:
                await self.vms.stop(vm_id)
            except CumuloError as e:
                log.warning("disabling an account: VM %d not stopped: %s", vm_id, e)

    async def deletable_account(self, caller: Caller, ident: str) -> Row:
        return await self.db.read(deletable_account, caller, ident)

    async def delete_account(self, caller: Caller, account_id: int) -> dict[str, int]:
        """Its resources first (see ``delete_account_resources``), then its users and itself."""
        gone = await self.delete_account_resources(caller, account_id)
        await self.db.run(remove_account, account_id)
        return gone

    # --- users -----------------------------------------------------------------------------------------

    async def create_user(self, caller: Caller, account_name: str, domain_uuid: str, spec: UserSpec) -> Row:
        account = await self.db.read(account_named, caller, account_name, domain_uuid)
        password_hash = await self.hashed(spec.password, spec.username, domain_id=account.domain_id)
        return await self.db.run(create_user, caller, account, spec, password_hash)

    async def update_user(self, caller: Caller, ident: str, args: dict[str, Any]) -> Row:
        values: dict[str, Any] = {}
        for param, column in (("username", "username"), ("email", "email"), ("firstname", "first_name"),
                              ("lastname", "last_name")):
            if param in args:
                values[column] = str(args[param]).strip()
        if values.get("username") == "":
            raise InvalidParameter("username cannot be empty")
        if "timezone" in args:
            values["timezone"] = check_timezone(args["timezone"])
        if "password" in args:
            values["password"] = await self.change_password(caller, ident, args["password"],
                                                            args.get("currentpassword"))
        return await self.db.run(update_user, caller, ident, values)

    async def set_user_state(self, caller: Caller, ident: str, state: str) -> Row:
        return await self.db.run(set_user_state, caller, ident, state)

    async def user(self, caller: Caller, ident: str) -> Row:
        return await self.db.read(lambda conn: conn.execute(_user_query().where(users.c.uuid == ident)).one())

    async def user_in_reach(self, caller: Caller, ident: str) -> Row:
        """A user the caller may manage (not itself): refused as CloudStack refuses it otherwise."""
        row = await self.db.read(_user_in_reach, caller, ident)
        if row.id == caller.user_id:
            raise PermissionDenied("a user cannot disable, lock or delete itself")
        return row

    async def move_user(self, caller: Caller, ident: str, account_uuid: str, account_name: str) -> Row:
        def work(conn: Connection) -> Row:
            if account_uuid:
                target = _account_in_reach(conn, caller, account_uuid)
            else:
                domain_id = conn.scalar(sa.select(accounts.c.domain_id).join(users, users.c.account_id ==
                                                                              accounts.c.id)
                                        .where(users.c.uuid == ident))
                uuid = conn.scalar(sa.select(accounts.c.uuid).where(
                    accounts.c.name == account_name, accounts.c.domain_id == domain_id,
                    accounts.c.removed.is_(None)))
                if uuid is None:
                    raise InvalidParameter(f"unable to find account {account_name!r} in the user's domain")
                target = _account_in_reach(conn, caller, uuid)
            return move_user(conn, caller, ident, target)

        return await self.db.run(work)

    # --- limits ----------------------------------------------------------------------------------------

    async def resource_limits_of(self, caller: Caller, args: Any
                                 ) -> tuple[list[tuple[Owner, dict[limits.ResourceType, int]]],
                                            limits.ResourceType | None]:
        """listResourceLimits: each owner ``limit_owners`` finds with its limits, and the one type an
        ``id`` names."""
        def work(conn: Connection) -> tuple[list[tuple[Owner, dict[limits.ResourceType, int]]],
                                            limits.ResourceType | None]:
            owners, rtype = limit_owners(conn, caller, args)
            return [(who, limits_for(conn, who)) for who in owners], rtype

        return await self.db.read(work)

    async def set_limit(self, caller: Caller, account_name: str, domain_uuid: str, rtype: limits.ResourceType,
                        maximum: int | None,
                        project_uuid: str = "") -> tuple[Owner, dict[limits.ResourceType, int]]:
        def work(conn: Connection) -> tuple[Owner, dict[limits.ResourceType, int]]:
            who = owner(conn, caller, account_name, domain_uuid, project_uuid)
            update_limit(conn, caller, who, rtype, maximum)
            return who, limits_for(conn, who)

        return await self.db.run(work)

    async def resource_counts(self, caller: Caller, account_name: str, domain_uuid: str,
                              project_uuid: str = "") -> tuple[Owner, dict[limits.ResourceType, int]]:
        def work(conn: Connection) -> tuple[Owner, dict[limits.ResourceType, int]]:
            who = owner(conn, caller, account_name, domain_uuid, project_uuid)
            return who, counts_for(conn, who)

        return await self.db.read(work)

    async def delete_account_resources(self, caller: Caller, account_id: int) -> dict[str, int]:
        """Destroy and expunge the account's VMs, then delete its data volumes and isolated networks;
        what went. Run as the account's deletion job."""
        vm_ids, _vols, _nets = await self.db.read(account_resources, account_id)
        for vm_id in vm_ids:
            state = await self.db.read(_vm_state, vm_id)
            try:
                if state == "Destroyed":  # (waiting for the expunge delay)
                    await self.vms.expunge(vm_id)
                elif state != "Expunging":
                    await self.vms.destroy(_system(caller), vm_id, expunge=True)
            except CumuloError as e:
                log.warning("deleting an account: VM %d not destroyed: %s", vm_id, e)
                raise
        _vms, vol_ids, net_ids = await self.db.read(account_resources, account_id)
        for volume_id in vol_ids:
            await self.volumes.delete(await self.volumes.get_row(volume_id))
        for network_id in net_ids:
            await self.networks.delete(network_id)
        left = await self.db.read(account_resources, account_id)
        if left[0]:
            raise CumuloError(f"{len(left[0])} VMs of the account are still there; try again")
        return {"vms": len(vm_ids), "volumes": len(vol_ids), "networks": len(net_ids)}


def _vm_state(conn: Connection, vm_id: int) -> str | None:
    state = conn.scalar(sa.select(vms.c.state).where(vms.c.id == vm_id))
    return None if state is None else str(state)


def _system(caller: Caller) -> Caller:
    """The caller as root admin, for the cleanup a deletion it was allowed to make implies (expunging
    at once)."""
    return Caller(caller.user_id, caller.account_id, ROOT_ADMIN, "", caller.username, caller.user_uuid,
                  caller.account_name, caller.account_uuid, caller.domain_id, caller.domain_uuid,
                  caller.domain_name, caller.domain_path)

