"""Security groups: an account's named rule sets for the VMs on networks that have them.

A VM on such a network is in at least one group (its account's ``default`` when the deploy names none;
the default group is made with the account's first need of it and cannot be deleted). With no ingress
rule nothing gets in; with no egress rule everything gets out, and once a group has egress rules only
what they allow does (CloudStack's semantics). A rule names a protocol (tcp, udp, icmp or all), ports or
an ICMP type and code, and where the traffic comes from (ingress) or goes to (egress): CIDRs, or the
members of another group (``usersecuritygrouplist``). What a host enforces is computed from these rows
(``mgmt/network/security.py``) whenever a VM starts or a rule it depends on changes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..db.database import inserted_id
from ..db.schema import (
    accounts,
    domains,
    security_group_rules,
    security_group_vms,
    security_groups,
    vms,
)
from ..errors import InvalidParameter, ResourceInUse
from ..network import security
from .caller import Caller
from .crud import Filters, Row
from .queries import acting_for, fetch, find, keyword, matching, new_uuid, now, owner_filter, owns
from .tags import tagged

if TYPE_CHECKING:
    from ..db.database import Database

DEFAULT = security.DEFAULT
PROTOCOLS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "all": "all", "6": "tcp", "17": "udp", "1": "icmp"}


@dataclass(frozen=True)
class RuleSpec:
    """One authorize call: the rules it adds (one per CIDR and per source group)."""

    direction: str  # ingress, egress
    protocol: str
    start_port: int | None = None
    end_port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    cidrs: tuple[str, ...] = ()
    source_groups: tuple[tuple[str, str], ...] = ()  # (account name, group name)


@dataclass(frozen=True)
class Group:
    row: Row  # with account_name, domain_uuid, domain_name
    rules: list[Row]  # with source_group_name, source_account_name
    members: list[str]  # live VMs' uuids


def checked(spec: RuleSpec) -> RuleSpec:
    """The rule with its protocol named and its ports or ICMP fields checked."""
    protocol = PROTOCOLS.get(spec.protocol.lower())
    if protocol is None:
        raise InvalidParameter("protocol must be tcp, udp, icmp or all")
    start, end, icmp_type, icmp_code = spec.start_port, spec.end_port, spec.icmp_type, spec.icmp_code
    if protocol in ("tcp", "udp"):
        if start is None:
            raise InvalidParameter(f"a {protocol} rule needs startport (and endport)")
        end = start if end is None else end
        if not (1 <= start <= 65535 and 1 <= end <= 65535 and start <= end):
            raise InvalidParameter("ports must be 1 to 65535, startport not above endport")
        icmp_type = icmp_code = None
    elif protocol == "icmp":
        icmp_type = -1 if icmp_type is None else icmp_type
        icmp_code = -1 if icmp_code is None else icmp_code
        if not (-1 <= icmp_type <= 255 and -1 <= icmp_code <= 255):
            raise InvalidParameter("icmptype and icmpcode must be -1 (any) to 255")
        start = end = None
    else:
        start = end = icmp_type = icmp_code = None
    cidrs = []
    for cidr in spec.cidrs:
        try:
            cidrs.append(str(ipaddress.IPv4Network(cidr.strip(), strict=False)))
        except ValueError:
            raise InvalidParameter(f"{cidr[:64]!r} is not an IPv4 CIDR") from None
    if not cidrs and not spec.source_groups:
        raise InvalidParameter("give cidrlist or usersecuritygrouplist")
    return RuleSpec(spec.direction, protocol, start, end, icmp_type, icmp_code, tuple(cidrs),
                    spec.source_groups)


def _query() -> sa.Select[Any]:
    return (
        sa.select(security_groups, accounts.c.name.label("account_name"),
                  domains.c.uuid.label("domain_uuid"), domains.c.name.label("domain_name"))
        .join(accounts, accounts.c.id == security_groups.c.account_id)
        .join(domains, domains.c.id == accounts.c.domain_id)
    )


def _with_rules(conn: Connection, rows: list[Row]) -> list[Group]:
    ids = [r.id for r in rows]
    rules: dict[int, list[Row]] = {i: [] for i in ids}
    members: dict[int, list[str]] = {i: [] for i in ids}
    if ids:
        source = security_groups.alias("source")
        owner = accounts.alias("owner")
        for rule in conn.execute(
            sa.select(security_group_rules, source.c.name.label("source_group_name"),
                      owner.c.name.label("source_account_name"))
            .outerjoin(source, source.c.id == security_group_rules.c.source_group_id)
            .outerjoin(owner, owner.c.id == source.c.account_id)
            .where(security_group_rules.c.group_id.in_(ids)).order_by(security_group_rules.c.id)
        ):
            rules[rule.group_id].append(rule)
        for group_id, vm_uuid in conn.execute(
            sa.select(security_group_vms.c.group_id, vms.c.uuid)
            .join(vms, vms.c.id == security_group_vms.c.vm_id)
            .where(security_group_vms.c.group_id.in_(ids), vms.c.removed.is_(None))
        ):
            members[group_id].append(vm_uuid)
    return [Group(r, rules[r.id], members[r.id]) for r in rows]


def _list(conn: Connection, caller: Caller, args: Filters) -> tuple[list[Group], int]:
    if not caller.is_admin or "account" not in args:
        # CloudStack lists an account's default group always: made with its first listing
        security.default_group(conn, acting_for(conn, caller))
    where = [*owner_filter(conn, caller, args, security_groups.c.account_id),
             *keyword(security_groups.c.name, args)]
    where += matching(args, {"id": security_groups.c.uuid, "securitygroupname": security_groups.c.name})
    where += tagged(args, "SecurityGroup", security_groups.c.uuid)
    if "virtualmachineid" in args:
        where.append(security_groups.c.id.in_(
            sa.select(security_group_vms.c.group_id).join(vms, vms.c.id == security_group_vms.c.vm_id)
            .where(vms.c.uuid == args["virtualmachineid"])))
    rows, total = fetch(conn, _query().where(*where), security_groups.c.id, args)
    return _with_rules(conn, rows), total


def _one(conn: Connection, group_id: int) -> Group:
    return _with_rules(conn, [conn.execute(_query().where(security_groups.c.id == group_id)).one()])[0]


def _create(conn: Connection, caller: Caller, name: str, description: str, account: str,
            domain: str, project: str = "") -> Group:
    if name.strip().lower() == DEFAULT:
        raise InvalidParameter("the name default is reserved for the account's default security group")
    account_id = acting_for(conn, caller, account, domain, project)
    try:
        with conn.begin_nested():
            group_id = inserted_id(conn.execute(security_groups.insert().values(
                uuid=new_uuid(), name=name, description=description, account_id=account_id, created=now())))
    except IntegrityError:
        raise InvalidParameter(f"a security group named {name!r} exists already") from None
    return _one(conn, group_id)


def _named(conn: Connection, caller: Caller, ident: str, name: str, account: str = "",
           domain: str = "", project: str = "") -> Row:
    if ident:
        return find(conn, caller, security_groups, ident, "security group", owned=True)
    if not name:
        raise InvalidParameter("give the security group's id or name")
    account_id = acting_for(conn, caller, account, domain, project)
    if name == DEFAULT:
        security.default_group(conn, account_id)
    row = conn.execute(sa.select(security_groups).where(security_groups.c.account_id == account_id,
                                                        security_groups.c.name == name)).first()
    if row is None:
        raise InvalidParameter(f"unable to find security group {name!r}")
    return row


def _delete(conn: Connection, caller: Caller, ident: str, name: str, account: str = "",
            domain: str = "", project: str = "") -> Row:
    row = _named(conn, caller, ident, name, account, domain, project)
    if row.name == DEFAULT:
        raise InvalidParameter("an account's default security group cannot be deleted")
    live = conn.scalar(sa.select(sa.func.count()).select_from(security_group_vms)
                       .join(vms, vms.c.id == security_group_vms.c.vm_id)
                       .where(security_group_vms.c.group_id == row.id, vms.c.removed.is_(None)))
    if live:
        raise ResourceInUse(f"security group {row.name} still has {live} VM(s)")
    referenced = conn.scalar(sa.select(sa.func.count()).select_from(security_group_rules).where(
        security_group_rules.c.source_group_id == row.id, security_group_rules.c.group_id != row.id))
    if referenced:
        raise ResourceInUse(f"rules of other security groups name {row.name}; revoke them first")
    conn.execute(security_group_vms.delete().where(security_group_vms.c.group_id == row.id))
    conn.execute(security_group_rules.delete().where(security_group_rules.c.group_id == row.id))
    conn.execute(security_groups.delete().where(security_groups.c.id == row.id))
    return row


def _authorize(conn: Connection, caller: Caller, ident: str, name: str, spec: RuleSpec, account: str = "",
               domain: str = "", project: str = "") -> Group:
    row = _named(conn, caller, ident, name, account, domain, project)
    sources = []
    for account_name, group_name in spec.source_groups:
        owner = conn.execute(sa.select(accounts.c.id).where(accounts.c.name == account_name,
                                                            accounts.c.removed.is_(None))).first()
        if owner is None:
            raise InvalidParameter(f"unable to find account {account_name!r}")
        if owner.id != row.account_id and not caller.is_admin:
            raise InvalidParameter("a rule may name only its own account's security groups")
        if group_name == DEFAULT:
            security.default_group(conn, owner.id)
        source = conn.scalar(sa.select(security_groups.c.id).where(security_groups.c.account_id == owner.id,
                                                                   security_groups.c.name == group_name))
        if source is None:
            raise InvalidParameter(
                f"unable to find security group {group_name!r} of account {account_name!r}")
        sources.append(source)
    base = {"group_id": row.id, "direction": spec.direction, "protocol": spec.protocol,
            "start_port": spec.start_port, "end_port": spec.end_port, "icmp_type": spec.icmp_type,
            "icmp_code": spec.icmp_code, "created": now()}
    for cidr in spec.cidrs:
        conn.execute(security_group_rules.insert().values(uuid=new_uuid(), cidr=cidr, **base))
    for source in sources:
        conn.execute(security_group_rules.insert().values(uuid=new_uuid(), source_group_id=source, **base))
    return _one(conn, row.id)


def _revoke(conn: Connection, caller: Caller, rule_uuid: str, direction: str) -> Row:
    rule = conn.execute(
        sa.select(security_group_rules).where(security_group_rules.c.uuid == rule_uuid)).first()
    group = conn.execute(sa.select(security_groups).where(security_groups.c.id == rule.group_id)).first() \
        if rule is not None else None
    if rule is None or group is None or not owns(conn, caller, group.account_id):
        raise InvalidParameter(f"unable to find security group rule {rule_uuid}")
    if rule.direction != direction:
        raise InvalidParameter(f"rule {rule_uuid} is an {rule.direction} rule")
    conn.execute(security_group_rules.delete().where(security_group_rules.c.id == rule.id))
    return group


class SecurityGroups:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def matching(self, caller: Caller, args: Filters) -> tuple[list[Group], int]:
        return await self.db.run(_list, caller, args)  # (may make the caller's default group)

    async def create(self, caller: Caller, name: str, description: str = "", *, account: str = "",
                     domain: str = "", project: str = "") -> Group:
        if not name.strip() or len(name) > 255:
            raise InvalidParameter("name must be 1 to 255 characters")
        return await self.db.run(_create, caller, name.strip(), description, account, domain, project)

    async def delete(self, caller: Caller, *, ident: str = "", name: str = "", account: str = "",
                     domain: str = "", project: str = "") -> Row:
        """Delete a group (by id, or by name in the caller's account or, admins, ``account``'s)."""
        return await self.db.run(_delete, caller, ident, name, account, domain, project)

    async def authorize(self, caller: Caller, spec: RuleSpec, *, ident: str = "", name: str = "",
                        account: str = "", domain: str = "", project: str = "") -> Group:
        return await self.db.run(_authorize, caller, ident, name, checked(spec), account, domain, project)

    async def revoke(self, caller: Caller, rule_uuid: str, direction: str) -> Row:
        """Remove a rule; the group it was in."""
        return await self.db.run(_revoke, caller, rule_uuid, direction)

    async def affected(self, group_id: int) -> list[int]:
        return await self.db.read(security.affected_vms, group_id)
