"""Projects: createProject, listProjects, updateProject, deleteProject, activateProject, suspendProject,
and their members: addAccountToProject, addUserToProject, deleteAccountFromProject,
deleteUserFromProject, listProjectAccounts. What a project owns is made and listed with ``projectid``
on the resources' own commands (see ``services/projects.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import InvalidParameter
from ...limits import ResourceType
from ...services.domains import cs_path
from ...services.projects import Project, ProjectSpec
from ..registry import Param, command, refuse
from .common import ICON, PAGING, date, listing, success
from .tags import TAGS, with_tags

if TYPE_CHECKING:
    from ..app import Context

PROJECT_ROLES = ("project roles (custom permissions per member) are not supported yet: members are Admin or "
                 "Regular")
# listProjects' limit fields: CloudStack's prefix for each resource type
_LIMIT_FIELDS = {ResourceType.INSTANCE: "vm", ResourceType.PUBLIC_IP: "ip", ResourceType.VOLUME: "volume",
                 ResourceType.SNAPSHOT: "snapshot", ResourceType.TEMPLATE: "template",
                 ResourceType.NETWORK: "network", ResourceType.VPC: "vpc", ResourceType.CPU: "cpu",
                 ResourceType.MEMORY: "memory", ResourceType.PRIMARY_STORAGE: "primarystorage",
                 ResourceType.SECONDARY_STORAGE: "secondarystorage"}
_GIB = 2**30


def project_view(p: Project) -> dict[str, Any]:
    r = p.row
    view: dict[str, Any] = {
        "id": r.uuid,
        "name": r.name,
        "displaytext": r.display_text,
        "domainid": r.domain_uuid,
        "domain": r.domain_name,
        "domainpath": cs_path(r.domain_path),
        "state": r.state,
        "created": date(r.created),
        "projectaccountname": r.account_name,
        "owner": [{"account": m.account_name} if m.user_id is None else
                  {"account": m.account_name, "user": m.username, "userid": m.user_uuid} for m in p.admins],
        "tags": [],
    }
    if p.admins:
        view["account"] = p.admins[0].account_name
    if p.limits:
        for rtype, prefix in _LIMIT_FIELDS.items():
            limit, total = p.limits[rtype], p.counts[rtype]
            if rtype == ResourceType.PRIMARY_STORAGE:
                total = -(-total // _GIB)  # (GiB, as the limit is)
            view[f"{prefix}limit"] = "Unlimited" if limit == -1 else str(limit)
            view[f"{prefix}total"] = total
            view[f"{prefix}available"] = "Unlimited" if limit == -1 else str(max(limit - total, 0))
        view.update(vmrunning=p.vms_running, vmstopped=p.vms_stopped)
    return view


def member_view(m: Any) -> dict[str, Any]:
    view = {"projectid": m.project_uuid, "project": m.project_name, "account": m.account_name,
            "accountid": m.account_uuid, "role": m.role, "domainid": m.domain_uuid, "domain": m.domain_name}
    if m.user_id is not None:
        view.update(userid=m.user_uuid, username=m.username)
    return view


@command(
    "createProject",
    "Creates a project: resources made with its projectid belong to it and to none of its members. The "
    "caller's account (or the one named, by admins) is its first Admin member.",
    Param("name", required=True, description="its name (unique in its domain)"),
    Param("displaytext", description="its description (default: the name)"),
    Param("account", description="the owning account (admins; with domainid), its first Admin member"),
    Param("domainid", "uuid", description="that account's domain (the project's domain)"),
    Param("accountid", "uuid", description="the owning account, by id (instead of account)"),
    Param("userid", "uuid", description="the owner is this user of the owning account alone"),
    is_async=True,
    event="PROJECT.CREATE",
    response="project",
)
async def create_project(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    spec = ProjectSpec(args["name"], args.get("displaytext", ""), args.get("account", ""),
                       args.get("accountid", ""), args.get("domainid", ""), args.get("userid", ""))
    project = await ctx.services.projects.create(ctx.caller, spec)

    async def work() -> dict[str, Any]:
        return {"project": project_view(project)}

    job = await ctx.submit(work, description=f"created project {project.row.name}", instance_type="Project",
                           instance_uuid=project.row.uuid)
    return {"id": project.row.uuid, "jobid": job}


@command(
    "listProjects",
    "Lists projects: those the caller is a member of (admins: with listall, every one in their reach).",
    Param("id", "uuid", description="the project's id"),
    Param("name", description="the project's name"),
    Param("displaytext", description="projects with this description"),
    Param("state", description="Active or Suspended"),
    Param("account", description="projects this account is a member of"),
    Param("username", description="projects this user is a member of (alone or through its account)"),
    Param("domainid", "uuid", description="projects of this domain"),
    Param("isrecursive", "boolean", description="with domainid: its subdomains' too"),
    Param("listall", "boolean", description="admins: every project in their reach, not only their own"),
    Param("details", "list", description="all (default: with its limits and counts) or min (without)"),
    TAGS,
    ICON,
    *PAGING,
    response="project",
)
async def list_projects(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if {d.lower() for d in args.get("details", [])} - {"all", "min"}:
        raise InvalidParameter("details must be all or min")
    found, total = await ctx.services.projects.listing(ctx.caller, args)
    return await with_tags(ctx, listing("project", [project_view(p) for p in found], total), "project",
                           "Project")


async def _project_job(ctx: Context, ident: str, what: str, work: Any) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        await work()
        return {"project": project_view(await ctx.services.projects.get(ctx.caller, ident))}

    job = await ctx.submit(run, description=f"{what} project {ident}", instance_type="Project",
                           instance_uuid=ident)
    return {"jobid": job}


@command(
    "updateProject",
    "Renames or describes a project, or changes a member's role: account (or userid) becomes roletype "
    "(default Admin); with swapowner (default true) a new Admin takes the other Admins' place, who become "
    "Regular members. A project keeps at least one Admin.",
    Param("id", "uuid", required=True, description="the project"),
    Param("name", description="its new name"),
    Param("displaytext", description="its new description"),
    Param("account", description="a member account whose role changes"),
    Param("userid", "uuid", description="a member user whose role changes"),
    Param("roletype", description="Admin (default) or Regular"),
    Param("swapowner", "boolean", description="with roletype Admin: the other Admins become Regular "
                                              "(default true)"),
    is_async=True,
    event="PROJECT.UPDATE",
    response="project",
)
async def update_project(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    project, changed = await ctx.services.projects.update(ctx.caller, args["id"], args)

    async def work() -> dict[str, Any]:
        return {"project": project_view(project)}

    job = await ctx.submit(work, description=f"updated project {project.row.name}: "
                           f"{', '.join(changed) or 'nothing'}", instance_type="Project",
                           instance_uuid=project.row.uuid)
    return {"jobid": job}


@command(
    "deleteProject",
    "Deletes a project. With cleanup, what it owns goes first (VMs destroyed and expunged, volumes and "
    "networks deleted); without, a project that still owns any is refused.",
    Param("id", "uuid", required=True, description="the project"),
    Param("cleanup", "boolean", description="delete what it owns too"),
    is_async=True,
    event="PROJECT.DELETE",
    response="success",
)
async def delete_project(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    row = await ctx.services.projects.deletable(ctx.caller, args["id"], bool(args.get("cleanup")))

    async def work() -> dict[str, Any]:
        await ctx.services.projects.delete(ctx.caller, row)
        return success()

    job = await ctx.submit(work, description=f"deleted project {row.name}", instance_type="Project",
                           instance_id=row.id, instance_uuid=row.uuid)
    return {"jobid": job}


@command(
    "suspendProject",
    "Suspends a project: its running VMs are stopped and nothing new can be made in it.",
    Param("id", "uuid", required=True, description="the project"),
    is_async=True,
    event="PROJECT.SUSPEND",
    response="project",
)
async def suspend_project(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    await ctx.services.projects.managed(ctx.caller, args["id"])
    return await _project_job(ctx, args["id"], "suspended",
                              lambda: ctx.services.projects.set_state(ctx.caller, args["id"], "Suspended"))


@command(
    "activateProject",
    "Activates a suspended project.",
    Param("id", "uuid", required=True, description="the project"),
    is_async=True,
    event="PROJECT.ACTIVATE",
    response="project",
)
async def activate_project(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    await ctx.services.projects.managed(ctx.caller, args["id"])
    return await _project_job(ctx, args["id"], "activated",
                              lambda: ctx.services.projects.set_state(ctx.caller, args["id"], "Active"))


# --- members ---------------------------------------------------------------------------------------------


async def _member_job(ctx: Context, what: str, change: Any) -> dict[str, Any]:
    row, who = await change

    async def work() -> dict[str, Any]:
        return success(f"{what} {who}")

    job = await ctx.submit(work, description=f"{what} {who}, project {row.name}", instance_type="Project",
                           instance_uuid=row.uuid)
    return {"jobid": job}


_INVITE = Param("email", description="for invitations by e-mail; they are off here (project.invite.required "
                                     "is false): the account or user is added at once")


@command(
    "addAccountToProject",
    "Adds an account of the project's domain to the project: its users use the project's resources.",
    Param("projectid", "uuid", required=True, description="the project"),
    Param("account", description="the account, by name"),
    Param("roletype", description="Regular (default) or Admin"),
    _INVITE,
    *refuse(PROJECT_ROLES, "projectroleid", applies=True),
    is_async=True,
    event="PROJECT.ACCOUNT.ADD",
    response="success",
)
async def add_account_to_project(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _member_job(ctx, "added", ctx.services.projects.add_member(
        ctx.caller, args["projectid"], account_name=args.get("account", ""),
        role=args.get("roletype", "Regular")))


@command(
    "addUserToProject",
    "Adds one user (of an account of the project's domain) to the project.",
    Param("projectid", "uuid", required=True, description="the project"),
    Param("username", required=True, description="the user"),
    Param("roletype", description="Regular (default) or Admin"),
    _INVITE,
    *refuse(PROJECT_ROLES, "projectroleid", applies=True),
    is_async=True,
    event="PROJECT.USER.ADD",
    response="success",
)
async def add_user_to_project(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _member_job(ctx, "added", ctx.services.projects.add_member(
        ctx.caller, args["projectid"], username=args["username"], role=args.get("roletype", "Regular")))


@command(
    "deleteAccountFromProject",
    "Removes an account from a project (not its last Admin).",
    Param("projectid", "uuid", required=True, description="the project"),
    Param("account", required=True, description="the account, by name"),
    is_async=True,
    event="PROJECT.ACCOUNT.REMOVE",
    response="success",
)
async def delete_account_from_project(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _member_job(ctx, "removed", ctx.services.projects.remove_member(
        ctx.caller, args["projectid"], account_name=args["account"]))


@command(
    "deleteUserFromProject",
    "Removes a user added on its own from a project (not its last Admin).",
    Param("projectid", "uuid", required=True, description="the project"),
    Param("userid", "uuid", required=True, description="the user"),
    is_async=True,
    event="PROJECT.USER.REMOVE",
    response="success",
)
async def delete_user_from_project(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _member_job(ctx, "removed", ctx.services.projects.remove_member(
        ctx.caller, args["projectid"], user_uuid=args["userid"]))


@command(
    "listProjectAccounts",
    "Lists a project's members (to its members, and admins above it).",
    Param("projectid", "uuid", required=True, description="the project"),
    Param("account", description="this member account"),
    Param("userid", "uuid", description="this member user"),
    Param("role", description="Admin or Regular members"),
    *refuse(PROJECT_ROLES, "projectroleid", applies=True),
    *PAGING,
    response="projectaccount",
)
async def list_project_accounts(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    found, total = await ctx.services.projects.members(ctx.caller, args)
    return listing("projectaccount", [member_view(m) for m in found], total)

