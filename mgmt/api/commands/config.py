"""Settings, the audit trail and capacity: listConfigurations, updateConfiguration, listEvents,
listCapacity."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ...db.schema import (
    accounts,
    configuration,
    domains,
    events,
    host_capacity,
    hosts,
    ip_ranges,
    networks,
    nics,
    storage_pools,
    users,
    zones,
)
from ...errors import InvalidParameter
from ...settings import KIND_NAMES, SETTINGS
from ..registry import Param, command
from ..signing import parse_expires
from .common import OWNER, PAGING, date, fetch, keyword, listing, matching, owner_filter, page

if TYPE_CHECKING:
    from ..app import Context


def configuration_view(r: Any) -> dict[str, Any]:
    return {
        "name": r.name,
        "value": r.value if r.value is not None else r.default_value,
        "defaultvalue": r.default_value,
        "category": r.category,
        "description": r.description,
        "scope": r.scope.lower(),
        "isdynamic": False,  # read at start-up: a change applies when the server restarts
    }


def _list(conn: Connection, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = [*keyword(configuration.c.name, args)]
    where += matching(args, {"name": configuration.c.name, "category": configuration.c.category})
    rows, total = fetch(conn, sa.select(configuration).where(*where), configuration.c.name, args)
    return [configuration_view(r) for r in rows], total


@command(
    "listConfigurations",
    "Lists the cloud's settings with their values.",
    Param("name", description="one setting, by name"),
    Param("category", description="Advanced, Alert, Storage..."),
    *PAGING,
    admin=True,
    response="configuration",
)
async def list_configurations(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    items, total = await ctx.read(_list, args)
    return listing("configuration", items, total)


def _update(conn: Connection, name: str, value: str | None) -> dict[str, Any]:
    conn.execute(configuration.update().where(configuration.c.name == name).values(value=value))
    return configuration_view(
        conn.execute(sa.select(configuration).where(configuration.c.name == name)).one()
    )


@command(
    "updateConfiguration",
    "Changes a setting (it applies when the management server restarts); no value resets it to its default.",
    Param("name", required=True, description="the setting's name"),
    Param("value", description="the new value (none: the default)", length=4096),
    admin=True,
    event="CONFIGURATION.VALUE.EDIT",
    response="configuration",
)
async def update_configuration(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    setting = SETTINGS.get(args["name"])
    if setting is None:
        raise InvalidParameter(f"there is no setting named {args['name']!r} (see listConfigurations)")
    value = args.get("value")
    if value is not None:
        try:
            parsed = setting.kind(value)
        except ValueError:
            kind = KIND_NAMES.get(setting.kind, "text")
            raise InvalidParameter(f"{setting.name} must be {kind}, not {value[:64]!r}") from None
        if setting.kind in (int, float) and parsed < 0:  # type: ignore[operator]
            raise InvalidParameter(f"{setting.name} must not be negative")
    view = await ctx.run(_update, setting.name, value)
    await ctx.event(
        "CONFIGURATION.VALUE.EDIT", f"setting {setting.name} = {view['value']}", resource_type="Configuration"
    )
    return {"configuration": view}


def _events(conn: Connection, caller: Any, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    query = (
        sa.select(
            events,
            users.c.username,
            accounts.c.name.label("account_name"),
            domains.c.uuid.label("domain_uuid"),
            domains.c.name.label("domain_name"),
        )
        .outerjoin(users, users.c.id == events.c.user_id)
        .outerjoin(accounts, accounts.c.id == events.c.account_id)
        .outerjoin(domains, domains.c.id == accounts.c.domain_id)
    )
    where = [*owner_filter(conn, caller, args, events.c.account_id), *keyword(events.c.description, args)]
    where += matching(
        args,
        {
            "id": events.c.uuid,
            "type": events.c.type,
            "level": events.c.level,
            "resourceid": events.c.resource_uuid,
        },
    )
    for key, op in (("startdate", "__ge__"), ("enddate", "__le__")):
        if key in args:
            try:
                stamp = parse_expires(args[key])
            except ValueError:
                raise InvalidParameter(f"{key} must be a date like 2026-01-01T00:00:00+0000") from None
            where.append(getattr(events.c.created, op)(stamp))
    rows, total = fetch(conn, query.where(*where), events.c.id.desc(), args)
    return [
        {
            "id": r.uuid,
            "type": r.type,
            "state": r.state,
            "level": r.level,
            "description": r.description,
            "username": r.username,
            "account": r.account_name,
            "domainid": r.domain_uuid,
            "domain": r.domain_name,
            "resourcetype": r.resource_type,
            "resourceid": r.resource_uuid,
            "created": date(r.created),
        }
        for r in rows
    ], total


@command(
    "listEvents",
    "Lists the audit trail, newest first: who did what, and how it ended.",
    Param("id", "uuid", description="the event's id"),
    Param("type", description="the event type, e.g. VM.CREATE"),
    Param("level", description="INFO or ERROR"),
    Param("resourceid", "uuid", description="events about this resource"),
    Param("startdate", description="events since (2026-01-01T00:00:00+0000)"),
    Param("enddate", description="events until (2026-01-01T00:00:00+0000)"),
    Param("duration", "integer", description="accepted for compatibility"),
    *OWNER,
    *PAGING,
    response="event",
)
async def list_events(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    items, total = await ctx.read(_events, ctx.caller, args)
    return listing("event", items, total)


# CloudStack's capacity types
MEMORY, CPU, STORAGE, STORAGE_ALLOCATED, GUEST_IPS, CPU_CORES = 0, 1, 2, 3, 8, 19


def _capacity(conn: Connection, values: dict[str, Any], args: dict[str, Any]) -> list[dict[str, Any]]:
    cpu_factor = float(values.get("cpu.overprovisioning.factor", 1.0))
    mem_factor = float(values.get("mem.overprovisioning.factor", 1.0))
    zone_where = [zones.c.removed.is_(None)]
    if "zoneid" in args:
        zone_where.append(zones.c.uuid == args["zoneid"])
    out = []
    for zone in conn.execute(sa.select(zones).where(*zone_where).order_by(zones.c.id)):
        hc = conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(host_capacity.c.memory_total), 0),
                sa.func.coalesce(
                    sa.func.sum(host_capacity.c.memory_used + host_capacity.c.memory_reserved), 0
                ),
                sa.func.coalesce(sa.func.sum(host_capacity.c.cpu_mhz_total), 0),
                sa.func.coalesce(
                    sa.func.sum(host_capacity.c.cpu_mhz_used + host_capacity.c.cpu_mhz_reserved), 0
                ),
                sa.func.coalesce(sa.func.sum(host_capacity.c.cpu_cores), 0),
                sa.func.coalesce(sa.func.sum(host_capacity.c.cores_used), 0),
            )
            .join(hosts, hosts.c.id == host_capacity.c.host_id)
            .where(hosts.c.zone_id == zone.id, hosts.c.removed.is_(None))
        ).one()
        pools = conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(storage_pools.c.capacity_bytes), 0),
                sa.func.coalesce(sa.func.sum(storage_pools.c.used_bytes), 0),
                sa.func.coalesce(sa.func.sum(storage_pools.c.reserved_bytes), 0),
            ).where(storage_pools.c.zone_id == zone.id, storage_pools.c.removed.is_(None))
        ).one()
        ip_total = 0
        for start, end in conn.execute(
            sa.select(ip_ranges.c.start_ip, ip_ranges.c.end_ip)
            .join(networks, networks.c.id == ip_ranges.c.network_id)
            .where(networks.c.zone_id == zone.id, networks.c.removed.is_(None))
        ):
            ip_total += int(ipaddress.ip_address(end)) - int(ipaddress.ip_address(start)) + 1
        ips_used = (
            conn.scalar(
                sa.select(sa.func.count())
                .select_from(nics)
                .join(networks, networks.c.id == nics.c.network_id)
                .where(networks.c.zone_id == zone.id, nics.c.ip_address.is_not(None))
            )
            or 0
        )
        figures = (
            (MEMORY, int(hc[1]), int(hc[0] * mem_factor)),
            (CPU, int(hc[3]), int(hc[2] * cpu_factor)),
            (STORAGE, int(pools[1]), int(pools[0])),
            (STORAGE_ALLOCATED, int(pools[1] + pools[2]), int(pools[0])),
            (GUEST_IPS, int(ips_used), ip_total),
            (CPU_CORES, int(hc[5]), int(hc[4])),
        )
        for kind, used, total in figures:
            if "type" in args and args["type"] != kind:
                continue
            out.append(
                {
                    "type": kind,
                    "zoneid": zone.uuid,
                    "zonename": zone.name,
                    "capacityused": used,
                    "capacitytotal": total,
                    "percentused": f"{100.0 * used / total:.2f}" if total else "0",
                }
            )
    if args.get("sortby") == "usage":
        out.sort(key=lambda c: -float(c["percentused"]))
    return out


@command(
    "listCapacity",
    "Lists each zone's capacity: memory (0), CPU (1), storage used (2) and allocated (3), guest IPs (8), "
    "CPU cores (19).",
    Param("zoneid", "uuid", description="one zone"),
    Param("type", "integer", description="one capacity type"),
    Param("sortby", description="usage: fullest first"),
    Param("fetchlatest", "boolean", description="accepted for compatibility (figures are always current)"),
    *PAGING,
    admin=True,
    response="capacity",
)
async def list_capacity(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    items = await ctx.read(_capacity, ctx.services.values, args)
    offset, limit = page(args)
    return listing("capacity", items[offset : None if limit is None else offset + limit], len(items))
