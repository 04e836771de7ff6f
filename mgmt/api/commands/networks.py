"""Guest networks with IP ranges (shared: an admin's, every account's to deploy on; isolated: an
account's own VXLAN segment): listNetworkOfferings, listNetworks, createNetwork, deleteNetwork,
restartNetwork."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import InvalidParameter
from ...services.networks import NetworkSpec
from ..registry import Param, command, refuse
from .common import ICON, IPV6, NO_VR, OWNER, PAGING, PROJECT, VPCS, date, listing
from .tags import TAGS, with_tags

NO_PHYSICAL = "physical networks are not modelled: each zone's hosts bridge guests themselves"

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
        "externalid": r.external_id,
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
    "Lists the network offerings: DefaultSharedNetworkOffering, DefaultIsolatedNetworkOffering and "
    "DefaultSharedNetworkOfferingWithSGService.",
    Param("id", "uuid", description="the offering's id"),
    Param("name", description="the offering's name"),
    Param("displaytext", description="the offering's description"),
    Param("guestiptype", description="Shared or Isolated"),
    Param("state", description="Enabled"),
    Param("zoneid", "uuid", description="the offerings of a zone (every offering is offered in every zone)"),
    Param("domainid", "uuid", description="the offerings of a domain (every offering is public here)"),
    Param("traffictype", description="Guest (every offering here)"),
    Param("isdefault", "boolean", description="true: the default offerings (every offering here)"),
    Param("forvpc", "boolean", description="true: VPC offerings (none here)"),
    Param("availability", description="Optional (every offering here) or Required"),
    Param("istagged", "boolean", description="true: offerings with network tags (none here)"),
    Param("tags", description="the offerings with these network tags (none has any here)"),
    Param("sourcenatsupported", "boolean", description="true: offerings with source NAT (none here: no "
                                                       "virtual routers)"),
    Param("specifyipranges", "boolean", description="whether the network gets IP ranges at creation"),
    Param("specifyvlan", "boolean", description="whether the network gets a VLAN at creation"),
    Param("networkid", "uuid", description="the offerings this network could change to"),
    Param("supportedservices", "list", description="offerings that provide these services (UserData, "
                                                   "SecurityGroup)"),
    *PAGING,
    response="networkoffering",
)
async def list_network_offerings(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("traffictype", "Guest") != "Guest" or args.get("forvpc") or args.get("isdefault") is False \
            or args.get("istagged") or args.get("tags") or args.get("sourcenatsupported") \
            or args.get("availability", "Optional").lower() != "optional":
        return {}
    rows, total = await ctx.services.networks.offerings(args)
    return listing("networkoffering", [_offering_view(r) for r in rows], total)


@command(
    "listNetworks",
    "Lists guest networks (shared: every account may deploy on them).",
    Param("id", "uuid", description="the network's id"),
    Param("name", description="the network's name"),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("type", description="Shared or Isolated"),
    Param("traffictype", description="Guest (every network here)"),
    Param("canusefordeploy", "boolean", description="true: networks VMs may be deployed on (every one here)"),
    Param("acltype", description="Domain (shared networks) or Account (isolated ones)"),
    Param("networkofferingid", "uuid", description="the networks of this offering"),
    Param("specifyipranges", "boolean", description="true: shared networks (IP ranges given at creation)"),
    Param("vlan", description="the networks on this VLAN (or VXLAN id)"),
    Param("networkfilter", description="all (default), account (the caller's own), domain or shared"),
    Param("supportedservices", "list", description="networks that provide these services (UserData, "
                                                   "SecurityGroup)"),
    Param("forvpc", "boolean", description="true: VPC tiers (none here)"),
    Param("issystem", "boolean", description="true: system networks (none here)"),
    Param("restartrequired", "boolean", description="true: networks waiting for a restart (none here)"),
    Param("displaynetwork", "boolean", description="false: networks users do not see (none here)"),
    Param("retrieveonlyresourcecount", "boolean", description="answer the count alone"),
    ICON,
    TAGS,
    *refuse(VPCS, "vpcid", applies=True),
    *refuse(NO_PHYSICAL, "physicalnetworkid"),
    *refuse("networks associated with others are not supported yet", "associatednetworkid", applies=True),
    *OWNER,
    *PAGING,
    response="network",
)
async def list_networks(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("canusefordeploy") is False:
        return {}
    found, total = await ctx.services.networks.matching(ctx.caller, args)
    if args.get("retrieveonlyresourcecount"):
        return {"count": total}
    return await with_tags(ctx, listing("network", [network_view(n.row, n.ranges) for n in found], total),
                           "network", "Network")


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
    Param("acltype", description="Domain (a shared network) or Account (an isolated one): checked against "
                                 "the offering"),
    Param("displaynetwork", "boolean", description="true only: every network here is shown"),
    *refuse(IPV6, "ip6cidr", "ip6gateway", "startipv6", "endipv6", "ip6dns1", "ip6dns2", "routeripv6"),
    *refuse(NO_VR, "networkdomain", "routerip", "sourcenatipaddress", "privatemtu", "publicmtu"),
    *refuse(VPCS, "vpcid", "aclid", applies=True),
    *refuse(NO_PHYSICAL, "physicalnetworkid"),
    *refuse("it applies to Tungsten Fabric networks", "tungstenvirtualrouteruuid"),
    *refuse("private VLANs need Open vSwitch on the hosts; Cumulo's hosts use Linux bridges",
            "isolatedpvlan", "isolatedpvlantype"),
    *refuse("networks associated with others are not supported yet", "associatednetworkid", applies=True),
    Param("externalid", description="its id in another system (kept and shown)"),
    *refuse("hiding a network's address usage is not supported yet", "hideipaddressusage",
            harmless=("false",), applies=True),
    *refuse("a shared network serves every account of the zone here: subdomain access is always on",
            "subdomainaccess", harmless=("true",), applies=True),
    Param("bypassvlanoverlapcheck", "boolean",
          description="root admins: a shared network may take a VLAN another shared network of the zone has"),
    PROJECT,
    event="NETWORK.CREATE",
    response="network",
)
async def create_network(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("displaynetwork") is False:
        raise InvalidParameter("displaynetwork=false: hidden networks are not supported yet")
    spec = NetworkSpec(args["zoneid"], args["name"], args.get("gateway", ""), args.get("netmask", ""),
                       args.get("startip", ""), args.get("endip", ""), args.get("vlan", "untagged"),
                       args.get("dns1"), args.get("dns2"), args.get("bridge", ""),
                       offering_uuid=args.get("networkofferingid", ""), account=args.get("account", ""),
                       domain_uuid=args.get("domainid", ""), project_uuid=args.get("projectid", ""),
                       external_id=args.get("externalid"),
                       bypass_vlan_overlap=bool(args.get("bypassvlanoverlapcheck")))
    if "acltype" in args:
        found, _ = await ctx.services.networks.offerings(
            {"id": args["networkofferingid"]} if "networkofferingid" in args
            else {"name": "DefaultSharedNetworkOffering"})
        kind = found[0].guest_type if found else "Shared"
        if args["acltype"].lower() != ("account" if kind == "Isolated" else "domain"):
            raise InvalidParameter(f"acltype {args['acltype']} does not fit a {kind} network "
                                   "(Domain: shared, Account: isolated)")
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
    Param("forced", "boolean", description="delete it even when its backend cleanup fails (none can fail "
                                           "here); a network VMs use is never deleted"),
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
    *refuse(NO_VR, "cleanup", harmless=("true", "false")),
    *refuse(NO_VR, "makeredundant", "livepatch", harmless=("false",)),
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
