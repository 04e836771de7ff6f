"""Resource limits and counts per account and per domain, as CloudStack keeps them.

Counts are not kept as counters that every code path must remember to move: they are read from the
rows themselves (an account's VMs not destroyed, their vCPUs and memory, its volumes and their size, its
isolated networks, its templates), so they can never drift. A limit is the ``resource_limits`` row of
the account or domain, else the setting ``max.account.*`` / ``max.domain.*``; -1 is no limit; the root
admin's accounts and the ROOT domain have none. A domain's limit caps its whole subtree.

A check (``verify``) runs in the transaction that creates the resources (a deploy's admission, a
volume's creation, a change of service offering), after it wrote them, so that a refusal rolls them
back: it first locks the account's row and its domains' rows (``FOR UPDATE`` on
PostgreSQL, in a fixed order: the account, then the domains from the root down; SQLite has one writer),
so two requests for the same account or domain, on any server, are checked one after the other and
cannot both squeeze under a limit.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .db.schema import (
    accounts,
    configuration,
    domains,
    networks,
    project_accounts,
    projects,
    resource_limits,
    service_offerings,
    templates,
    vms,
    volumes,
)
from .errors import CumuloError


class ResourceType(enum.IntEnum):
    """CloudStack's resource types (their numbers on the wire)."""

    INSTANCE = 0
    PUBLIC_IP = 1
    VOLUME = 2
    SNAPSHOT = 3
    TEMPLATE = 4
    PROJECT = 5
    NETWORK = 6
    VPC = 7
    CPU = 8
    MEMORY = 9
    PRIMARY_STORAGE = 10
    SECONDARY_STORAGE = 11


T = ResourceType
NAMES = {T.INSTANCE: "user_vm", T.PUBLIC_IP: "public_ip", T.VOLUME: "volume", T.SNAPSHOT: "snapshot",
         T.TEMPLATE: "template", T.PROJECT: "project", T.NETWORK: "network", T.VPC: "vpc", T.CPU: "cpu",
         T.MEMORY: "memory", T.PRIMARY_STORAGE: "primary_storage", T.SECONDARY_STORAGE: "secondary_storage"}
# The settings that hold the default limits, and CloudStack's defaults (memory in MiB, storage in GiB).
_SETTING = {T.INSTANCE: "user.vms", T.PUBLIC_IP: "public.ips", T.VOLUME: "volumes",
            T.SNAPSHOT: "snapshots", T.TEMPLATE: "templates", T.PROJECT: "projects", T.NETWORK: "networks",
            T.VPC: "vpcs", T.CPU: "cpus", T.MEMORY: "memory", T.PRIMARY_STORAGE: "primary.storage",
            T.SECONDARY_STORAGE: "secondary.storage"}
ACCOUNT_DEFAULTS = {T.INSTANCE: 20, T.PUBLIC_IP: 20, T.VOLUME: 20, T.SNAPSHOT: 20, T.TEMPLATE: 20,
                    T.PROJECT: 20, T.NETWORK: 20, T.VPC: 20, T.CPU: 40, T.MEMORY: 40960,
                    T.PRIMARY_STORAGE: 200, T.SECONDARY_STORAGE: 400}
DOMAIN_DEFAULTS = {t: 2 * v for t, v in ACCOUNT_DEFAULTS.items()}
GIB = 2**30
LIVE_STATES = ("Starting", "Running", "Stopping", "Stopped", "Migrating", "Error", "Unknown")


def setting_name(owner: str, rtype: ResourceType) -> str:
    return f"max.{owner}.{_SETTING[rtype]}"


class LimitExceeded(CumuloError):
    """CloudStack's ResourceAllocationException."""

    error_code, cs_error_code = 535, 4370


# --- counts ------------------------------------------------------------------------------------------


def counts(conn: Connection, account_ids: sa.Select[Any] | list[int], *,
           with_projects: bool = True) -> dict[ResourceType, int]:
    """The counts of the accounts (a list, or a subquery of ids), summed; storage in bytes. The projects
    they administer are counted ``with_projects`` only (the VM path does not need them)."""
    live_vm = sa.and_(vms.c.account_id.in_(account_ids), vms.c.removed.is_(None),
                      vms.c.state.in_(LIVE_STATES))
    total = sa.func.coalesce
    cpus = total(vms.c.cpus, service_offerings.c.cpus)  # (a custom offering's are the VM's)
    memory = total(vms.c.memory_mb, service_offerings.c.memory_mb)
    vm_row = conn.execute(sa.select(sa.func.count(), total(sa.func.sum(cpus), 0),
                                    total(sa.func.sum(memory), 0))
                          .select_from(vms.join(service_offerings,
                                                service_offerings.c.id == vms.c.service_offering_id))
                          .where(live_vm)).one()
    vol_row = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(volumes.c.size_bytes), 0))
                           .where(volumes.c.account_id.in_(account_ids), volumes.c.removed.is_(None),
                                  volumes.c.state != "Expunged")).one()
    nets = conn.scalar(sa.select(sa.func.count()).select_from(networks).where(
        networks.c.account_id.in_(account_ids), networks.c.removed.is_(None))) or 0
    tmpl = conn.scalar(sa.select(sa.func.count()).select_from(templates).where(
        templates.c.account_id.in_(account_ids), templates.c.removed.is_(None))) or 0
    owned = 0
    if with_projects:  # projects count against their Admin members
        owned = conn.scalar(sa.select(sa.func.count(sa.distinct(project_accounts.c.project_id)))
                            .join(projects, projects.c.id == project_accounts.c.project_id)
                            .where(project_accounts.c.account_id.in_(account_ids),
                                   project_accounts.c.role == "Admin", projects.c.removed.is_(None))) or 0
    out = dict.fromkeys(ResourceType, 0)
    out.update({T.PROJECT: int(owned), T.INSTANCE: int(vm_row[0]), T.CPU: int(vm_row[1]),
                T.MEMORY: int(vm_row[2]),
                T.VOLUME: int(vol_row[0]), T.PRIMARY_STORAGE: int(vol_row[1]), T.NETWORK: int(nets),
                T.TEMPLATE: int(tmpl)})
    return out


def _accounts_under(path: str) -> sa.Select[Any]:
    return sa.select(accounts.c.id).where(accounts.c.domain_id.in_(
        sa.select(domains.c.id).where(domains.c.path.startswith(path, autoescape=True))))


def account_counts(conn: Connection, account_id: int, *,
                   with_projects: bool = True) -> dict[ResourceType, int]:
    return counts(conn, [account_id], with_projects=with_projects)


def domain_counts(conn: Connection, path: str, *, with_projects: bool = True) -> dict[ResourceType, int]:
    return counts(conn, _accounts_under(path), with_projects=with_projects)


# --- limits ------------------------------------------------------------------------------------------


def _defaults(conn: Connection, owner: str) -> dict[ResourceType, int]:
    base = ACCOUNT_DEFAULTS if owner == "account" else DOMAIN_DEFAULTS
    names = {setting_name(owner, t): t for t in ResourceType}
    out = dict(base)
    for name, value, default in conn.execute(sa.select(configuration.c.name, configuration.c.value,
                                                       configuration.c.default_value)
                                             .where(configuration.c.name.in_(list(names)))):
        raw = value if value is not None else default
        try:
            out[names[name]] = int(raw)
        except (TypeError, ValueError):
            continue
    return out


def limits_of(conn: Connection, owner: str, owner_id: int) -> dict[ResourceType, int]:
    """Each type's limit for the account or domain (its own row, else the default; -1: none). Storage
    limits are in GiB, memory in MiB, as CloudStack shows them."""
    out = _defaults(conn, owner)
    for rtype, maximum in conn.execute(sa.select(resource_limits.c.type, resource_limits.c.max).where(
            resource_limits.c.owner_type == owner, resource_limits.c.owner_id == owner_id)):
        if rtype in ResourceType.__members__.values():
            out[ResourceType(rtype)] = int(maximum)
    return out


def set_limit(conn: Connection, owner: str, owner_id: int, rtype: ResourceType, maximum: int | None) -> None:
    """Set (None: drop, back to the default) one limit."""
    where = (resource_limits.c.owner_type == owner, resource_limits.c.owner_id == owner_id,
             resource_limits.c.type == int(rtype))
    conn.execute(resource_limits.delete().where(*where))
    if maximum is not None:
        conn.execute(resource_limits.insert().values(owner_type=owner, owner_id=owner_id, type=int(rtype),
                                                     max=maximum))


def _cap(rtype: ResourceType, maximum: int) -> int:
    return maximum * GIB if rtype in (T.PRIMARY_STORAGE, T.SECONDARY_STORAGE) and maximum >= 0 else maximum


# --- checking ----------------------------------------------------------------------------------------


def verify(conn: Connection, account_id: int, kinds: Collection[ResourceType]) -> None:
    """Raise LimitExceeded when the account, or one of its domains (but ROOT), is now past a limit of
    one of ``kinds``: called in the transaction that just wrote the new resources, after them, so that
    an error rolls them back. Locks the account's and its domains' rows first (see the module's
    docstring), then counts what is committed and what this transaction wrote."""
    postgres = conn.dialect.name == "postgresql"

    def lock(query: sa.Select[Any]) -> sa.Select[Any]:
        return query.with_for_update() if postgres else query

    kind = conn.scalar(sa.select(accounts.c.type).where(accounts.c.id == account_id))
    if kind is None or kind == 1:  # the root admin's accounts have no limits: nothing to lock either
        return
    account = conn.execute(lock(sa.select(accounts.c.id, accounts.c.name, accounts.c.type,
                                          accounts.c.domain_id).where(accounts.c.id == account_id))).one()
    path = conn.scalar(sa.select(domains.c.path).where(domains.c.id == account.domain_id)) or "/"
    chain = [p for p in _ancestors(path) if p != "/"]  # ROOT has no limits
    rows = {r.path: r for r in conn.execute(lock(sa.select(domains.c.id, domains.c.path, domains.c.name)
                                                 .where(domains.c.path.in_(chain)).order_by(domains.c.path)))}
    projects_too = T.PROJECT in kinds
    _verify_owner(conn, "account", account.id, f"account {account.name}",
                  account_counts(conn, account.id, with_projects=projects_too), kinds)
    for p in chain:
        row = rows.get(p)
        if row is not None:
            _verify_owner(conn, "domain", row.id, f"domain {row.name}",
                          domain_counts(conn, p, with_projects=projects_too), kinds)


def _ancestors(path: str) -> list[str]:
    """"/a/b/" -> ["/", "/a/", "/a/b/"]."""
    parts = [x for x in path.split("/") if x]
    return ["/"] + ["/" + "/".join(parts[:i]) + "/" for i in range(1, len(parts) + 1)]


def _verify_owner(conn: Connection, owner: str, owner_id: int, who: str, have: Mapping[ResourceType, int],
                  kinds: Collection[ResourceType]) -> None:
    maxima = limits_of(conn, owner, owner_id)
    for rtype in kinds:
        cap = _cap(rtype, maxima[rtype])
        if cap >= 0 and have[rtype] > cap:
            raise LimitExceeded(f"maximum number of resources of type '{NAMES[rtype]}' for {who} has been "
                                f"exceeded (the limit is {maxima[rtype]})")
