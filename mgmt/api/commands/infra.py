"""Infrastructure (admins, but listZones): zones, pods, clusters, primary storage pools and hosts,
including host maintenance. What each command does is the infrastructure and host services'
(``mgmt/services/infra.py``, ``hosts.py``); here are the commands' parameters and the views they answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import InvalidParameter
from ...services import infra
from ...services.infra import ClusterSpec, PodSpec, PoolSpec, ZoneSpec
from ..registry import Param, command
from .common import PAGING, created, date, deleter, lister, listing, tags

if TYPE_CHECKING:
    from ..app import Context

# --- zones -------------------------------------------------------------------------------------------


def zone_view(r: Any) -> dict[str, Any]:
    return {
        "id": r.uuid,
        "name": r.name,
        "networktype": r.network_type,
        "allocationstate": r.allocation_state,
        "dns1": r.dns1 or "",
        "dns2": r.dns2 or "",
        "securitygroupsenabled": False,
        "localstorageenabled": True,
        "tags": [],
    }


command(
    "listZones",
    "Lists zones.",
    Param("id", "uuid", description="the zone's id"),
    Param("name", description="the zone's name"),
    Param("available", "boolean", description="accepted for compatibility (every zone is available)"),
    *PAGING,
    response="zone",
)(lister(infra.ZONE, "zone", zone_view, __name__))


@command(
    "createZone",
    "Creates a zone.",
    Param("name", required=True, description="the zone's name"),
    Param("dns1", required=True, description="the first DNS server for guests"),
    Param("dns2", description="the second DNS server for guests"),
    Param("internaldns1", required=True, description="the first DNS server for system VMs (kept, unused)"),
    Param("internaldns2", description="the second internal DNS server (kept, unused)"),
    Param("networktype", required=True, description="Advanced or Basic"),
    Param("allocationstate", description="Enabled (default) or Disabled"),
    admin=True,
    event="ZONE.CREATE",
    response="zone",
)
async def create_zone(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    spec = ZoneSpec(args["name"], args.get("dns1"), args.get("dns2"), args.get("networktype", "Advanced"),
                    args.get("allocationstate", "Enabled"))
    return {"zone": await created(ctx, spec, "ZONE.CREATE", "Zone", zone_view)}


command(
    "deleteZone",
    "Deletes a zone that has no pods, networks or storage pools left.",
    Param("id", "uuid", required=True, description="the zone's id"),
    admin=True,
    event="ZONE.DELETE",
)(deleter(infra.ZONE, "ZONE.DELETE", "Zone", __name__))


# --- pods --------------------------------------------------------------------------------------------


def pod_view(r: Any) -> dict[str, Any]:
    return {
        "id": r.uuid,
        "name": r.name,
        "zoneid": r.zone_uuid,
        "zonename": r.zone_name,
        "gateway": r.gateway or "",
        "netmask": r.netmask or "",
        "allocationstate": r.allocation_state,
    }


command(
    "listPods",
    "Lists pods.",
    Param("id", "uuid", description="the pod's id"),
    Param("name", description="the pod's name"),
    Param("zoneid", "uuid", description="the zone's id"),
    *PAGING,
    admin=True,
    response="pod",
)(lister(infra.POD, "pod", pod_view, __name__))


@command(
    "createPod",
    "Creates a pod in a zone.",
    Param("zoneid", "uuid", required=True, description="the zone's id"),
    Param("name", required=True, description="the pod's name"),
    Param("gateway", description="the pod's gateway"),
    Param("netmask", description="the pod's netmask"),
    Param("startip", description="accepted for compatibility (system VMs are not used)"),
    Param("endip", description="accepted for compatibility"),
    Param("allocationstate", description="Enabled (default) or Disabled"),
    admin=True,
    event="POD.CREATE",
    response="pod",
)
async def create_pod(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    spec = PodSpec(args["zoneid"], args["name"], args.get("gateway"), args.get("netmask"),
                   args.get("allocationstate", "Enabled"))
    return {"pod": await created(ctx, spec, "POD.CREATE", "Pod", pod_view)}


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


command(
    "listClusters",
    "Lists clusters.",
    Param("id", "uuid", description="the cluster's id"),
    Param("name", description="the cluster's name"),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("podid", "uuid", description="the pod's id"),
    Param("hypervisor", description="the hypervisor type"),
    *PAGING,
    admin=True,
    response="cluster",
)(lister(infra.CLUSTER, "cluster", cluster_view, __name__))


@command(
    "addCluster",
    "Creates a cluster in a pod (its hosts join it when their agents connect).",
    Param("zoneid", "uuid", required=True, description="the zone's id"),
    Param("podid", "uuid", required=True, description="the pod's id"),
    Param("clustername", required=True, description="the cluster's name"),
    Param("hypervisor", required=True, description="KVM or Simulator"),
    Param("clustertype", required=True, description="CloudManaged"),
    Param("allocationstate", description="Enabled (default) or Disabled"),
    admin=True,
    event="CLUSTER.CREATE",
    response="cluster",
)
async def add_cluster(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    spec = ClusterSpec(args["zoneid"], args["podid"], args["clustername"], args["hypervisor"],
                       args.get("allocationstate", "Enabled"))
    return listing("cluster", [await created(ctx, spec, "CLUSTER.CREATE", "Cluster", cluster_view)], 1)


command(
    "deleteCluster",
    "Deletes a cluster that has no hosts or storage pools left.",
    Param("id", "uuid", required=True, description="the cluster's id"),
    admin=True,
    event="CLUSTER.DELETE",
)(deleter(infra.CLUSTER, "CLUSTER.DELETE", "Cluster", __name__))


# --- storage pools -----------------------------------------------------------------------------------


def pool_view(r: Any) -> dict[str, Any]:
    return {
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
        "tags": r.tags,
        "state": r.status,
        "disksizetotal": r.capacity_bytes,
        "disksizeallocated": r.used_bytes + r.reserved_bytes,
        "disksizeused": r.used_bytes,
        "created": date(r.created),
    }


command(
    "listStoragePools",
    "Lists primary storage pools with their size and allocation.",
    Param("id", "uuid", description="the pool's id"),
    Param("name", description="the pool's name"),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("podid", "uuid", description="the pod's id"),
    Param("clusterid", "uuid", description="the cluster's id"),
    Param("scope", description="HOST, CLUSTER or ZONE"),
    *PAGING,
    admin=True,
    response="storagepool",
)(lister(infra.POOL, "storagepool", pool_view, __name__))


@command(
    "createStoragePool",
    "Creates a primary storage pool shared by a cluster or a whole zone.",
    Param("zoneid", "uuid", required=True, description="the zone's id"),
    Param("name", required=True, description="the pool's name"),
    Param("url", required=True, description="nfs://server/export, file:///path or /path", length=2048),
    Param("scope", description="CLUSTER (with clusterid) or ZONE"),
    Param("podid", "uuid", description="the pod of the cluster (accepted; the cluster decides)"),
    Param("clusterid", "uuid", description="the cluster, for a CLUSTER pool"),
    Param("capacitybytes", "long", description="the pool's size in bytes (required here)"),
    Param("tags", description="comma-separated storage tags"),
    Param("hypervisor", description="accepted for compatibility"),
    admin=True,
    event="STORAGE.POOL.CREATE",
    response="storagepool",
)
async def create_storage_pool(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    spec = PoolSpec(args["zoneid"], args["name"], args["url"], args.get("capacitybytes", 0),
                    args.get("scope", ""), args.get("clusterid"), tags(args.get("tags", "")))
    return {"storagepool": await created(ctx, spec, "STORAGE.POOL.CREATE", "StoragePool", pool_view)}


command(
    "deleteStoragePool",
    "Deletes a primary storage pool that holds no volumes.",
    Param("id", "uuid", required=True, description="the pool's id"),
    Param(
        "forced", "boolean", description="accepted for compatibility; a pool with volumes is never deleted"
    ),
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
    }


command(
    "listHosts",
    "Lists hosts with their state and capacity.",
    Param("id", "uuid", description="the host's id"),
    Param("name", description="the host's name"),
    Param("zoneid", "uuid", description="the zone's id"),
    Param("podid", "uuid", description="the pod's id"),
    Param("clusterid", "uuid", description="the cluster's id"),
    Param("state", description="Up, Disconnected, Alert, Down..."),
    Param("type", description="Routing (every host here)"),
    Param("resourcestate", description="Enabled, Disabled, PrepareForMaintenance, Maintenance..."),
    Param("hypervisor", description="the hypervisor type"),
    *PAGING,
    admin=True,
    response="host",
)(lister(infra.HOST, "host", host_view, __name__))


@command(
    "updateHost",
    "Enables or disables a host for new VMs, or changes its tags.",
    Param("id", "uuid", required=True, description="the host's id"),
    Param("allocationstate", description="Enable or Disable"),
    Param("hosttags", description="comma-separated host tags (replacing the ones it has)"),
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
