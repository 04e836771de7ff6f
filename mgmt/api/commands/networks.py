"""Shared guest networks with IP ranges: listNetworks, createNetwork, deleteNetwork."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ...db.database import inserted_id
from ...db.schema import ip_ranges, networks, nics, zones
from ...errors import InvalidParameter, ResourceInUse
from ..registry import Param, command
from .common import OWNER, PAGING, date, fetch, find, keyword, listing, matching, new_uuid, now

if TYPE_CHECKING:
    from ..app import Context

_NETWORK_OFFERING = "a1a4b1a0-6d0e-4a9c-8a36-5b0c0f0e5a11"  # the one built-in offering: shared, no services


def _query() -> sa.Select[Any]:
    return sa.select(networks, zones.c.uuid.label("zone_uuid"), zones.c.name.label("zone_name")).join(
        zones, zones.c.id == networks.c.zone_id
    )


def network_view(r: Any, ranges: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": r.uuid,
        "name": r.name,
        "displaytext": r.name,
        "zoneid": r.zone_uuid,
        "zonename": r.zone_name,
        "type": r.guest_type,
        "traffictype": "Guest",
        "state": r.state,
        "cidr": r.cidr,
        "gateway": r.gateway,
        "netmask": r.netmask,
        "dns1": r.dns1 or "",
        "dns2": r.dns2 or "",
        "vlan": r.vlan,
        "broadcasturi": f"vlan://{r.vlan}",
        "broadcastdomaintype": "Vlan",
        "acltype": "Domain",
        "canusefordeploy": True,
        "isdefault": False,
        "ispersistent": True,
        "issystem": False,
        "specifyipranges": True,
        "networkofferingid": _NETWORK_OFFERING,
        "networkofferingname": "DefaultSharedNetworkOffering",
        "startip": ranges[0][0] if ranges else None,
        "endip": ranges[-1][1] if ranges else None,
        "service": [],
        "tags": [],
        "created": date(r.created),
    }


def _views(conn: Connection, rows: list[Any]) -> list[dict[str, Any]]:
    ranges: dict[int, list[tuple[str, str]]] = {}
    ids = [r.id for r in rows]
    if ids:
        for rng in conn.execute(
            sa.select(ip_ranges).where(ip_ranges.c.network_id.in_(ids)).order_by(ip_ranges.c.id)
        ):
            ranges.setdefault(rng.network_id, []).append((rng.start_ip, rng.end_ip))
    return [network_view(r, ranges.get(r.id, [])) for r in rows]


def _list(conn: Connection, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = [networks.c.removed.is_(None), *keyword(networks.c.name, args)]
    where += matching(
        args,
        {
            "id": networks.c.uuid,
            "name": networks.c.name,
            "zoneid": zones.c.uuid,
            "type": networks.c.guest_type,
        },
    )
    if args.get("traffictype", "Guest") != "Guest":
        return [], 0
    rows, total = fetch(conn, _query().where(*where), networks.c.id, args)
    return _views(conn, rows), total


@command(
    "listNetworks",
    "Lists guest networks (shared: every account may deploy on them).",
    Param("id", "uuid", description="the network's id"),
    Param("name", description="the network's name"),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("type", description="Shared (every network here)"),
    Param("traffictype", description="Guest (every network here)"),
    Param("canusefordeploy", "boolean", description="accepted for compatibility (always true)"),
    Param("isrecursive", "boolean", description="accepted for compatibility"),
    *OWNER,
    *PAGING,
    response="network",
)
async def list_networks(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    items, total = await ctx.read(_list, args)
    return listing("network", items, total)


def _ip(args: dict[str, Any], name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(args[name])
    except ValueError:
        raise InvalidParameter(f"parameter {name}: {args[name][:64]!r} is not an IP address") from None


def _create(conn: Connection, caller: Any, args: dict[str, Any]) -> dict[str, Any]:
    zone = find(conn, caller, zones, args["zoneid"], "zone")
    gateway, start = _ip(args, "gateway"), _ip(args, "startip")
    end = _ip(args, "endip") if "endip" in args else start
    try:
        cidr = ipaddress.ip_network(f"{gateway}/{args['netmask']}", strict=False)
    except ValueError:
        raise InvalidParameter(f"netmask {args['netmask'][:64]!r} is not a netmask") from None
    if start not in cidr or end not in cidr or start > end:  # type: ignore[operator]
        raise InvalidParameter(f"startip and endip must lie inside {cidr}, startip first")
    if start <= gateway <= end:  # type: ignore[operator]
        raise InvalidParameter("the gateway must not lie inside the IP range")
    if conn.scalar(
        sa.select(networks.c.id).where(
            networks.c.zone_id == zone.id, networks.c.name == args["name"], networks.c.removed.is_(None)
        )
    ):
        raise InvalidParameter(f"zone {zone.name} has a network named {args['name']!r} already")
    vlan = args.get("vlan", "untagged")
    if vlan != "untagged" and not (vlan.isdigit() and 1 <= int(vlan) <= 4094):
        raise InvalidParameter("vlan must be untagged or 1 to 4094")
    network_id = inserted_id(conn.execute(
        networks.insert().values(
            uuid=new_uuid(),
            name=args["name"],
            zone_id=zone.id,
            guest_type="Shared",
            cidr=str(cidr),
            gateway=str(gateway),
            netmask=str(cidr.netmask),
            dns1=args.get("dns1"),
            dns2=args.get("dns2"),
            vlan=vlan,
            bridge=args.get("bridge", ""),
            state="Setup",
            created=now(),
        )
    ))
    conn.execute(ip_ranges.insert().values(network_id=network_id, start_ip=str(start), end_ip=str(end)))
    return _views(conn, [conn.execute(_query().where(networks.c.id == network_id)).one()])[0]


@command(
    "createNetwork",
    "Creates a shared guest network with an IP range.",
    Param("zoneid", "uuid", required=True, description="the zone's id"),
    Param("name", required=True, description="the network's name"),
    Param("displaytext", description="its description"),
    Param("networkofferingid", "uuid", description="accepted (the one shared offering is used)"),
    Param("gateway", required=True, description="the gateway's address"),
    Param("netmask", required=True, description="the netmask"),
    Param("startip", required=True, description="the first address VMs get"),
    Param("endip", description="the last address VMs get (default: startip)"),
    Param("vlan", description="the VLAN id, or untagged"),
    Param("dns1", description="the first DNS server"),
    Param("dns2", description="the second DNS server"),
    Param("bridge", description="the host bridge VMs' NICs join (KVM)"),
    admin=True,
    event="NETWORK.CREATE",
    response="network",
)
async def create_network(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    network = await ctx.run(_create, ctx.caller, args)
    await ctx.event(
        "NETWORK.CREATE",
        f"created network {network['name']}",
        resource_type="Network",
        resource_uuid=network["id"],
    )
    return {"network": network}


def _delete(conn: Connection, network_id: int) -> None:
    live = conn.scalar(
        sa.select(sa.func.count())
        .select_from(nics)
        .where(nics.c.network_id == network_id, nics.c.state != "Released")
    )
    if live:
        raise ResourceInUse(f"the network still has {live} NIC(s) of VMs; expunge or move them first")
    conn.execute(networks.update().where(networks.c.id == network_id).values(removed=now(), state="Destroy"))


@command(
    "deleteNetwork",
    "Deletes a network no VM uses.",
    Param("id", "uuid", required=True, description="the network's id"),
    Param("forced", "boolean", description="accepted for compatibility; a network in use is never deleted"),
    admin=True,
    is_async=True,
    event="NETWORK.DELETE",
)
async def delete_network(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    row = await ctx.read(find, ctx.caller, networks, args["id"], "network")

    async def work() -> dict[str, Any]:
        await ctx.run(_delete, row.id)
        return {"success": True}

    job = await ctx.submit(
        work,
        description=f"deleted network {row.name}",
        instance_type="Network",
        instance_id=row.id,
        instance_uuid=row.uuid,
    )
    return {"jobid": job}
