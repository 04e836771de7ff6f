"""Infrastructure (admins, but listZones): zones, pods, clusters, primary storage pools and hosts,
including host maintenance. What each command does is the infrastructure and host services'
(``mgmt/services/infra.py``, ``hosts.py``); here are the commands' parameters and the views they answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ...errors import InvalidParameter
from ...services import infra
from ...services.infra import ClusterSpec, PodSpec, PoolSpec, ZoneSpec
from ..registry import Param, command, refuse
from .common import (
    DEDICATION,
    ICON,
    IPV6,
    MANAGED,
    NO_VR,
    OVM3,
    PAGING,
    VMWARE,
    as_dict,
    created,
    date,
    deleter,
    lister,
    listing,
    page,
    tags,
    updated,
    uuids,
)
from .tags import TAGS, with_tags

if TYPE_CHECKING:
    from ..app import Context

# --- zones -------------------------------------------------------------------------------------------

PUBLIC_ZONES = "zones are public here: every domain sees every zone"
CAPACITIES = Param("showcapacities", "boolean", description="add each item's capacity (as listCapacity)")


def zone_view(r: Any) -> dict[str, Any]:
    view = {
        "id": r.uuid,
        "name": r.name,
        "networktype": r.network_type,
        "allocationstate": r.allocation_state,
        "dns1": r.dns1 or "",
        "dns2": r.dns2 or "",
        "internaldns1": r.internal_dns1,
        "internaldns2": r.internal_dns2,
        "guestcidraddress": r.guest_cidr,
        "securitygroupsenabled": r.security_groups,
        "localstorageenabled": r.local_storage,
        "tags": [],
        "resourcedetails": orjson.loads(r.details or "{}") or None,
    }
    return {k: v for k, v in view.items() if v is not None}


async def _with_capacities(ctx: Context, answer: dict[str, Any], key: str, level: str) -> dict[str, Any]:
    """``showcapacities=true``: each item gets its ``capacity`` list, as listCapacity shows it."""
    for item in answer.get(key, []):
        scope = {"zone_uuid": item["id"]} if level == "zone" else {level + "_uuid": item["id"]}
        found = await ctx.services.capacity.of_zones(scope.pop("zone_uuid", ""), **scope)
        item["capacity"] = [_capacity_view(c) for c in found]
    return answer


def _capacity_view(c: Any) -> dict[str, Any]:
    view = {"type": c.type, "zoneid": c.zone_uuid, "zonename": c.zone_name, "podid": c.pod_uuid,
            "podname": c.pod_name, "clusterid": c.cluster_uuid, "clustername": c.cluster_name,
            "capacityused": c.used, "capacitytotal": c.total,
            "percentused": f"{c.percent_used:.2f}" if c.total else "0"}
    return {k: v for k, v in view.items() if v is not None}


_list_zones = lister(infra.ZONE, "zone", zone_view, __name__)
ZONE_FILTERS = (
    Param("id", "uuid", description="the zone's id"),
    Param("ids", "list", description="comma-separated zone ids"),
    Param("name", description="the zone's name"),
    Param("networktype", description="Basic or Advanced"),
    Param("available", "boolean", description="the zones the caller may use (every zone here)"),
    Param("domainid", "uuid", description=f"the zones of a domain ({PUBLIC_ZONES})"),
    CAPACITIES,
    ICON,
    TAGS,
    *PAGING,
)


@command("listZones", "Lists zones.", *ZONE_FILTERS, response="zone")
async def list_zones(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if "ids" in args:
        args = {**args, "ids": uuids(args, "ids")}
    answer = await with_tags(ctx, await _list_zones(ctx, args), "zone", "Zone")
    if args.get("showcapacities") and ctx.caller.is_admin:
        await _with_capacities(ctx, answer, "zone", "zone")
    return answer


@command(
    "createZone",
    "Creates a zone.",
    Param("name", required=True, description="the zone's name"),
    Param("dns1", required=True, description="the first DNS server for guests"),
    Param("dns2", description="the second DNS server for guests"),
    Param("internaldns1", required=True, description="the first DNS server of the zone's own hosts (kept, "
                                                     "shown)"),
    Param("internaldns2", description="the second internal DNS server (kept, shown)"),
    Param("networktype", required=True, description="Advanced or Basic"),
    Param("allocationstate", description="Enabled (default) or Disabled"),
    Param("guestcidraddress", description="the guest CIDR of the zone's isolated networks (kept, shown)"),
    Param("localstorageenabled", "boolean", description="whether offerings with storagetype=local may place "
                                                        "disks on hosts' own pools here (default true)"),
    Param("securitygroupenabled", "boolean", description="whether the zone's guest networks use security "
                                                         "groups (shown)"),
    *refuse(IPV6, "ip6dns1", "ip6dns2"),
    *refuse(DEDICATION, "domain", "domainid", applies=True),
    *refuse("edge zones are not supported yet", "isedge", harmless=("false",), applies=True),
    admin=True,
    event="ZONE.CREATE",
    response="zone",
)
async def create_zone(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    spec = ZoneSpec(args["name"], args.get("dns1"), args.get("dns2"), args.get("networktype", "Advanced"),
                    args.get("allocationstate", "Enabled"), args.get("internaldns1"),
                    args.get("internaldns2"),
                    args.get("guestcidraddress"), args.get("localstorageenabled", True),
                    args.get("securitygroupenabled", False))
    return {"zone": await created(ctx, spec, "ZONE.CREATE", "Zone", zone_view)}


@command(
    "updateZone",
    "Changes a zone: its name, DNS servers, guest CIDR, local storage or allocation state.",
    Param("id", "uuid", required=True, description="the zone's id"),
    Param("name", description="the new name"),
    Param("dns1", description="the first DNS server for guests"),
    Param("dns2", description="the second DNS server for guests"),
    Param("internaldns1", description="the first internal DNS server"),
    Param("internaldns2", description="the second internal DNS server"),
    Param("guestcidraddress", description="the guest CIDR of isolated networks"),
    Param("localstorageenabled", "boolean", description="whether hosts' own pools take disks"),
    Param("allocationstate", description="Enabled or Disabled (no new VMs)"),
    Param("ispublic", "boolean", description=f"true only ({PUBLIC_ZONES})"),
    *refuse(IPV6, "ip6dns1", "ip6dns2"),
    *refuse(DEDICATION, "domain", applies=True),
    *refuse(NO_VR, "dhcpprovider", harmless=("virtualrouter",)),
    Param("details", "map", description="its details (key/value pairs, shown as resourcedetails): "
                                        "details[0].key=value; they replace those it had"),
    *refuse("a DNS search order for guests is not supported yet", "dnssearchorder", applies=True),
    Param("sortkey", "integer",
          description="its place in lists (sortkey.algorithm: ascending or descending)"),
    admin=True,
    event="ZONE.EDIT",
    response="zone",
)
async def update_zone(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("ispublic") is False:
        raise InvalidParameter(f"ispublic=false: {PUBLIC_ZONES}")
    if "details" in args:
        args = {**args, "details": as_dict(args["details"])}
    return {"zone": await updated(ctx, infra.ZONE, args, "ZONE.EDIT", "Zone", zone_view)}



command(
    "deleteZone",
    "Deletes a zone that has no pods, networks or storage pools left.",
    Param("id", "uuid", required=True, description="the zone's id"),
    admin=True,
    event="ZONE.DELETE",
)(deleter(infra.ZONE, "ZONE.DELETE", "Zone", __name__))


# --- pods --------------------------------------------------------------------------------------------


def pod_view(r: Any) -> dict[str, Any]:
    view = {
        "id": r.uuid,
        "name": r.name,
        "zoneid": r.zone_uuid,
        "zonename": r.zone_name,
        "gateway": r.gateway or "",
        "netmask": r.netmask or "",
        "startip": r.start_ip,
        "endip": r.end_ip,
        "allocationstate": r.allocation_state,
    }
    return {k: v for k, v in view.items() if v is not None}


_list_pods = lister(infra.POD, "pod", pod_view, __name__)


@command(
    "listPods",
    "Lists pods.",
    Param("id", "uuid", description="the pod's id"),
    Param("name", description="the pod's name"),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("allocationstate", description="Enabled or Disabled"),
    CAPACITIES,
    *PAGING,
    admin=True,
    response="pod",
)
async def list_pods(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    answer = await _list_pods(ctx, args)
    if args.get("showcapacities"):
        await _with_capacities(ctx, answer, "pod", "pod")
    return answer


@command(
    "createPod",
    "Creates a pod in a zone.",
    Param("zoneid", "uuid", required=True, description="the zone's id"),
    Param("name", required=True, description="the pod's name"),
    Param("gateway", description="the pod's gateway"),
    Param("netmask", description="the pod's netmask"),
    Param("startip", description="the first address of the pod's management range (kept, shown)"),
    Param("endip", description="the last address of the pod's management range (kept, shown)"),
    Param("allocationstate", description="Enabled (default) or Disabled"),
    admin=True,
    event="POD.CREATE",
    response="pod",
)
async def create_pod(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    spec = PodSpec(args["zoneid"], args["name"], args.get("gateway"), args.get("netmask"),
                   args.get("allocationstate", "Enabled"), args.get("startip"), args.get("endip"))
    return {"pod": await created(ctx, spec, "POD.CREATE", "Pod", pod_view)}


@command(
    "updatePod",
    "Changes a pod: its name, gateway, netmask, management range or allocation state.",
    Param("id", "uuid", required=True, description="the pod's id"),
    Param("name", description="the new name"),
    Param("gateway", description="the pod's gateway"),
    Param("netmask", description="the pod's netmask"),
    Param("startip", description="the first address of its management range"),
    Param("endip", description="the last address of its management range"),
    Param("allocationstate", description="Enabled or Disabled (no new VMs)"),
    admin=True,
    event="POD.EDIT",
    response="pod",
)
async def update_pod(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return {"pod": await updated(ctx, infra.POD, args, "POD.EDIT", "Pod", pod_view)}


command(
    "deletePod",
    "Deletes a pod that has no clusters or hosts left.",
    Param("id", "uuid", required=True, description="the pod's id"),
    admin=True,
    event="POD.DELETE",
)(deleter(infra.POD, "POD.DELETE", "Pod", __name__))


# --- clusters ----------------------------------------------------------------------------------------


def cluster_view(r: Any) -> dict[str, Any]:
    return {
        "id": r.uuid,
        "name": r.name,
        "zoneid": r.zone_uuid,
        "zonename": r.zone_name,
        "podid": r.pod_uuid,
        "podname": r.pod_name,
        "hypervisortype": r.hypervisor_type,
        "clustertype": "CloudManaged",
        "allocationstate": r.allocation_state,
        "managedstate": "Managed",
        "cpuovercommitratio": str(r.cpu_overcommit) if r.cpu_overcommit is not None else "",
        "memoryovercommitratio": str(r.mem_overcommit) if r.mem_overcommit is not None else "",
    }


_list_clusters = lister(infra.CLUSTER, "cluster", cluster_view, __name__)
CLUSTER_FILTERS = (
    Param("id", "uuid", description="the cluster's id"),
    Param("name", description="the cluster's name"),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("podid", "uuid", description="the pod's id"),
    Param("hypervisor", description="the hypervisor type"),
    Param("allocationstate", description="Enabled or Disabled"),
    Param("clustertype", description="CloudManaged (every cluster here)"),
    Param("managedstate", description="Managed (every cluster here)"),
    CAPACITIES,
    *PAGING,
)


@command("listClusters", "Lists clusters.", *CLUSTER_FILTERS, admin=True, response="cluster")
async def list_clusters(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    answer = await _list_clusters(ctx, args)
    if args.get("showcapacities"):
        await _with_capacities(ctx, answer, "cluster", "cluster")
    return answer


@command(
    "addCluster",
    "Creates a cluster in a pod (its hosts join it when their agents connect).",
    Param("zoneid", "uuid", required=True, description="the zone's id"),
    Param("podid", "uuid", required=True, description="the pod's id"),
    Param("clustername", required=True, description="the cluster's name"),
    Param("hypervisor", required=True, description="KVM or Simulator"),
    Param("clustertype", required=True, description="CloudManaged"),
    Param("allocationstate", description="Enabled (default) or Disabled"),
    *refuse(VMWARE, "guestvswitchname", "guestvswitchtype", "publicvswitchname", "publicvswitchtype",
            "vsmipaddress", "vsmpassword", "vsmusername"),
    *refuse(OVM3, "ovm3cluster", "ovm3pool", "ovm3vip"),
    *refuse("a KVM cluster is not added from a URL: its hosts' agents connect to the server", "url",
            "username", "password"),
    admin=True,
    event="CLUSTER.CREATE",
    response="cluster",
)
async def add_cluster(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args["clustertype"] != "CloudManaged":
        raise InvalidParameter("clustertype must be CloudManaged")
    spec = ClusterSpec(args["zoneid"], args["podid"], args["clustername"], args["hypervisor"],
                       args.get("allocationstate", "Enabled"))
    return listing("cluster", [await created(ctx, spec, "CLUSTER.CREATE", "Cluster", cluster_view)], 1)


@command(
    "updateCluster",
    "Changes a cluster's name or allocation state (its hypervisor and type stay what its hosts are).",
    Param("id", "uuid", required=True, description="the cluster's id"),
    Param("clustername", description="the new name"),
    Param("allocationstate", description="Enabled or Disabled (no new VMs)"),
    Param("hypervisor", description="its hypervisor (it does not change)"),
    Param("clustertype", description="CloudManaged"),
    Param("managedstate", description="Managed"),
    admin=True,
    event="CLUSTER.EDIT",
    response="cluster",
)
async def update_cluster(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return {"cluster": await updated(ctx, infra.CLUSTER, args, "CLUSTER.EDIT", "Cluster", cluster_view)}


command(
    "deleteCluster",
    "Deletes a cluster that has no hosts or storage pools left.",
    Param("id", "uuid", required=True, description="the cluster's id"),
    admin=True,
    event="CLUSTER.DELETE",
)(deleter(infra.CLUSTER, "CLUSTER.DELETE", "Cluster", __name__))


# --- storage pools -----------------------------------------------------------------------------------


def pool_view(r: Any) -> dict[str, Any]:
    view = {
        "id": r.uuid,
        "name": r.name,
        "zoneid": r.zone_uuid,
        "zonename": r.zone_name,
        "podid": r.pod_uuid,
        "podname": r.pod_name,
        "clusterid": r.cluster_uuid,
        "clustername": r.cluster_name,
        "scope": r.scope,
        "type": r.pool_type,
        "path": r.path,
        "ipaddress": r.path.split(":", 1)[0] if r.pool_type == "NetworkFilesystem" else "localhost",
        "tags": r.tags,
        "state": r.status,
        "disksizetotal": r.capacity_bytes,
        "disksizeallocated": r.used_bytes + r.reserved_bytes,
        "disksizeused": r.used_bytes,
        "created": date(r.created),
    }
    return {k: v for k, v in view.items() if v is not None}


_list_pools = lister(infra.POOL, "storagepool", pool_view, __name__)
POOL_FILTERS = (
    Param("id", "uuid", description="the pool's id"),
    Param("name", description="the pool's name"),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("podid", "uuid", description="the pod's id"),
    Param("clusterid", "uuid", description="the cluster's id"),
    Param("hostid", "uuid", description="the host whose own pool to list"),
    Param("scope", description="HOST, CLUSTER or ZONE"),
    Param("path", description="the pool's path"),
    Param("ipaddress", description="the NFS server's address (localhost: a pool on the hosts themselves)"),
    Param("status", description="Up, Disabled..."),
    *PAGING,
)


@command("listStoragePools", "Lists primary storage pools with their size and allocation.", *POOL_FILTERS,
         admin=True, response="storagepool")
async def list_storage_pools(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    answer = await _list_pools(ctx, {**args, "pagesize": -1, "page": 1} if "ipaddress" in args else args)
    if "ipaddress" in args:  # (the address is a part of the path: filtered here, then paged)
        items = [p for p in answer.get("storagepool", []) if p["ipaddress"] == args["ipaddress"]]
        offset, limit = page(args)
        answer = listing("storagepool", items[offset: None if limit is None else offset + limit], len(items))
    capacity = ctx.services.capacity
    own = await capacity.pool_factors([item["id"] for item in answer.get("storagepool", [])])
    for item in answer.get("storagepool", []):
        item["overprovisionfactor"] = str(capacity.storage_overprovision(item["type"], item["scope"],
                                                                         own.get(item["id"])))
    return answer


@command(
    "createStoragePool",
    "Creates a primary storage pool shared by a cluster or a whole zone; without capacitybytes, a host "
    "of its cluster (or zone) measures it.",
    Param("zoneid", "uuid", required=True, description="the zone's id"),
    Param("name", required=True, description="the pool's name"),
    Param("url", required=True, description="nfs://server/export, file:///path or /path", length=2048),
    Param("scope", description="CLUSTER (with clusterid) or ZONE"),
    Param("podid", "uuid", description="the pod of the cluster (checked against it)"),
    Param("clusterid", "uuid", description="the cluster, for a CLUSTER pool"),
    Param("capacitybytes", "long", description="the pool's size in bytes (default: as a host measures it)"),
    Param("tags", description="comma-separated storage tags"),
    Param("hypervisor", description="KVM or Simulator: the hypervisor of a ZONE pool's hosts (checked)"),
    Param("details", "map", description="details kept with the pool (key/value)"),
    Param("provider", description="DefaultPrimary (the only provider here)"),
    *refuse(MANAGED, "managed", harmless=("false",)),
    *refuse(MANAGED, "capacityiops"),
    *refuse("tag rules (JavaScript) are not supported yet", "istagarule", harmless=("false",), applies=True),
    admin=True,
    event="STORAGE.POOL.CREATE",
    response="storagepool",
)
async def create_storage_pool(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("provider", "DefaultPrimary") != "DefaultPrimary":
        raise InvalidParameter("provider must be DefaultPrimary")
    if args.get("hypervisor", "KVM") not in ("KVM", "Simulator", "Any"):
        raise InvalidParameter("hypervisor must be KVM or Simulator")
    size = args.get("capacitybytes")
    if size is None:
        size = await ctx.services.hosts.measure_pool(ctx.caller, args["zoneid"], args.get("clusterid"),
                                                      args["url"])
    spec = PoolSpec(args["zoneid"], args["name"], args["url"], size, args.get("scope", ""),
                    args.get("clusterid"), tags(args.get("tags", "")), as_dict(args.get("details", [])),
                    pod_uuid=args.get("podid"))
    return {"storagepool": await created(ctx, spec, "STORAGE.POOL.CREATE", "StoragePool", pool_view)}



@command(
    "updateStoragePool",
    "Changes a pool: its name, tags, size, details, or whether it takes new volumes (enabled).",
    Param("id", "uuid", required=True, description="the pool's id"),
    Param("name", description="the new name"),
    Param("tags", "list", description="comma-separated storage tags (replacing its own)"),
    Param("capacitybytes", "long", description="its new size in bytes (not below what it holds)"),
    Param("enabled", "boolean", description="false: no new volumes (Disabled); true: Up again"),
    Param("details", "map", description="details to add or change (key/value)"),
    *refuse(MANAGED, "capacityiops"),
    *refuse("tag rules (JavaScript) are not supported yet", "istagarule", harmless=("false",), applies=True),
    *refuse("a pool's URL does not change: add a new pool and move its volumes", "url", applies=True),
    admin=True,
    event="UPDATE.STORAGE.POOL",
    response="storagepool",
)
async def update_storage_pool(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    if "details" in args:
        args = {**args, "details": as_dict(args["details"])}
    return {"storagepool": await updated(ctx, infra.POOL, args, "UPDATE.STORAGE.POOL", "StoragePool",
                                          pool_view)}


command(
    "deleteStoragePool",
    "Deletes a primary storage pool that holds no volumes.",
    Param("id", "uuid", required=True, description="the pool's id"),
    Param("forced", "boolean", description="false only: a pool that holds volumes is never deleted here"),
    admin=True,
    event="STORAGE.POOL.DELETE",
)(deleter(infra.POOL, "STORAGE.POOL.DELETE", "StoragePool", __name__))


# --- hosts -------------------------------------------------------------------------------------------


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.2f}%" if whole else "0%"


def host_view(r: Any) -> dict[str, Any]:
    return {
        "id": r.uuid,
        "name": r.name,
        "state": r.status,
        "type": r.type,
        "resourcestate": r.resource_state,
        "zoneid": r.zone_uuid,
        "zonename": r.zone_name,
        "podid": r.pod_uuid,
        "podname": r.pod_name,
        "clusterid": r.cluster_uuid,
        "clustername": r.cluster_name,
        "clustertype": "CloudManaged",
        "hypervisor": r.hypervisor_type,
        "hypervisorversion": r.hypervisor_version,
        "version": r.agent_version,
        "ipaddress": r.private_ip,
        "hosttags": r.host_tags,
        "cpunumber": r.cpu_cores,
        "cpuspeed": r.cpu_mhz_total // r.cpu_cores if r.cpu_cores else 0,
        "cpuallocated": _percent(r.cpu_mhz_used + r.cpu_mhz_reserved, r.cpu_mhz_total),
        "cpuallocatedvalue": r.cpu_mhz_used + r.cpu_mhz_reserved,
        "memorytotal": r.memory_total,
        "memoryallocated": r.memory_used + r.memory_reserved,
        "memoryused": r.memory_used,
        "islocalstorageactive": True,
        "created": date(r.created),
        "lastpinged": date(r.last_ping),
        "disconnected": date(r.status_changed) if r.status in ("Disconnected", "Down", "Alert") else None,
        "managementserverid": str(r.mgmt_server_id) if r.mgmt_server_id is not None else None,
        "events": "",
        "annotation": r.annotation,
    }


_list_hosts = lister(infra.HOST, "host", host_view, __name__)
HOST_DETAILS = ("all", "capacity", "events", "stats", "min")
HOST_FILTERS = (
    Param("id", "uuid", description="the host's id"),
    Param("name", description="the host's name"),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("podid", "uuid", description="the pod's id"),
    Param("clusterid", "uuid", description="the cluster's id"),
    Param("state", description="Up, Disconnected, Alert, Down..."),
    Param("type", description="Routing (every host here)"),
    Param("resourcestate", description="Enabled, Disabled, PrepareForMaintenance, Maintenance..."),
    Param("hypervisor", description="the hypervisor type"),
    Param("virtualmachineid", "uuid", description="the host the VM runs on"),
    Param("hahost", "boolean", description="true: hosts kept for HA alone (none here: every host takes VMs)"),
    Param("details", "list", description=f"what to show: {', '.join(HOST_DETAILS)} (default all; min: "
                                          "no capacity, events or statistics)"),
    *refuse("out-of-band management (IPMI) is not supported yet", "outofbandmanagementenabled",
            "outofbandmanagementpowerstate", applies=True),
    *PAGING,
)
_CAPACITY_FIELDS = ("cpuallocated", "cpuallocatedvalue", "memorytotal", "memoryallocated", "memoryused")


def _host_details(args: dict[str, Any]) -> set[str]:
    wanted = {d.lower() for d in args.get("details", ["all"])}
    unknown = wanted - set(HOST_DETAILS)
    if unknown:
        raise InvalidParameter(f"details must be some of {', '.join(HOST_DETAILS)}")
    return set(HOST_DETAILS) if "all" in wanted else wanted


@command("listHosts", "Lists hosts with their state and capacity.", *HOST_FILTERS, admin=True,
         response="host")
async def list_hosts(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    details = _host_details(args)
    if args.get("hahost"):
        return {}
    answer = await _list_hosts(ctx, args)
    for item in answer.get("host", []):
        if "capacity" not in details:
            for key in _CAPACITY_FIELDS:
                item.pop(key, None)
        if "events" not in details:
            item.pop("events", None)
    return answer


@command(
    "updateHost",
    "Enables or disables a host for new VMs, changes its tags or name, or notes something on it.",
    Param("id", "uuid", required=True, description="the host's id"),
    Param("allocationstate", description="Enable or Disable"),
    Param("hosttags", description="comma-separated host tags (replacing the ones it has)"),
    Param("name", description="the host's new name"),
    Param("annotation", description="a note on the host (shown as annotation)", length=4096),
    *refuse("tag rules (JavaScript) are not supported yet", "istagarule", harmless=("false",), applies=True),
    *refuse("preferred OS categories of hosts are not supported yet", "oscategoryid", applies=True),
    *refuse("it is the URL of a secondary storage host, which Cumulo has not", "url"),
    admin=True,
    event="HOST.UPDATE",
    response="host",
)
async def update_host(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    change = args.get("allocationstate")
    if change not in (None, "Enable", "Disable"):
        raise InvalidParameter("allocationstate must be Enable or Disable")
    host = await ctx.services.hosts.update(
        ctx.caller, args["id"], enabled=None if change is None else change == "Enable",
        tags=list(tags(args["hosttags"])) if "hosttags" in args else None,
        name=args.get("name"), annotation=args.get("annotation"),
    )
    await ctx.event("HOST.UPDATE", f"updated host {host.name}", resource_type="Host", resource_uuid=host.uuid)
    return {"host": host_view(await ctx.services.hosts.get(host.uuid))}


@command(
    "prepareHostForMaintenance",
    "Puts a host into maintenance: it takes no new VMs and its running VMs are live-migrated away.",
    Param("id", "uuid", required=True, description="the host's id"),
    admin=True,
    is_async=True,
    event="MAINT.PREPARE",
    response="host",
)
async def prepare_host_for_maintenance(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    host, empty = await ctx.services.hosts.prepare_maintenance(ctx.caller, args["id"])

    async def work() -> dict[str, Any]:
        return {"host": host_view(await empty())}

    job = await ctx.submit(work, description=f"maintenance of host {host.name}", instance_type="Host",
                           instance_id=host.id, instance_uuid=host.uuid)
    return {"jobid": job}


@command(
    "cancelHostMaintenance",
    "Ends a host's maintenance: it takes new VMs again.",
    Param("id", "uuid", required=True, description="the host's id"),
    admin=True,
    is_async=True,
    event="MAINT.CANCEL",
    response="host",
)
async def cancel_host_maintenance(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    host, end = await ctx.services.hosts.cancel_maintenance(ctx.caller, args["id"])

    async def work() -> dict[str, Any]:
        return {"host": host_view(await end())}

    job = await ctx.submit(work, description=f"end of maintenance of host {host.name}",
                           instance_type="Host", instance_id=host.id, instance_uuid=host.uuid)
    return {"jobid": job}
