"""Guest networks with IP ranges (shared: an admin's, every account's to deploy on; isolated: an
account's own VXLAN segment): listNetworkOfferings, listNetworks, createNetwork, deleteNetwork,
restartNetwork."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...services.networks import NetworkSpec
from ..registry import Param, command
from .common import OWNER, PAGING, date, listing

if TYPE_CHECKING:
    from ..app import Context

def network_view(r: Any, ranges: list[tuple[str, str]]) -> dict[str, Any]:
    isolated = r.guest_type == "Isolated"
    view = {
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
        "vlan": str(r.vni) if isolated and r.vni is not None else None if isolated else r.vlan,
        "broadcasturi": (f"vxlan://{r.vni}" if r.vni is not None else None) if isolated else f"vlan://{r.vlan}",
        "broadcastdomaintype": "Vxlan" if isolated else "Vlan",
        "acltype": "Account" if isolated else "Domain",
        "account": r.account_name,
        "domainid": r.domain_uuid,
        "domain": r.domain_name,
        "canusefordeploy": True,
        "isdefault": False,
        "ispersistent": True,
        "issystem": False,
        "specifyipranges": not isolated,
        "networkofferingid": r.offering_uuid,
        "networkofferingname": r.offering_name,
        "startip": ranges[0][0] if ranges else None,
        "endip": ranges[-1][1] if ranges else None,
        "service": [],
        "tags": [],
        "created": date(r.created),
    }
    return {k: v for k, v in view.items() if v is not None}


def _offering_view(r: Any) -> dict[str, Any]:
    return {
        "id": r.uuid,
        "name": r.name,
        "displaytext": r.display_text,
        "guestiptype": r.guest_type,
        "traffictype": "Guest",
        "state": r.state,
        "isdefault": True,
        "ispersistent": False,
        "specifyvlan": r.guest_type == "Shared",
        "specifyipranges": r.guest_type == "Shared",
        "conservemode": True,
        "forvpc": False,
        "egressdefaultpolicy": True,
        "supportspublicaccess": False,
        "networkrate": -1,
        "service": [{"name": "UserData", "provider": [{"name": "ConfigDrive"}]}],
        "tags": [],
        "created": date(r.created),
    }


@command(
    "listNetworkOfferings",
    "Lists the network offerings: DefaultSharedNetworkOffering and DefaultIsolatedNetworkOffering.",
    Param("id", "uuid", description="the offering's id"),
    Param("name", description="the offering's name"),
    Param("guestiptype", description="Shared or Isolated"),
    Param("state", description="Enabled"),
    Param("zoneid", "uuid", description="accepted (every offering is offered in every zone)"),
    Param("traffictype", description="Guest (every offering here)"),
    Param("isdefault", "boolean", description="accepted for compatibility"),
    Param("forvpc", "boolean", description="accepted for compatibility (no VPCs)"),
    *PAGING,
    response="networkoffering",
)
async def list_network_offerings(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("traffictype", "Guest") != "Guest" or args.get("forvpc"):
        return {}
    rows, total = await ctx.services.networks.offerings(args)
    return listing("networkoffering", [_offering_view(r) for r in rows], total)


@command(
    "listNetworks",
    "Lists guest networks (shared: every account may deploy on them).",
    Param("id", "uuid", description="the network's id"),
    Param("name", description="the network's name"),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("type", description="Shared (every network here)"),
    Param("traffictype", description="Guest (every network here)"),
    Param("canusefordeploy", "boolean", description="accepted for compatibility (always true)"),
    *OWNER,
    *PAGING,
    response="network",
)
async def list_networks(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    found, total = await ctx.services.networks.matching(ctx.caller, args)
    return listing("network", [network_view(n.row, n.ranges) for n in found], total)


@command(
    "createNetwork",
    "Creates a guest network: shared (admins; with an IP range) or isolated (the caller's own VXLAN "
    "segment, with the isolated offering).",
    Param("zoneid", "uuid", required=True, description="the zone's id"),
    Param("name", required=True, description="the network's name"),
    Param("displaytext", description="its description"),
    Param("networkofferingid", "uuid", description="the offering (default: DefaultSharedNetworkOffering)"),
    Param("gateway", description="the gateway's address (isolated: default 10.1.1.1)"),
    Param("netmask", description="the netmask (isolated: default 255.255.255.0)"),
    Param("startip", description="the first address VMs get (shared: required; isolated: default the "
                                 "network's first)"),
    Param("endip", description="the last address VMs get (default: startip; isolated: the network's last)"),
    Param("vlan", description="the VLAN id, or untagged (shared only)"),
    Param("dns1", description="the first DNS server"),
    Param("dns2", description="the second DNS server"),
    Param("bridge", description="the host bridge VMs' NICs join (KVM; shared only)"),
    Param("account", description="an isolated network's owner (admins, with domainid)"),
    Param("domainid", "uuid", description="the owner's domain"),
    event="NETWORK.CREATE",
    response="network",
)
async def create_network(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    spec = NetworkSpec(args["zoneid"], args["name"], args.get("gateway", ""), args.get("netmask", ""),
                       args.get("startip", ""), args.get("endip", ""), args.get("vlan", "untagged"),
                       args.get("dns1"), args.get("dns2"), args.get("bridge", ""),
                       offering_uuid=args.get("networkofferingid", ""), account=args.get("account", ""),
                       domain_uuid=args.get("domainid", ""))
    made = await ctx.services.networks.create(ctx.caller, spec)
    network = network_view(made.row, made.ranges)
    await ctx.event(
        "NETWORK.CREATE",
        f"created network {network['name']}",
        resource_type="Network",
        resource_uuid=network["id"],
    )
    return {"network": network}


@command(
    "deleteNetwork",
    "Deletes a network no VM uses (admins: any; accounts: their isolated ones).",
    Param("id", "uuid", required=True, description="the network's id"),
    Param("forced", "boolean", description="accepted for compatibility; a network in use is never deleted"),
    is_async=True,
    event="NETWORK.DELETE",
)
async def delete_network(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    row = await ctx.services.networks.find(ctx.caller, args["id"])

    async def work() -> dict[str, Any]:
        await ctx.services.networks.delete(row.id)
        return {"success": True}

    job = await ctx.submit(
        work,
        description=f"deleted network {row.name}",
        instance_type="Network",
        instance_id=row.id,
        instance_uuid=row.uuid,
    )
    return {"jobid": job}


@command(
    "restartNetwork",
    "Implements a network again when a VM of it runs (its VXLAN segment back on its id).",
    Param("id", "uuid", required=True, description="the network's id"),
    Param("cleanup", "boolean", description="accepted for compatibility (there is no router to rebuild)"),
    Param("makeredundant", "boolean", description="accepted for compatibility"),
    is_async=True,
    event="NETWORK.RESTART",
    response="network",
)
async def restart_network(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    row = await ctx.services.networks.find(ctx.caller, args["id"])

    async def work() -> dict[str, Any]:
        network = await ctx.services.networks.restart(row.id)
        return {"network": network_view(network.row, network.ranges)}

    job = await ctx.submit(
        work,
        description=f"restarted network {row.name}",
        instance_type="Network",
        instance_id=row.id,
        instance_uuid=row.uuid,
    )
    return {"jobid": job}
