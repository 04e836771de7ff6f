"""The cloud's settings as operators change them (CloudStack's names, kinds and defaults: see
``mgmt/settings.py``): cloud-wide, or, for a setting of a narrower scope, for one zone, cluster, storage
pool, domain or account, where that value wins over the cloud-wide one.

Where a scoped value lives is where what uses it reads it: a cluster's CPU and memory overprovisioning
factors are the cluster's own columns (the planner's index); the others are rows of
``configuration_scoped``, read by the planner's pool index (a pool's storage factor, a zone's pool
threshold), by password checks (a domain's password policy) and by the VM commands (an account's
``allow.user.expunge.recover.vm``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.schema import accounts, clusters, configuration, configuration_scoped, domains, storage_pools, zones
from ..errors import InvalidParameter
from ..settings import KIND_NAMES, SETTINGS, Setting
from .caller import PROJECT
from .crud import Filters
from .queries import page

if TYPE_CHECKING:
    from ..db.database import Database

# The parameter naming each scope, its table, and how its errors call it.
SCOPE_PARAMS: dict[str, tuple[str, sa.Table, str]] = {
    "zoneid": ("Zone", zones, "zone"),
    "clusterid": ("Cluster", clusters, "cluster"),
    "storageid": ("StoragePool", storage_pools, "storage pool"),
    "domainid": ("Domain", domains, "domain"),
    "accountid": ("Account", accounts, "account"),
}
# Scoped values kept in a resource's own columns rather than in configuration_scoped.
_COLUMNS = {("Cluster", "cpu.overprovisioning.factor"): "cpu_overcommit",
            ("Cluster", "mem.overprovisioning.factor"): "mem_overcommit"}


@dataclass(frozen=True)
class Scope:
    kind: str  # Zone, Cluster, StoragePool, Domain, Account
    id: int
    uuid: str


@dataclass(frozen=True)
class Value:
    """A setting as listConfigurations shows it: its value where asked (cloud-wide or in a scope)."""

    setting: Setting
    value: str | None  # None: the default
    default: str
    scope: Scope | None = None


def scope_of(conn: Connection, args: Mapping[str, Any]) -> Scope | None:
    """The one scope ``args`` names (zoneid, clusterid, storageid, domainid or accountid), or None."""
    named = [p for p in SCOPE_PARAMS if args.get(p)]
    if len(named) > 1:
        raise InvalidParameter(f"give one of zoneid, clusterid, storageid, domainid, accountid, not "
                               f"{' and '.join(named)}")
    if not named:
        return None
    kind, table, what = SCOPE_PARAMS[named[0]]
    where = [table.c.uuid == args[named[0]], table.c.removed.is_(None)]
    if table is accounts:
        where.append(accounts.c.type != PROJECT)
    found = conn.scalar(sa.select(table.c.id).where(*where))
    if found is None:
        raise InvalidParameter(f"unable to find {what} with id {args[named[0]]}")
    return Scope(kind, int(found), str(args[named[0]]))


def _scoped_values(conn: Connection, scope: Scope) -> dict[str, str]:
    out = dict(conn.execute(sa.select(configuration_scoped.c.name, configuration_scoped.c.value).where(
        configuration_scoped.c.scope == scope.kind, configuration_scoped.c.scope_id == scope.id)).all())
    for (kind, name), column in _COLUMNS.items():
        if kind == scope.kind:
            value = conn.scalar(sa.select(clusters.c[column]).where(clusters.c.id == scope.id))
            if value is not None:
                out[name] = f"{value:g}"
    return out


def _list(conn: Connection, args: Filters) -> tuple[list[Value], int]:
    scope = scope_of(conn, args)
    rows = conn.execute(sa.select(configuration).order_by(configuration.c.name)).all()
    scoped = _scoped_values(conn, scope) if scope is not None else {}
    out = []
    for r in rows:
        s = SETTINGS.get(r.name)
        if s is None or (scope is not None and s.scope != scope.kind):
            continue
        group, subgroup = s.group
        if any(args.get(p) is not None and args[p] != v for p, v in (
                ("name", r.name), ("category", r.category), ("group", group), ("subgroup", subgroup),
                ("parent", s.parent))):
            continue
        if "keyword" in args and args["keyword"].lower() not in r.name.lower():
            continue
        value = scoped.get(r.name, r.value) if scope is not None else r.value
        out.append(Value(s, value, r.default_value, scope))
    offset, limit = page(args)
    return out[offset: None if limit is None else offset + limit], len(out)


def _set(conn: Connection, setting: Setting, value: str | None, scope: Scope | None) -> Value:
    if scope is None:
        conn.execute(configuration.update().where(configuration.c.name == setting.name).values(value=value))
        row = conn.execute(sa.select(configuration).where(configuration.c.name == setting.name)).one()
        return Value(setting, row.value, row.default_value)
    column = _COLUMNS.get((scope.kind, setting.name))
    if column is not None:
        conn.execute(clusters.update().where(clusters.c.id == scope.id).values(
            {column: float(value) if value is not None else None}))
    else:
        cs = configuration_scoped
        conn.execute(cs.delete().where(cs.c.scope == scope.kind, cs.c.scope_id == scope.id,
                                       cs.c.name == setting.name))
        if value is not None:
            conn.execute(cs.insert().values(scope=scope.kind, scope_id=scope.id, name=setting.name,
                                            value=value))
    default = conn.scalar(sa.select(sa.func.coalesce(configuration.c.value, configuration.c.default_value))
                          .where(configuration.c.name == setting.name))
    return Value(setting, value if value is not None else default, setting.default, scope)


def scoped_value(conn: Connection, name: str, kind: str, scope_id: int) -> object:
    """The setting's value in one scope (its own there, else the cloud-wide one), parsed."""
    setting = SETTINGS[name]
    raw = conn.scalar(sa.select(configuration_scoped.c.value).where(
        configuration_scoped.c.scope == kind, configuration_scoped.c.scope_id == scope_id,
        configuration_scoped.c.name == name))
    if raw is None:
        raw = conn.scalar(sa.select(sa.func.coalesce(configuration.c.value, configuration.c.default_value))
                          .where(configuration.c.name == name))
    try:
        return setting.kind(raw if raw is not None else setting.default)
    except ValueError:
        return setting.kind(setting.default)


def password_policy(conn: Connection, *, domain_id: int | None = None,
                    domain_uuid: str = "") -> dict[str, object]:
    """The password.policy.* settings as they hold in a domain (by id or uuid): its own values, else the
    cloud-wide ones (CloudStack's password policy is per domain)."""
    if domain_id is None:
        domain_id = conn.scalar(sa.select(domains.c.id).where(domains.c.uuid == domain_uuid)) or 0
    return {name: scoped_value(conn, name, "Domain", domain_id) for name in SETTINGS
            if name.startswith("password.policy.")}


def check(setting: Setting, value: str) -> None:
    try:
        parsed = setting.kind(value)
    except ValueError:
        kind = KIND_NAMES.get(setting.kind, "text")
        raise InvalidParameter(f"{setting.name} must be {kind}, not {value[:64]!r}") from None
    if isinstance(parsed, int | float) and not isinstance(parsed, bool) and parsed < 0:
        raise InvalidParameter(f"{setting.name} must not be negative")
    if setting.scope == "Cluster" and isinstance(parsed, float) and parsed <= 0:
        raise InvalidParameter(f"{setting.name} must be more than 0")


class Settings:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def matching(self, args: Filters) -> tuple[list[Value], int]:
        return await self.db.read(_list, args)

    async def update(self, name: str, value: str | None, args: Filters | None = None) -> Value:
        """Set a setting (checked against its kind), cloud-wide or in the scope ``args`` names (a scope
        its ``Setting.scope`` allows); None resets it (to the default, or in a scope to the cloud-wide
        value)."""
        setting = SETTINGS.get(name)
        if setting is None:
            raise InvalidParameter(f"there is no setting named {name!r} (see listConfigurations)")
        if value is not None:
            check(setting, value)

        def work(conn: Connection) -> Value:
            scope = scope_of(conn, args or {})
            if scope is not None and scope.kind != setting.scope:
                where = ("only cloud-wide" if setting.scope == "Global"
                         else f"cloud-wide or per {setting.scope}")
                raise InvalidParameter(f"{setting.name} is set {where}, not per {scope.kind}")
            return _set(conn, setting, value, scope)

        return await self.db.run(work)
