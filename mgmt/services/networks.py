"""Shared guest networks with their IP ranges: which exist, creating one (its addresses checked: the
range inside the network, the gateway outside the range, a VLAN id or untagged), deleting one no NIC
uses any more.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.database import inserted_id
from ..db.schema import ip_ranges, networks, nics, zones
from ..errors import InvalidParameter, ResourceInUse
from .caller import Caller
from .crud import Filters, Row
from .queries import fetch, find, keyword, matching, new_uuid, now

if TYPE_CHECKING:
    from ..db.database import Database


@dataclass(frozen=True)
class Network:
    """A network's row and its IP ranges (first and last address of each)."""

    row: Row
    ranges: list[tuple[str, str]]


@dataclass(frozen=True)
class NetworkSpec:
    zone_uuid: str
    name: str
    gateway: str
    netmask: str
    start_ip: str
    end_ip: str = ""  # default: start_ip
    vlan: str = "untagged"
    dns1: str | None = None
    dns2: str | None = None
    bridge: str = ""


def _query() -> sa.Select[Any]:
    return sa.select(networks, zones.c.uuid.label("zone_uuid"), zones.c.name.label("zone_name")).join(
        zones, zones.c.id == networks.c.zone_id
    )


def _with_ranges(conn: Connection, rows: list[Row]) -> list[Network]:
    ranges: dict[int, list[tuple[str, str]]] = {}
    ids = [r.id for r in rows]
    if ids:
        for rng in conn.execute(
            sa.select(ip_ranges).where(ip_ranges.c.network_id.in_(ids)).order_by(ip_ranges.c.id)
        ):
            ranges.setdefault(rng.network_id, []).append((rng.start_ip, rng.end_ip))
    return [Network(r, ranges.get(r.id, [])) for r in rows]


def _list(conn: Connection, args: Filters) -> tuple[list[Network], int]:
    where = [networks.c.removed.is_(None), *keyword(networks.c.name, args)]
    where += matching(args, {"id": networks.c.uuid, "name": networks.c.name, "zoneid": zones.c.uuid,
                             "type": networks.c.guest_type})
    if args.get("traffictype", "Guest") != "Guest":
        return [], 0
    rows, total = fetch(conn, _query().where(*where), networks.c.id, args)
    return _with_ranges(conn, rows), total


def _ip(value: str, name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise InvalidParameter(f"parameter {name}: {value[:64]!r} is not an IP address") from None


def _create(conn: Connection, caller: Caller, spec: NetworkSpec) -> Network:
    zone = find(conn, caller, zones, spec.zone_uuid, "zone")
    gateway, start = _ip(spec.gateway, "gateway"), _ip(spec.start_ip, "startip")
    end = _ip(spec.end_ip, "endip") if spec.end_ip else start
    try:
        cidr = ipaddress.ip_network(f"{gateway}/{spec.netmask}", strict=False)
    except ValueError:
        raise InvalidParameter(f"netmask {spec.netmask[:64]!r} is not a netmask") from None
    if start not in cidr or end not in cidr or int(start) > int(end):
        raise InvalidParameter(f"startip and endip must lie inside {cidr}, startip first")
    if int(start) <= int(gateway) <= int(end):
        raise InvalidParameter("the gateway must not lie inside the IP range")
    if conn.scalar(sa.select(networks.c.id).where(
        networks.c.zone_id == zone.id, networks.c.name == spec.name, networks.c.removed.is_(None)
    )):
        raise InvalidParameter(f"zone {zone.name} has a network named {spec.name!r} already")
    vlan = spec.vlan
    if vlan != "untagged" and not (vlan.isdigit() and 1 <= int(vlan) <= 4094):
        raise InvalidParameter("vlan must be untagged or 1 to 4094")
    network_id = inserted_id(conn.execute(networks.insert().values(
        uuid=new_uuid(), name=spec.name, zone_id=zone.id, guest_type="Shared", cidr=str(cidr),
        gateway=str(gateway), netmask=str(cidr.netmask), dns1=spec.dns1, dns2=spec.dns2, vlan=vlan,
        bridge=spec.bridge, state="Setup", created=now(),
    )))
    conn.execute(ip_ranges.insert().values(network_id=network_id, start_ip=str(start), end_ip=str(end)))
    return _with_ranges(conn, [conn.execute(_query().where(networks.c.id == network_id)).one()])[0]


def _delete(conn: Connection, network_id: int) -> None:
    live = conn.scalar(
        sa.select(sa.func.count()).select_from(nics)
        .where(nics.c.network_id == network_id, nics.c.state != "Released")
    )
    if live:
        raise ResourceInUse(f"the network still has {live} NIC(s) of VMs; expunge or move them first")
    conn.execute(networks.update().where(networks.c.id == network_id).values(removed=now(), state="Destroy"))


class Networks:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def matching(self, args: Filters) -> tuple[list[Network], int]:
        """One page of the networks ``args`` asks for, and the total over every page."""
        return await self.db.read(_list, args)

    async def create(self, caller: Caller, spec: NetworkSpec) -> Network:
        return await self.db.run(_create, caller, spec)

    async def find(self, caller: Caller, ident: str) -> Row:
        return await self.db.read(find, caller, networks, ident, "network")

    async def delete(self, network_id: int) -> None:
        """Delete a network no NIC uses (marked removed)."""
        await self.db.run(_delete, network_id)
