"""Shared guest networks with IP ranges: listNetworks, createNetwork, deleteNetwork."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...services.networks import NetworkSpec
from ..registry import Param, command
from .common import OWNER, PAGING, date, listing

if TYPE_CHECKING:
    from ..app import Context

_NETWORK_OFFERING = "a1a4b1a0-6d0e-4a9c-8a36-5b0c0f0e5a11"  # the one built-in offering: shared, no services


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
    found, total = await ctx.services.networks.matching(args)
    return listing("network", [network_view(n.row, n.ranges) for n in found], total)


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
    spec = NetworkSpec(args["zoneid"], args["name"], args["gateway"], args["netmask"], args["startip"],
                       args.get("endip", ""), args.get("vlan", "untagged"), args.get("dns1"),
                       args.get("dns2"), args.get("bridge", ""))
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
    "Deletes a network no VM uses.",
    Param("id", "uuid", required=True, description="the network's id"),
    Param("forced", "boolean", description="accepted for compatibility; a network in use is never deleted"),
    admin=True,
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
