"""What a host enforces for a VM's security groups: the rules of its groups with the groups they name
resolved to their members' addresses, as the ``SecurityTO`` its NICs carry (``StartCommand``,
``SecurityGroupRulesCommand``), and which VMs a change to a group touches."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from protocol.messages import SecurityRuleTO, SecurityTO

from ..db.database import inserted_id
from ..db.schema import nics, security_group_rules, security_group_vms, security_groups, vms

DEFAULT = "default"


def _now() -> datetime:
    return datetime.now(UTC)


def default_group(conn: Connection, account_id: int) -> int:
    """The account's default group, made when it has none (no rules: nothing in, everything out)."""
    where = (security_groups.c.account_id == account_id, security_groups.c.name == DEFAULT)
    found = conn.scalar(sa.select(security_groups.c.id).where(*where))
    if found is not None:
        return int(found)
    try:
        with conn.begin_nested():
            return inserted_id(conn.execute(security_groups.insert().values(
                uuid=str(uuid.uuid4()), name=DEFAULT, description="Default Security Group",
                account_id=account_id, created=_now())))
    except IntegrityError:  # made by a concurrent request
        return int(conn.execute(sa.select(security_groups.c.id).where(*where)).scalar_one())


def affected_vms(conn: Connection, group_id: int) -> list[int]:
    """The live VMs whose enforced rules depend on the group: its members, and the members of every group
    with a rule naming it as a source (its members' addresses are in those rules)."""
    groups = {group_id} | set(conn.scalars(
        sa.select(security_group_rules.c.group_id).where(security_group_rules.c.source_group_id == group_id)))
    return sorted(set(conn.scalars(
        sa.select(security_group_vms.c.vm_id).join(vms, vms.c.id == security_group_vms.c.vm_id)
        .where(security_group_vms.c.group_id.in_(groups), vms.c.removed.is_(None)))))


def groups_of_vm(conn: Connection, vm_id: int) -> list[int]:
    return list(conn.scalars(
        sa.select(security_group_vms.c.group_id).where(security_group_vms.c.vm_id == vm_id)
    ))


def groups_named_by_rules(conn: Connection, vm_id: int, group_ids: list[int] | None = None) -> list[int]:
    """The VM's groups (``group_ids`` when the caller knows them) that some rule names as its source:
    their members' addresses are in rules."""
    if group_ids is None:
        group_ids = groups_of_vm(conn, vm_id)
    if not group_ids:
        return []
    return sorted(set(conn.scalars(
        sa.select(security_group_rules.c.source_group_id).where(
            security_group_rules.c.source_group_id.in_(group_ids))
    )))


def security_to(conn: Connection, vm_id: int, group_ids: list[int] | None = None) -> SecurityTO | None:
    """What the VM's NICs let through; None when the VM is in no group (its traffic is not filtered).
    ``group_ids``: its groups, when the caller knows them."""
    group_ids = groups_of_vm(conn, vm_id) if group_ids is None else group_ids
    if not group_ids:
        return None
    rules = list(conn.execute(sa.select(security_group_rules)
                              .where(security_group_rules.c.group_id.in_(group_ids))
                              .order_by(security_group_rules.c.id)))
    sources = {r.source_group_id for r in rules if r.source_group_id is not None}
    members: dict[int, set[str]] = {s: set() for s in sources}
    if sources:
        for group_id, address in conn.execute(
            sa.select(security_group_vms.c.group_id, nics.c.ip_address)
            .join(vms, vms.c.id == security_group_vms.c.vm_id)
            .join(nics, nics.c.vm_id == vms.c.id)
            .where(security_group_vms.c.group_id.in_(sources), vms.c.removed.is_(None),
                   nics.c.state != "Released", nics.c.ip_address.is_not(None))
        ):
            members[group_id].add(f"{address}/32")
    ingress: list[SecurityRuleTO] = []
    egress: list[SecurityRuleTO] = []
    for r in rules:
        cidrs = (r.cidr,) if r.cidr else tuple(sorted(members.get(r.source_group_id, ())))
        if not cidrs:
            continue  # a group with no members yet lets nothing through
        to = SecurityRuleTO(protocol=r.protocol, start_port=r.start_port or 0, end_port=r.end_port or 0,
                            icmp_type=-1 if r.icmp_type is None else r.icmp_type,
                            icmp_code=-1 if r.icmp_code is None else r.icmp_code, cidrs=cidrs)
        (ingress if r.direction == "ingress" else egress).append(to)
    egress_filtered = any(r.direction == "egress" for r in rules)
    return SecurityTO(ingress=tuple(ingress), egress=tuple(egress), egress_filtered=egress_filtered)
