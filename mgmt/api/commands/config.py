"""Settings, the audit trail, alerts and capacity: listConfigurations, updateConfiguration, listEvents,
listAlerts, archiveAlerts, deleteAlerts, listCapacity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import InvalidParameter
from ...services.settings import Value
from ...settings import GROUPS, boolean
from ..registry import Param, command, refuse
from ..signing import parse_expires
from .common import OWNER, PAGING, date, listing, page, success, uuids

if TYPE_CHECKING:
    from ..app import Context


def configuration_view(v: Value) -> dict[str, Any]:
    s = v.setting
    group, subgroup = s.group
    view: dict[str, Any] = {
        "name": s.name,
        "value": v.value if v.value is not None else v.default,
        "defaultvalue": v.default,
        "category": s.category,
        "group": group,
        "subgroup": subgroup,
        "description": s.description,
        "displaytext": s.name,
        "type": TYPE_NAMES.get(s.kind, "String"),
        "scope": s.scope.lower(),
        "isdynamic": s.dynamic or v.scope is not None,  # (scoped values are read where they apply)
        "component": "management-server",
    }
    if s.parent:
        view["parent"] = s.parent
    if v.scope is not None:
        view["id"] = v.scope.uuid
    return view


TYPE_NAMES: dict[object, str] = {int: "Number", float: "Decimal", boolean: "Boolean", str: "String"}
_SCOPE_PARAMS = (
    Param("zoneid", "uuid", description="a zone: the value there (settings of zone scope)"),
    Param("clusterid", "uuid", description="a cluster: the value there (CPU and memory overprovisioning)"),
    Param("storageid", "uuid", description="a storage pool: the value there (storage overprovisioning)"),
    Param("domainid", "uuid", description="a domain: the value there (password policy)"),
    Param("accountid", "uuid", description="an account: the value there (allow.user.expunge.recover.vm)"),
    *refuse("there are no image stores here: templates are served by the management servers",
            "imagestoreuuid", applies=True),
)


@command(
    "listConfigurations",
    "Lists the cloud's settings with their values: cloud-wide, or with zoneid, clusterid, storageid, "
    "domainid or accountid the settings of that scope with their values there.",
    Param("name", description="one setting, by name"),
    Param("category", description="Advanced, Alert, Storage..."),
    Param("group", description="the settings of a group (listConfigurationGroups)"),
    Param("subgroup", description="the settings of a subgroup"),
    Param("parent", description="the settings a setting turns on (e.g. prometheus.exporter.enable)"),
    *_SCOPE_PARAMS,
    *PAGING,
    admin=True,
    response="configuration",
)
async def list_configurations(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    rows, total = await ctx.services.settings.matching(args)
    return listing("configuration", [configuration_view(r) for r in rows], total)


async def _set(ctx: Context, args: dict[str, Any], value: str | None, event: str) -> dict[str, Any]:
    found = await ctx.services.settings.update(args["name"], value, args)
    if found.scope is not None and found.scope.kind in ("Cluster", "StoragePool", "Zone"):
        await ctx.services.placement.inventory_changed()  # (the planner's indexes hold them)
    view = configuration_view(found)
    where = f" for {found.scope.kind} {found.scope.uuid}" if found.scope is not None else ""
    await ctx.event(event, f"setting {view['name']}{where} = {view['value']}", resource_type="Configuration")
    return {"configuration": view}


@command(
    "updateConfiguration",
    "Changes a setting, cloud-wide or (zoneid, clusterid, storageid, domainid, accountid) in one place of "
    "its scope; no value resets it. A cloud-wide change applies at restart unless the setting is dynamic; "
    "a scoped one at once.",
    Param("name", required=True, description="the setting's name"),
    Param("value", description="the new value (none: the default)", length=4096),
    *_SCOPE_PARAMS,
    admin=True,
    event="CONFIGURATION.VALUE.EDIT",
    response="configuration",
)
async def update_configuration(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _set(ctx, args, args.get("value"), "CONFIGURATION.VALUE.EDIT")


@command(
    "resetConfiguration",
    "Resets a setting to its default, or in one zone, cluster, storage pool, domain or account to the "
    "cloud-wide value.",
    Param("name", required=True, description="the setting's name"),
    *_SCOPE_PARAMS[:-1],
    *refuse("there are no image stores here: templates are served by the management servers",
            "imagestoreid", applies=True),
    admin=True,
    event="CONFIGURATION.VALUE.EDIT",
    response="configuration",
)
async def reset_configuration(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _set(ctx, args, None, "CONFIGURATION.VALUE.EDIT")


@command(
    "listConfigurationGroups",
    "Lists the groups settings are sorted in, with their subgroups.",
    Param("group", description="one group, by name"),
    *PAGING,
    admin=True,
    response="configurationgroup",
)
async def list_configuration_groups(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    items = [{"name": name, "description": text, "precedence": precedence,
              "subgroup": [{"name": sub, "precedence": i + 1} for i, sub in enumerate(subgroups)]}
             for name, text, precedence, subgroups in GROUPS
             if args.get("group", name) == name and args.get("keyword", "").lower() in name.lower()]
    offset, limit = page(args)
    return listing("configurationgroup", items[offset: None if limit is None else offset + limit], len(items))


def event_view(r: Any) -> dict[str, Any]:
    return {
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


@command(
    "listEvents",
    "Lists the audit trail, newest first: who did what, and how it ended.",
    Param("id", "uuid", description="the event's id"),
    Param("type", description="the event type, e.g. VM.CREATE"),
    Param("level", description="INFO or ERROR"),
    Param("resourceid", "uuid", description="events about this resource"),
    Param("startdate", description="events since (2026-01-01T00:00:00+0000)"),
    Param("enddate", description="events until (2026-01-01T00:00:00+0000)"),
    Param("resourcetype", description="events about resources of this type (VirtualMachine, Volume...)"),
    Param("archived", "boolean", description="true: archived events (events are never archived here)"),
    Param("entrytime", "integer",
          description="with duration: the jobs begun entrytime to duration seconds ago and not ended yet "
                      "(their first event)"),
    Param("duration", "integer", description="with entrytime: see entrytime"),
    Param("startid", "uuid", description="an event and the others of its job"),
    *OWNER,
    *PAGING,
    response="event",
)
async def list_events(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    dates = {}
    for key in ("startdate", "enddate"):
        if key in args:
            try:
                dates[key] = parse_expires(args[key])
            except ValueError:
                raise InvalidParameter(f"{key} must be a date like 2026-01-01T00:00:00+0000") from None
    rows, total = await ctx.services.events.visible(ctx.caller, args, since=dates.get("startdate"),
                                                    until=dates.get("enddate"))
    return listing("event", [event_view(r) for r in rows], total)


@command(
    "listCapacity",
    "Lists each zone's capacity: memory (0), CPU (1), storage used (2) and allocated (3), guest IPs (8), "
    "CPU cores (19).",
    Param("zoneid", "uuid", description="one zone"),
    Param("podid", "uuid", description="one pod (its hosts and pools)"),
    Param("clusterid", "uuid", description="one cluster (its hosts and pools)"),
    Param("type", "integer", description="one capacity type"),
    Param("sortby", description="usage: fullest first"),
    Param("fetchlatest", "boolean", description="the figures are read afresh at every call anyway"),
    *refuse("capacity by host or storage tag is not supported yet", "tag", applies=True),
    *PAGING,
    admin=True,
    response="capacity",
)
async def list_capacity(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    found = await ctx.services.capacity.of_zones(args.get("zoneid", ""), pod_uuid=args.get("podid", ""),
                                                 cluster_uuid=args.get("clusterid", ""))
    items: list[dict[str, Any]] = [
        {k: v for k, v in {
            "type": c.type,
            "zoneid": c.zone_uuid,
            "zonename": c.zone_name,
            "podid": c.pod_uuid,
            "podname": c.pod_name,
            "clusterid": c.cluster_uuid,
            "clustername": c.cluster_name,
            "capacityused": c.used,
            "capacitytotal": c.total,
            "percentused": f"{c.percent_used:.2f}" if c.total else "0",
        }.items() if v is not None}
        for c in found
        if ("type" not in args or args["type"] == c.type)
        and args.get("keyword", "").lower() in c.zone_name.lower()
    ]
    if args.get("sortby") == "usage":
        items.sort(key=lambda c: -float(c["percentused"]))
    offset, limit = page(args)
    return listing("capacity", items[offset : None if limit is None else offset + limit], len(items))


# --- alerts --------------------------------------------------------------------------------------------


def alert_view(r: Any) -> dict[str, Any]:
    return {"id": r.uuid, "type": r.type, "name": r.name, "description": r.description,
            "sent": date(r.created)}


@command(
    "listAlerts",
    "Lists alerts not archived, newest first: hosts down (type 7), HA that failed (8), capacity past "
    "its notification threshold (0 memory, 1 CPU, 2 storage, 3 storage allocated).",
    Param("id", "uuid", description="the alert's id"),
    Param("name", description="the alert type's name (ALERT.HOST...)"),
    Param("type", description="the alert type number"),
    *PAGING,
    admin=True,
    response="alert",
)
async def list_alerts(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    rows, total = await ctx.services.alerts.matching(args)
    return listing("alert", [alert_view(r) for r in rows], total)


def _alert_selection(args: dict[str, Any]) -> dict[str, Any]:
    chosen: dict[str, Any] = {"ids": uuids(args, "ids"), "type_": args.get("type")}
    for key, name in (("startdate", "since"), ("enddate", "until")):
        if key in args:
            try:
                chosen[name] = parse_expires(args[key])
            except ValueError:
                raise InvalidParameter(f"{key} must be a date like 2026-01-01T00:00:00+0000") from None
    return chosen


_ALERT_SELECTION = (
    Param("ids", "list", description="comma-separated alert ids"),
    Param("type", description="every alert of this type number"),
    Param("startdate", "date", description="alerts sent since (2026-01-01T00:00:00+0000)"),
    Param("enddate", "date", description="alerts sent until"),
)


@command("archiveAlerts", "Archives alerts: kept, no longer listed.", *_ALERT_SELECTION, admin=True,
         event="ALERT.ARCHIVE")
async def archive_alerts(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    done = await ctx.services.alerts.archive(**_alert_selection(args))
    await ctx.event("ALERT.ARCHIVE", f"archived {done} alert(s)")
    return success(f"archived {done} alert(s)")


@command("deleteAlerts", "Deletes alerts.", *_ALERT_SELECTION, admin=True, event="ALERT.DELETE")
async def delete_alerts(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    done = await ctx.services.alerts.delete(**_alert_selection(args))
    await ctx.event("ALERT.DELETE", f"deleted {done} alert(s)")
    return success(f"deleted {done} alert(s)")


@command(
    "listManagementServers",
    "Lists the management servers sharing this cloud's database: Up while their heartbeat is fresh "
    "(cluster.heartbeat.threshold), Down once stopped or silent.",
    Param("id", "uuid", description="one server"),
    Param("name", description="servers of this (host) name"),
    *PAGING,
    admin=True,
    response="managementserver",
)
async def list_management_servers(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    found = await ctx.services.management_servers.list()
    keyword = args.get("keyword", "").lower()
    items = [
        {
            "id": s.uuid,
            "name": s.name,
            "state": s.state,
            "version": s.version,
            "serviceip": s.address,
            "lastserverstart": date(s.started),
            **({"lastserverstop": date(s.stopped)} if s.stopped is not None else {}),
        }
        for s in found
        if args.get("id", s.uuid) == s.uuid and args.get("name", s.name) == s.name
        and (not keyword or keyword in s.name.lower() or keyword in s.address.lower())
    ]
    offset, limit = page(args)
    return listing("managementserver", items[offset : None if limit is None else offset + limit], len(items))
