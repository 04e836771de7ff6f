"""Guest networks with their IP ranges: which exist, creating one (its addresses checked: the range
inside the network, the gateway outside the range, a VLAN id or untagged), deleting one no NIC uses any
more. Shared networks are an admin's and every account deploys on them; isolated networks (the isolated
network offering) are an account's own, seen and used by it alone, a VXLAN segment while implemented
(``mgmt/network/lifecycle.py``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import limits
from ..db.database import inserted_id
from ..db.schema import accounts, domains, ip_ranges, network_offerings, networks, nics, vms, zones
from ..errors import InvalidParameter, PermissionDenied, ResourceInUse
from ..network import lifecycle
from .caller import Caller
from .crud import Filters, Row
from .queries import acting_for, fetch, find, keyword, matching, new_uuid, now, owner_filter, owns
from .tags import tagged

SHARED_OFFERING = "DefaultSharedNetworkOffering"
ISOLATED_DEFAULTS = ("10.1.1.1", "255.255.255.0")  # CloudStack's guest CIDR for isolated networks

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
    start_ip: str = ""  # shared: required; isolated: default the first address after the gateway
    end_ip: str = ""  # default: start_ip (isolated: the last address of the network)
    vlan: str = "untagged"
    dns1: str | None = None
    dns2: str | None = None
    bridge: str = ""
    offering_uuid: str = ""  # default: the shared offering
    account: str = ""  # an isolated network's owner, when an admin makes it for another account
    domain_uuid: str = ""
    project_uuid: str = ""  # an isolated network's owner: this project
    external_id: str | None = None  # its id in another system (kept, shown)
    bypass_vlan_overlap: bool = False  # (root admins) a shared network may reuse a VLAN of the zone


def _query() -> sa.Select[Any]:
    shared = sa.select(network_offerings.c.id).where(network_offerings.c.name == SHARED_OFFERING)
    return (
        sa.select(networks, zones.c.uuid.label("zone_uuid"), zones.c.name.label("zone_name"),
                  network_offerings.c.uuid.label("offering_uuid"),
                  network_offerings.c.name.label("offering_name"),
                  accounts.c.name.label("account_name"), domains.c.uuid.label("domain_uuid"),
                  domains.c.name.label("domain_name"))
        .join(zones, zones.c.id == networks.c.zone_id)
        .join(network_offerings, network_offerings.c.id == sa.func.coalesce(networks.c.network_offering_id,
                                                                           shared.scalar_subquery()))
        .outerjoin(accounts, accounts.c.id == networks.c.account_id)
        .outerjoin(domains, domains.c.id == accounts.c.domain_id)
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


NETWORK_FILTERS = ("all", "account", "domain", "accountdomain", "shared")


def _list(conn: Connection, caller: Caller, args: Filters) -> tuple[list[Network], int]:
    mine = owner_filter(conn, caller, args, networks.c.account_id)
    where = [networks.c.removed.is_(None), *keyword(networks.c.name, args),
             sa.or_(networks.c.account_id.is_(None), *mine) if mine else sa.true()]
    where += matching(args, {"id": networks.c.uuid, "name": networks.c.name, "zoneid": zones.c.uuid,
                             "type": networks.c.guest_type, "networkofferingid": network_offerings.c.uuid})
    if args.get("traffictype", "Guest") != "Guest" or args.get("forvpc") or args.get("issystem") \
            or args.get("restartrequired") or args.get("displaynetwork") is False:
        return [], 0  # (no VPC, system or hidden networks; none ever waits for a restart)
    if "acltype" in args:
        shared = args["acltype"].lower() == "domain"
        where.append(networks.c.guest_type == ("Shared" if shared else "Isolated"))
    if "specifyipranges" in args:
        where.append(networks.c.guest_type == ("Shared" if args["specifyipranges"] else "Isolated"))
    if "vlan" in args:
        vni = sa.cast(networks.c.vni, sa.String)
        where.append(sa.or_(networks.c.vlan == args["vlan"], vni == args["vlan"]))
    where += tagged(args, "Network", networks.c.uuid)
    flt = args.get("networkfilter", "all").lower()
    if flt not in NETWORK_FILTERS:
        raise InvalidParameter(f"networkfilter must be one of {', '.join(NETWORK_FILTERS)}")
    if flt in ("domain", "shared"):
        where.append(networks.c.guest_type == "Shared")
    elif flt == "account":
        where.append(networks.c.account_id == caller.account_id)
    if "supportedservices" in args:
        wanted = {s.lower() for s in args["supportedservices"]}
        if wanted - {"userdata", "securitygroup"}:
            return [], 0  # (no network here offers another service)
        if "securitygroup" in wanted:
            where.append(network_offerings.c.security_groups.is_(True))
    rows, total = fetch(conn, _query().where(*where), networks.c.id, args)
    return _with_ranges(conn, rows), total


def _ip(value: str, name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise InvalidParameter(f"parameter {name}: {value[:64]!r} is not an IP address") from None


def _offering(conn: Connection, ident: str) -> Row:
    query = sa.select(network_offerings).where(network_offerings.c.removed.is_(None))
    row = conn.execute(query.where(network_offerings.c.uuid == ident) if ident
                       else query.where(network_offerings.c.name == SHARED_OFFERING)).first()
    if row is None or row.state != "Enabled":
        raise InvalidParameter(f"unable to find network offering with id {ident}")
    return row


def _create(conn: Connection, caller: Caller, spec: NetworkSpec) -> Network:
    zone = find(conn, caller, zones, spec.zone_uuid, "zone")
    offering = _offering(conn, spec.offering_uuid)
    isolated = offering.guest_type == "Isolated"
    account_id = None
    if isolated:
        if spec.vlan != "untagged" or spec.bridge:
            raise InvalidParameter("an isolated network gets its own VXLAN segment: give no vlan or bridge")
        account_id = acting_for(conn, caller, spec.account, spec.domain_uuid, spec.project_uuid)
    elif not caller.is_admin:
        raise PermissionDenied("only admins may create shared networks")
    elif not spec.start_ip:
        raise InvalidParameter("a shared network needs startip (its IP range)")
    gateway = _ip(spec.gateway or (ISOLATED_DEFAULTS[0] if isolated else ""), "gateway")
    netmask = spec.netmask or (ISOLATED_DEFAULTS[1] if isolated else "")
    try:
        cidr = ipaddress.ip_network(f"{gateway}/{netmask}", strict=False)
    except ValueError:
        raise InvalidParameter(f"netmask {netmask[:64]!r} is not a netmask") from None
    if spec.start_ip:
        start = _ip(spec.start_ip, "startip")
        end = _ip(spec.end_ip, "endip") if spec.end_ip else start
        if start not in cidr or end not in cidr or int(start) > int(end):
            raise InvalidParameter(f"startip and endip must lie inside {cidr}, startip first")
        if int(start) <= int(gateway) <= int(end):
            raise InvalidParameter("the gateway must not lie inside the IP range")
        ranges = [(start, end)]
    else:  # an isolated network's every host address but the gateway's: a range each side of it
        first, last = cidr.network_address + 1, cidr.broadcast_address - 1
        if gateway not in cidr or int(first) > int(last):
            raise InvalidParameter(f"the gateway must lie inside {cidr}, which must have room for hosts")
        ranges = [(a, b) for a, b in ((first, gateway - 1), (gateway + 1, last)) if int(a) <= int(b)]
    if conn.scalar(sa.select(networks.c.id).where(
        networks.c.zone_id == zone.id, networks.c.name == spec.name, networks.c.removed.is_(None)
    )):
        raise InvalidParameter(f"zone {zone.name} has a network named {spec.name!r} already")
    vlan = spec.vlan
    if vlan != "untagged" and not (vlan.isdigit() and 1 <= int(vlan) <= 4094):
        raise InvalidParameter("vlan must be untagged or 1 to 4094")
    if vlan != "untagged" and not isolated:
        sharing = conn.scalar(sa.select(networks.c.name).where(
            networks.c.zone_id == zone.id, networks.c.vlan == vlan, networks.c.guest_type != "Isolated",
            networks.c.removed.is_(None)))
        if sharing is not None and not spec.bypass_vlan_overlap:
            raise InvalidParameter(f"VLAN {vlan} is network {sharing}'s in zone {zone.name}: pass "
                                   "bypassvlanoverlapcheck=true (root admins) to share it")
        if sharing is not None and not caller.is_admin:
            raise PermissionDenied("only root admins may bypass the VLAN overlap check")
    network_id = inserted_id(conn.execute(networks.insert().values(
        uuid=new_uuid(), name=spec.name, zone_id=zone.id, guest_type=offering.guest_type, cidr=str(cidr),
        gateway=str(gateway), netmask=str(cidr.netmask), dns1=spec.dns1, dns2=spec.dns2, vlan=vlan,
        bridge=spec.bridge, state="Allocated" if isolated else "Setup", network_offering_id=offering.id,
        account_id=account_id, external_id=spec.external_id, created=now(),
    )))
    conn.execute(ip_ranges.insert(),
                 [{"network_id": network_id, "start_ip": str(a), "end_ip": str(b)} for a, b in ranges])
    if account_id is not None:
        limits.verify(conn, account_id, (limits.T.NETWORK,))
    return _with_ranges(conn, [conn.execute(_query().where(networks.c.id == network_id)).one()])[0]


def _delete(conn: Connection, network_id: int) -> None:
    live = conn.scalar(
        sa.select(sa.func.count()).select_from(nics)
        .where(nics.c.network_id == network_id, nics.c.state != "Released")
    )
    if live:
        raise ResourceInUse(f"the network still has {live} NIC(s) of VMs; expunge or move them first")
    conn.execute(networks.update().where(networks.c.id == network_id)
                 .values(removed=now(), state="Destroy", vni=None))


def _offerings(conn: Connection, args: Filters) -> tuple[list[Row], int]:
    where = [network_offerings.c.removed.is_(None), *keyword(network_offerings.c.name, args)]
    where += matching(args, {"id": network_offerings.c.uuid, "name": network_offerings.c.name,
                             "guestiptype": network_offerings.c.guest_type,
                             "state": network_offerings.c.state,
                             "displaytext": network_offerings.c.display_text})
    for param in ("specifyipranges", "specifyvlan"):  # (shared networks take both, isolated neither)
        if param in args:
            where.append(network_offerings.c.guest_type == ("Shared" if args[param] else "Isolated"))
    if "networkid" in args:  # what the network could change to: the other offerings of its kind
        network = conn.execute(sa.select(networks.c.network_offering_id, networks.c.guest_type).where(
            networks.c.uuid == args["networkid"], networks.c.removed.is_(None))).first()
        if network is None:
            raise InvalidParameter(f"unable to find network with id {args['networkid']}")
        current = network.network_offering_id or conn.scalar(
            sa.select(network_offerings.c.id).where(network_offerings.c.name == SHARED_OFFERING))
        where += [network_offerings.c.guest_type == network.guest_type, network_offerings.c.id != current]
    if "supportedservices" in args:
        wanted = {s.lower() for s in args["supportedservices"]}
        if wanted - {"userdata", "securitygroup"}:
            return [], 0
        if "securitygroup" in wanted:
            where.append(network_offerings.c.security_groups.is_(True))
    return fetch(conn, sa.select(network_offerings).where(*where), network_offerings.c.id, args)


def _restart(conn: Connection, network_id: int) -> Network:
    running = conn.scalar(
        sa.select(sa.func.count()).select_from(nics).join(vms, vms.c.id == nics.c.vm_id)
        .where(nics.c.network_id == network_id, nics.c.state != "Released", vms.c.removed.is_(None),
               vms.c.state.in_(lifecycle.ACTIVE_VM_STATES))
    )
    if running:
        lifecycle.implement(conn, [network_id])
    return _with_ranges(conn, [conn.execute(_query().where(networks.c.id == network_id)).one()])[0]


class Networks:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def matching(self, caller: Caller, args: Filters) -> tuple[list[Network], int]:
        """One page of the networks ``args`` asks for that the caller sees (shared ones, and its own
        isolated ones), and the total over every page."""
        return await self.db.read(_list, caller, args)

    async def offerings(self, args: Filters) -> tuple[list[Row], int]:
        return await self.db.read(_offerings, args)

    async def create(self, caller: Caller, spec: NetworkSpec) -> Network:
        return await self.db.run(_create, caller, spec)

    async def find(self, caller: Caller, ident: str) -> Row:
        """A network the caller may change: an admin any, an account its own isolated ones."""
        def work(conn: Connection) -> Row:
            row = find(conn, caller, networks, ident, "network")
            if not caller.is_admin and (row.account_id is None or not owns(conn, caller, row.account_id)):
                raise PermissionDenied(f"unable to find or access network {ident}")
            return row

        return await self.db.read(work)

    async def restart(self, network_id: int) -> Network:
        """Implement it again when a VM of it runs (an isolated network shut down by mistake gets a
        VXLAN id back); its row."""
        return await self.db.run(_restart, network_id)

    async def delete(self, network_id: int) -> None:
        """Delete a network no NIC uses (marked removed)."""
        await self.db.run(_delete, network_id)
