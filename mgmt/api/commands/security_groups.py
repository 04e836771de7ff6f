"""Security groups: create, list, delete; authorize and revoke ingress and egress rules (the hosts of the
running VMs they touch get the new rules before the job ends)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import InvalidParameter
from ...services.security_groups import Group, RuleSpec
from ..registry import Param, command
from .common import OWNER, PAGING, PROJECT, listing, success
from .tags import TAGS, with_tags

if TYPE_CHECKING:
    from ..app import Context


def _rule_view(r: Any, group_name: str) -> dict[str, Any]:
    view: dict[str, Any] = {"ruleid": r.uuid, "protocol": r.protocol, "securitygroupname": group_name}
    if r.protocol in ("tcp", "udp"):
        view.update(startport=r.start_port, endport=r.end_port)
    if r.protocol == "icmp":
        view.update(icmptype=r.icmp_type, icmpcode=r.icmp_code)
    if r.cidr:
        view["cidr"] = r.cidr
    else:  # a rule naming another group: its name and account, as CloudStack shows them
        view.update(securitygroupname=r.source_group_name, account=r.source_account_name)
    view["tags"] = []
    return view


def group_view(group: Group) -> dict[str, Any]:
    r = group.row
    return {
        "id": r.uuid,
        "name": r.name,
        "description": r.description,
        "account": r.account_name,
        "domainid": r.domain_uuid,
        "domain": r.domain_name,
        "ingressrule": [_rule_view(x, r.name) for x in group.rules if x.direction == "ingress"],
        "egressrule": [_rule_view(x, r.name) for x in group.rules if x.direction == "egress"],
        "tags": [],
        "virtualmachinecount": len(group.members),
        "virtualmachineids": group.members,
    }


@command(
    "listSecurityGroups",
    "Lists security groups with their rules: the caller's own (its default group included; admins: every "
    "account's with listall=true).",
    Param("id", "uuid", description="the group's id"),
    Param("securitygroupname", description="the group's name"),
    Param("virtualmachineid", "uuid", description="the groups of this VM"),
    TAGS,
    *OWNER,
    *PAGING,
    response="securitygroup",
)
async def list_security_groups(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    found, total = await ctx.services.security_groups.matching(ctx.caller, args)
    return await with_tags(ctx, listing("securitygroup", [group_view(g) for g in found], total),
                           "securitygroup", "SecurityGroup")


@command(
    "createSecurityGroup",
    "Creates a security group (no rules: nothing gets in, everything gets out).",
    Param("name", required=True, description="its name (unique in the account; not default)"),
    Param("description", description="what it is for"),
    Param("account", description="for this account (admins, with domainid)"),
    Param("domainid", "uuid", description="the account's domain"),
    PROJECT,
    event="SG.CREATE",
    response="securitygroup",
)
async def create_security_group(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    group = await ctx.services.security_groups.create(
        ctx.caller, args["name"], args.get("description", ""), account=args.get("account", ""),
        domain=args.get("domainid", ""), project=args.get("projectid", ""))
    await ctx.event("SG.CREATE", f"created security group {group.row.name}", resource_type="SecurityGroup",
                    resource_uuid=group.row.uuid)
    return {"securitygroup": group_view(group)}


@command(
    "deleteSecurityGroup",
    "Deletes a security group no VM is in and no other group's rule names.",
    Param("id", "uuid", description="the group's id"),
    Param("name", description="the group's name"),
    Param("account", description="with name: the account it is of (admins, with domainid)"),
    Param("domainid", "uuid", description="that account's domain"),
    PROJECT,
    event="SG.DELETE",
)
async def delete_security_group(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    row = await ctx.services.security_groups.delete(ctx.caller, ident=args.get("id", ""),
                                                     name=args.get("name", ""),
                                                     account=args.get("account", ""),
                                                     domain=args.get("domainid", ""),
                                                     project=args.get("projectid", ""))
    await ctx.event("SG.DELETE", f"deleted security group {row.name}", resource_type="SecurityGroup",
                    resource_uuid=row.uuid)
    return success()


def _rule_params(direction: str) -> tuple[Param, ...]:
    where = "from" if direction == "ingress" else "to"
    return (
        Param("securitygroupid", "uuid", description="the group's id"),
        Param("securitygroupname", description="the group's name"),
        Param("protocol", description="tcp, udp, icmp or all"),
        Param("startport", "integer", description="the first port (tcp, udp)"),
        Param("endport", "integer", description="the last port (tcp, udp; default startport)"),
        Param("icmptype", "integer", description="the ICMP type, -1 for any (icmp)"),
        Param("icmpcode", "integer", description="the ICMP code, -1 for any (icmp)"),
        Param("cidrlist", "list", description=f"comma-separated CIDRs the traffic comes {where}"),
        Param("usersecuritygrouplist", "map",
              description=f"groups whose members the traffic comes {where}: "
                          "usersecuritygrouplist[0].account=...&usersecuritygrouplist[0].group=..."),
        Param("account", description="with securitygroupname: the account it is of (admins, with domainid)"),
        Param("domainid", "uuid", description="that account's domain"),
        PROJECT,
    )


async def _authorize(ctx: Context, args: dict[str, Any], direction: str, event: str) -> dict[str, Any]:
    sources = []
    for entry in args.get("usersecuritygrouplist", []):
        if "account" not in entry or "group" not in entry:
            raise InvalidParameter("each usersecuritygrouplist entry needs account and group")
        sources.append((entry["account"], entry["group"]))
    spec = RuleSpec(direction, args.get("protocol", "tcp"), args.get("startport"), args.get("endport"),
                    args.get("icmptype"), args.get("icmpcode"), tuple(args.get("cidrlist", [])),
                    tuple(sources))
    group = await ctx.services.security_groups.authorize(
        ctx.caller, spec, ident=args.get("securitygroupid", ""), name=args.get("securitygroupname", ""),
        account=args.get("account", ""), domain=args.get("domainid", ""), project=args.get("projectid", ""))

    async def work() -> dict[str, Any]:
        await ctx.services.orchestrator.apply_security_group(group.row.id)
        return {"securitygroup": group_view(group)}

    job = await ctx.submit(work, description=f"{event} on security group {group.row.name}",
                           instance_type="SecurityGroup", instance_id=group.row.id,
                           instance_uuid=group.row.uuid)
    return {"jobid": job}


async def _revoke(ctx: Context, args: dict[str, Any], direction: str) -> dict[str, Any]:
    group = await ctx.services.security_groups.revoke(ctx.caller, args["id"], direction)

    async def work() -> dict[str, Any]:
        await ctx.services.orchestrator.apply_security_group(group.id)
        return {"success": True}

    job = await ctx.submit(work, description=f"revoked an {direction} rule of security group {group.name}",
                           instance_type="SecurityGroup", instance_id=group.id, instance_uuid=group.uuid)
    return {"jobid": job}


@command("authorizeSecurityGroupIngress", "Lets traffic in to a security group's VMs.",
         *_rule_params("ingress"), is_async=True, event="SG.AUTH.INGRESS", response="securitygroup")
async def authorize_ingress(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _authorize(ctx, args, "ingress", "authorized ingress")


@command("authorizeSecurityGroupEgress",
         "Lets traffic out of a security group's VMs (once a group has egress rules, only what they "
         "allow goes out).", *_rule_params("egress"),
         is_async=True, event="SG.AUTH.EGRESS", response="securitygroup")
async def authorize_egress(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _authorize(ctx, args, "egress", "authorized egress")


@command("revokeSecurityGroupIngress", "Removes an ingress rule.",
         Param("id", "uuid", required=True, description="the rule's id (ruleid)"),
         is_async=True, event="SG.REVOKE.INGRESS")
async def revoke_ingress(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _revoke(ctx, args, "ingress")


@command("revokeSecurityGroupEgress", "Removes an egress rule.",
         Param("id", "uuid", required=True, description="the rule's id (ruleid)"),
         is_async=True, event="SG.REVOKE.EGRESS")
async def revoke_egress(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _revoke(ctx, args, "egress")
