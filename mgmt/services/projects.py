"""Projects: resources owned together by several accounts.

A project owns what is made in it through an account of its own (type ``PROJECT``, named
``PrjAcct-<name>-<id>``, without users), so everything that checks ownership, counts and limits works on
it unchanged: a create given ``projectid`` acts for that account (``queries.acting_for``), a list given
``projectid`` shows that account's items (``queries.owner_filter``), and a member acts on them
(``queries.owns``). Members are accounts, or single users of them (``addUserToProject``), of the project's
domain, each an ``Admin`` or a ``Regular`` member. Admin members (and the root admin, and domain admins
above the project) manage the project: its name, members and state; regular members use it.

Invitations are off (CloudStack's ``project.invite.required`` false): an account or user is added at once.
Suspending a project stops its running VMs and refuses new resources in it until it is activated.
Deleting it (a job) deletes what it owns first, as deleting an account does; without ``cleanup`` a project
that still owns VMs, volumes or networks is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import limits, settings
from ..db.database import inserted_id
from ..db.schema import accounts, domains, project_accounts, projects, users, vms
from ..errors import CumuloError, InvalidParameter, PermissionDenied
from ..limits import ResourceType
from .caller import PROJECT, Caller
from .crud import Filters, Row
from .queries import (
    domain_in_reach,
    fetch,
    keyword,
    matching,
    member_of,
    new_uuid,
    now,
    project_in_reach,
    projects_in_reach,
    subtree,
)
from .tags import tagged
from .tenancy import account_resources, remove_account

if TYPE_CHECKING:
    from ..db.database import Database
    from .tenancy import Tenancy

log = logging.getLogger(__name__)

ROLES = ("Admin", "Regular")
STATES = ("Active", "Suspended")


@dataclass(frozen=True)
class Project:
    row: Row  # projects, with domain_uuid, domain_name, domain_path, account_name (its own account's)
    members: list[Row]  # project_accounts, with account_name, account_uuid, username, user_uuid
    limits: dict[ResourceType, int]
    counts: dict[ResourceType, int]
    vms_running: int = 0
    vms_stopped: int = 0

    @property
    def admins(self) -> list[Row]:
        return [m for m in self.members if m.role == "Admin"]


def _query() -> sa.Select[Any]:
    return (sa.select(projects, domains.c.uuid.label("domain_uuid"), domains.c.name.label("domain_name"),
                      domains.c.path.label("domain_path"), accounts.c.name.label("account_name"))
            .join(domains, domains.c.id == projects.c.domain_id)
            .join(accounts, accounts.c.id == projects.c.account_id))


def _members_query() -> sa.Select[Any]:
    return (sa.select(project_accounts, accounts.c.name.label("account_name"),
                      accounts.c.uuid.label("account_uuid"), users.c.username,
                      users.c.uuid.label("user_uuid"),
                      projects.c.uuid.label("project_uuid"), projects.c.name.label("project_name"),
                      domains.c.uuid.label("domain_uuid"), domains.c.name.label("domain_name"))
            .join(accounts, accounts.c.id == project_accounts.c.account_id)
            .join(projects, projects.c.id == project_accounts.c.project_id)
            .join(domains, domains.c.id == projects.c.domain_id)
            .outerjoin(users, users.c.id == project_accounts.c.user_id))


def _views(conn: Connection, rows: list[Row], *, details: bool = True) -> list[Project]:
    if not rows:
        return []
    members: dict[int, list[Row]] = {r.id: [] for r in rows}
    for m in conn.execute(_members_query().where(project_accounts.c.project_id.in_(members))
                          .order_by(project_accounts.c.id)):
        members[m.project_id].append(m)
    out = []
    for r in rows:
        if details:
            by_state = sa.select(vms.c.state, sa.func.count()).where(
                vms.c.account_id == r.account_id, vms.c.removed.is_(None)).group_by(vms.c.state)
            states = {state: int(n) for state, n in conn.execute(by_state)}
            out.append(Project(r, members[r.id], limits.limits_of(conn, "account", r.account_id),
                               limits.account_counts(conn, r.account_id), int(states.get("Running", 0)),
                               int(states.get("Stopped", 0))))
        else:
            out.append(Project(r, members[r.id], {}, {}))
    return out


def one(conn: Connection, project_id: int) -> Project:
    return _views(conn, [conn.execute(_query().where(projects.c.id == project_id)).one()])[0]


# --- who may do what -------------------------------------------------------------------------------------


def _role_of(conn: Connection, caller: Caller, project_id: int) -> str | None:
    """The caller's role in the project (Admin over Regular when both), or None."""
    roles = set(conn.scalars(sa.select(project_accounts.c.role).where(
        project_accounts.c.project_id == project_id, project_accounts.c.account_id == caller.account_id,
        sa.or_(project_accounts.c.user_id.is_(None), project_accounts.c.user_id == caller.user_id))))
    return "Admin" if "Admin" in roles else ("Regular" if roles else None)


def managed(conn: Connection, caller: Caller, ident: str) -> Row:
    """A project the caller may manage: the root admin; a domain admin above it; its Admin members."""
    row = project_in_reach(conn, caller, ident)
    if caller.is_admin:
        return row
    if caller.is_domain_admin:
        path = conn.scalar(sa.select(domains.c.path).where(domains.c.id == row.domain_id))
        if path is not None and caller.sees_domain(path):
            return row
    if _role_of(conn, caller, row.id) != "Admin":
        raise PermissionDenied(f"only the project's admins manage project {row.name}")
    return row


# --- creating, changing, listing -------------------------------------------------------------------------


def _check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidParameter("a project's name is 1 to 200 characters")
    return name


def _member_account(conn: Connection, caller: Caller, project: Row, *, name: str = "",
                    ident: str = "") -> Row:
    """A live, non-project account of the project's domain, by name or uuid."""
    where = [accounts.c.removed.is_(None), accounts.c.type != PROJECT]
    where.append(accounts.c.uuid == ident if ident else accounts.c.name == name)
    if not ident:
        where.append(accounts.c.domain_id == project.domain_id)
    row = conn.execute(sa.select(accounts).where(*where)).first()
    if row is None or row.domain_id != project.domain_id:  # (one answer: names do not leak)
        raise InvalidParameter(f"unable to find account {ident or name!r} in the project's domain")
    return row


def _user(conn: Connection, *, ident: str = "", username: str = "") -> Row:
    which = users.c.uuid == ident if ident else users.c.username == username
    row = conn.execute(sa.select(users).where(which, users.c.removed.is_(None))).first()
    if row is None:
        raise InvalidParameter(f"unable to find user {ident or username!r}")
    return row


@dataclass(frozen=True)
class ProjectSpec:
    name: str
    display_text: str = ""
    account_name: str = ""  # the owner (admins): an account by name, in domain_uuid (default: the caller's)
    account_uuid: str = ""  # ... or by id
    domain_uuid: str = ""
    user_uuid: str = ""  # the owner is this user of the account alone (a user-level admin)


def create(conn: Connection, caller: Caller, spec: ProjectSpec) -> Project:
    if not caller.manages_accounts and not settings.prefixed(conn, "allow.user.create.projects").get(
            "allow.user.create.projects", True):
        raise PermissionDenied("users may not create projects here (allow.user.create.projects is false)")
    name = _check_name(spec.name)
    if spec.account_uuid or spec.account_name:
        if spec.account_uuid:
            owner = conn.execute(sa.select(accounts).where(accounts.c.uuid == spec.account_uuid,
                                                           accounts.c.removed.is_(None))).first()
        else:
            domain_id = (domain_in_reach(conn, caller, spec.domain_uuid).id if spec.domain_uuid
                         else caller.domain_id)
            owner = conn.execute(sa.select(accounts).where(accounts.c.name == spec.account_name,
                                                           accounts.c.domain_id == domain_id,
                                                           accounts.c.removed.is_(None))).first()
        path = (conn.scalar(sa.select(domains.c.path).where(domains.c.id == owner.domain_id))
                if owner is not None else None)
        if owner is None or owner.type == PROJECT or path is None or (
                owner.id != caller.account_id and not (caller.manages_accounts and caller.sees_domain(path))):
            raise PermissionDenied(
                f"unable to find or access account {spec.account_uuid or spec.account_name}")
    else:
        owner = conn.execute(sa.select(accounts).where(accounts.c.id == caller.account_id)).one()
    user_id = None
    if spec.user_uuid:
        user = _user(conn, ident=spec.user_uuid)
        if user.account_id != owner.id:
            raise InvalidParameter("userid must be a user of the owning account")
        user_id = user.id
    if conn.scalar(sa.select(projects.c.id).where(projects.c.name == name,
                                                  projects.c.domain_id == owner.domain_id,
                                                  projects.c.removed.is_(None))) is not None:
        raise InvalidParameter(f"a project named {name!r} exists already in that domain")
    stamp, project_uuid = now(), new_uuid()
    account_id = inserted_id(conn.execute(accounts.insert().values(
        uuid=new_uuid(), name=f"PrjAcct-{name}-{project_uuid[:8]}", domain_id=owner.domain_id, type=PROJECT,
        state="enabled", created=stamp)))
    project_id = inserted_id(conn.execute(projects.insert().values(
        uuid=project_uuid, name=name, display_text=spec.display_text.strip() or name,
        domain_id=owner.domain_id, account_id=account_id, state="Active", created=stamp)))
    conn.execute(project_accounts.insert().values(project_id=project_id, account_id=owner.id, user_id=user_id,
                                                  role="Admin", created=stamp))
    limits.verify(conn, owner.id, [limits.ResourceType.PROJECT])  # (rolls the project back when over)
    return one(conn, project_id)


def update(conn: Connection, caller: Caller, ident: str, args: Filters) -> tuple[Project, list[str]]:
    """Rename it, describe it, or change a member's role: ``account`` (or ``userid``) becomes ``roletype``
    (default Admin); with ``swapowner`` (default true) a new Admin takes the place of the others, who
    become Regular members. At least one Admin stays."""
    row = managed(conn, caller, ident)
    changed: list[str] = []
    values: dict[str, Any] = {}
    if "name" in args:
        name = _check_name(args["name"])
        if name != row.name and conn.scalar(sa.select(projects.c.id).where(
                projects.c.name == name, projects.c.domain_id == row.domain_id,
                projects.c.removed.is_(None))) is not None:
            raise InvalidParameter(f"a project named {name!r} exists already in that domain")
        values["name"] = name
    if "displaytext" in args:
        values["display_text"] = str(args["displaytext"]).strip()
    if values:
        conn.execute(projects.update().where(projects.c.id == row.id).values(**values))
        changed += list(values)
    if "account" in args or "userid" in args:
        role = args.get("roletype", "Admin")
        if role not in ROLES:
            raise InvalidParameter("roletype is Admin or Regular")
        member = _membership(conn, row, args.get("account", ""), args.get("userid", ""))
        if role == "Admin" and args.get("swapowner", True):
            conn.execute(project_accounts.update().where(project_accounts.c.project_id == row.id,
                                                         project_accounts.c.id != member.id)
                         .values(role="Regular"))
        conn.execute(project_accounts.update().where(project_accounts.c.id == member.id).values(role=role))
        _keep_an_admin(conn, row)
        changed.append(f"{member.account_name if member.user_id is None else member.username}: {role}")
    elif "roletype" in args or "swapowner" in args:
        raise InvalidParameter("roletype and swapowner go with account or userid (the member to change)")
    return one(conn, row.id), changed


def _membership(conn: Connection, project: Row, account_name: str, user_uuid: str) -> Row:
    where = [project_accounts.c.project_id == project.id]
    if user_uuid:
        where.append(users.c.uuid == user_uuid)
    else:
        where += [accounts.c.name == account_name, project_accounts.c.user_id.is_(None)]
    row = conn.execute(_members_query().where(*where)).first()
    if row is None:
        raise InvalidParameter(f"{user_uuid or account_name!r} is not a member of project {project.name}")
    return row


def _keep_an_admin(conn: Connection, project: Row) -> None:
    if conn.scalar(sa.select(sa.func.count()).select_from(project_accounts).where(
            project_accounts.c.project_id == project.id, project_accounts.c.role == "Admin")) == 0:
        raise InvalidParameter(f"project {project.name} needs an Admin member: make another one Admin first")


def listing(conn: Connection, caller: Caller, args: Filters) -> tuple[list[Project], int]:
    """The projects in the caller's reach. Without ``listall``, ``id`` or ``domainid``, an admin sees those
    it is a member of, as everyone else does."""
    where = projects_in_reach(caller)
    if caller.manages_accounts and not (args.get("listall") or "id" in args or "domainid" in args):
        where.append(projects.c.id.in_(member_of(caller)))
    if "domainid" in args:
        domain = domain_in_reach(conn, caller, args["domainid"])
        where.append(projects.c.domain_id.in_(subtree(domain.path)) if args.get("isrecursive")
                     else projects.c.domain_id == domain.id)
    if "account" in args:  # the projects the account is a member of
        where.append(projects.c.id.in_(sa.select(project_accounts.c.project_id).join(
            accounts, accounts.c.id == project_accounts.c.account_id)
            .where(accounts.c.name == args["account"])))
    if "username" in args:  # ... or the user, alone or through its account
        user = (sa.select(users.c.id, users.c.account_id).where(users.c.username == args["username"])
                .subquery())
        where.append(projects.c.id.in_(sa.select(project_accounts.c.project_id).join(
            user, user.c.account_id == project_accounts.c.account_id).where(
            sa.or_(project_accounts.c.user_id.is_(None), project_accounts.c.user_id == user.c.id))))
    if "state" in args and args["state"] not in STATES:
        raise InvalidParameter(f"state is one of {', '.join(STATES)}")
    where += [*keyword(projects.c.name, args), *tagged(args, "Project", projects.c.uuid)]
    where += matching(args, {"id": projects.c.uuid, "name": projects.c.name,
                             "displaytext": projects.c.display_text, "state": projects.c.state})
    rows, total = fetch(conn, _query().where(*where), projects.c.id, args)
    details = {d.lower() for d in args.get("details", ["all"])}
    return _views(conn, rows, details=bool(details - {"min"})), total


# --- members ---------------------------------------------------------------------------------------------


def add_member(conn: Connection, caller: Caller, ident: str, *, account_name: str = "", username: str = "",
               role: str = "Regular") -> tuple[Row, str]:
    """Add an account (all its users) or one user of it; the project and who was added."""
    row = managed(conn, caller, ident)
    if role not in ROLES:
        raise InvalidParameter("roletype is Admin or Regular")
    user_id = None
    if username:
        user = conn.execute(sa.select(users).join(accounts, accounts.c.id == users.c.account_id).where(
            users.c.username == username, users.c.removed.is_(None), accounts.c.domain_id == row.domain_id,
            accounts.c.type != PROJECT)).first()
        if user is None:  # (the same answer for a user of another domain: names do not leak)
            raise InvalidParameter(f"unable to find user {username!r} in the project's domain")
        account = _member_account(conn, caller, row, ident=conn.scalar(
            sa.select(accounts.c.uuid).where(accounts.c.id == user.account_id)) or "")
        user_id, who = user.id, f"user {username}"
    elif account_name:
        account = _member_account(conn, caller, row, name=account_name)
        who = f"account {account_name}"
    else:
        raise InvalidParameter("give account (invitations by e-mail are off: project.invite.required is "
                               "false)")
    same = [project_accounts.c.project_id == row.id, project_accounts.c.account_id == account.id]
    same.append(project_accounts.c.user_id == user_id if user_id else project_accounts.c.user_id.is_(None))
    if conn.scalar(sa.select(project_accounts.c.id).where(*same)) is not None:
        raise InvalidParameter(f"{who} is a member of project {row.name} already")
    conn.execute(project_accounts.insert().values(project_id=row.id, account_id=account.id, user_id=user_id,
                                                  role=role, created=now()))
    return row, who


def remove_member(conn: Connection, caller: Caller, ident: str, *, account_name: str = "",
                  user_uuid: str = "") -> tuple[Row, str]:
    row = managed(conn, caller, ident)
    member = _membership(conn, row, account_name, user_uuid)
    conn.execute(project_accounts.delete().where(project_accounts.c.id == member.id))
    _keep_an_admin(conn, row)
    return row, (f"user {member.username}" if member.user_id else f"account {member.account_name}")


def members(conn: Connection, caller: Caller, args: Filters) -> tuple[list[Row], int]:
    """listProjectAccounts: any member (or an admin above the project) sees its members."""
    row = project_in_reach(conn, caller, args["projectid"])
    where = [project_accounts.c.project_id == row.id, *keyword(accounts.c.name, args)]
    if "role" in args:
        if args["role"] not in ROLES:
            raise InvalidParameter("role is Admin or Regular")
        where.append(project_accounts.c.role == args["role"])
    where += matching(args, {"account": accounts.c.name, "userid": users.c.uuid})
    return fetch(conn, _members_query().where(*where), project_accounts.c.id, args)


# --- state -----------------------------------------------------------------------------------------------


def set_state(conn: Connection, caller: Caller, ident: str, state: str) -> tuple[Row, list[int]]:
    """Suspend or activate; the project and (suspending) its running VMs' ids, to stop."""
    row = managed(conn, caller, ident)
    conn.execute(projects.update().where(projects.c.id == row.id).values(state=state))
    running = [] if state == "Active" else list(conn.scalars(sa.select(vms.c.id).where(
        vms.c.account_id == row.account_id, vms.c.removed.is_(None), vms.c.state == "Running")))
    return row, running


def deletable(conn: Connection, caller: Caller, ident: str, cleanup: bool) -> Row:
    row = managed(conn, caller, ident)
    if not cleanup:
        vm_ids, vol_ids, net_ids = account_resources(conn, row.account_id)
        if vm_ids or vol_ids or net_ids:
            raise InvalidParameter(f"project {row.name} still has {len(vm_ids)} VMs, {len(vol_ids)} volumes "
                                   f"and {len(net_ids)} networks: delete them, or pass cleanup=true")
    return row


def _remove(conn: Connection, project_id: int, account_id: int) -> None:
    conn.execute(project_accounts.delete().where(project_accounts.c.project_id == project_id))
    remove_account(conn, account_id)  # (the project is marked removed with its account)


class Projects:
    def __init__(self, db: Database, tenancy: Tenancy) -> None:
        self.db = db
        self.tenancy = tenancy

    async def create(self, caller: Caller, spec: ProjectSpec) -> Project:
        return await self.db.run(create, caller, spec)

    async def update(self, caller: Caller, ident: str, args: Filters) -> tuple[Project, list[str]]:
        return await self.db.run(update, caller, ident, args)

    async def get(self, caller: Caller, ident: str) -> Project:
        return await self.db.read(lambda conn: one(conn, project_in_reach(conn, caller, ident).id))

    async def listing(self, caller: Caller, args: Filters) -> tuple[list[Project], int]:
        return await self.db.read(listing, caller, args)

    async def managed(self, caller: Caller, ident: str) -> Row:
        return await self.db.read(managed, caller, ident)

    async def add_member(self, caller: Caller, ident: str, **kwargs: Any) -> tuple[Row, str]:
        return await self.db.run(add_member, caller, ident, **kwargs)

    async def remove_member(self, caller: Caller, ident: str, **kwargs: Any) -> tuple[Row, str]:
        return await self.db.run(remove_member, caller, ident, **kwargs)

    async def members(self, caller: Caller, args: Filters) -> tuple[list[Row], int]:
        return await self.db.read(members, caller, args)

    async def set_state(self, caller: Caller, ident: str, state: str) -> Row:
        """Activate, or suspend (its running VMs are stopped)."""
        row, running = await self.db.run(set_state, caller, ident, state)
        for vm_id in running:
            try:
                await self.tenancy.vms.stop(vm_id)
            except CumuloError as e:
                log.warning("suspending project %s: VM %d not stopped: %s", row.name, vm_id, e)
        return row

    async def deletable(self, caller: Caller, ident: str, cleanup: bool) -> Row:
        return await self.db.read(deletable, caller, ident, cleanup)

    async def delete(self, caller: Caller, row: Row) -> dict[str, int]:
        """What it owns first (as an account's deletion does), then its members and itself."""
        gone = await self.tenancy.delete_account_resources(caller, row.account_id)
        await self.db.run(_remove, row.id, row.account_id)
        return gone
