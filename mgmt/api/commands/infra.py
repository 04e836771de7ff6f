"""Infrastructure (admins, but listZones): zones, pods, clusters, primary storage pools and hosts,
including host maintenance, which migrates the host's VMs away."""

from __future__ import annotations

import ipaddress
import urllib.parse
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ...db.schema import (
    clusters,
    host_capacity,
    hosts,
    networks,
    pods,
    storage_pools,
    vms,
    volumes,
    zones,
)
from ...errors import CumuloError, InvalidParameter, ResourceInUse
from ...planner import deltas
from ..registry import Param, command
from .common import PAGING, date, fetch, find, keyword, listing, matching, new_uuid, now, success

HYPERVISORS = ("KVM", "Simulator")

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


def _zones(conn: Connection, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = [zones.c.removed.is_(None), *keyword(zones.c.name, args)]
    where += matching(args, {"id": zones.c.uuid, "name": zones.c.name})
    rows, total = fetch(conn, sa.select(zones).where(*where), zones.c.id, args)
    return [zone_view(r) for r in rows], total


@command(
    "listZones",
    "Lists zones.",
    Param("id", "uuid", description="the zone's id"),
    Param("name", description="the zone's name"),
    Param("available", "boolean", description="accepted for compatibility (every zone is available)"),
    *PAGING,
    response="zone",
)
async def list_zones(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    items, total = await ctx.read(_zones, args)
    return listing("zone", items, total)


def _create_zone(conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
    if conn.scalar(sa.select(zones.c.id).where(zones.c.name == args["name"], zones.c.removed.is_(None))):
        raise InvalidParameter(f"a zone named {args['name']!r} exists already")
    network_type = args.get("networktype", "Advanced")
    if network_type not in ("Advanced", "Basic"):
        raise InvalidParameter("networktype must be Advanced or Basic")
    zone_id = conn.execute(
        zones.insert().values(
            uuid=new_uuid(),
            name=args["name"],
            network_type=network_type,
            dns1=args.get("dns1"),
            dns2=args.get("dns2"),
            allocation_state=args.get("allocationstate", "Enabled"),
            created=now(),
        )
    ).inserted_primary_key[0]
    return zone_view(conn.execute(sa.select(zones).where(zones.c.id == zone_id)).one())


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
async def create_zone(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("allocationstate", "Enabled") not in ("Enabled", "Disabled"):
        raise InvalidParameter("allocationstate must be Enabled or Disabled")
    zone = await ctx.run(_create_zone, args)
    await ctx.event(
        "ZONE.CREATE", f"created zone {zone['name']}", resource_type="Zone", resource_uuid=zone["id"]
    )
    return {"zone": zone}


def _delete(conn: Connection, table: sa.Table, row_id: int) -> None:
    conn.execute(table.update().where(table.c.id == row_id).values(removed=now()))


def _delete_zone(conn: Connection, caller: Any, ident: str) -> str:
    zone = find(conn, caller, zones, ident, "zone")
    for table, what in ((pods, "pods"), (networks, "networks"), (storage_pools, "storage pools")):
        if conn.scalar(sa.select(table.c.id).where(table.c.zone_id == zone.id, table.c.removed.is_(None))):
            raise ResourceInUse(f"zone {zone.name} still has {what}; delete them first")
    _delete(conn, zones, zone.id)
    return str(zone.name)


@command(
    "deleteZone",
    "Deletes a zone that has no pods, networks or storage pools left.",
    Param("id", "uuid", required=True, description="the zone's id"),
    admin=True,
    event="ZONE.DELETE",
)
async def delete_zone(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    name = await ctx.run(_delete_zone, ctx.caller, args["id"])
    await ctx.event("ZONE.DELETE", f"deleted zone {name}", resource_type="Zone", resource_uuid=args["id"])
    await ctx.services.placement.load()
    return success()


# --- pods --------------------------------------------------------------------------------------------


def _pod_query() -> sa.Select[Any]:
    return sa.select(pods, zones.c.uuid.label("zone_uuid"), zones.c.name.label("zone_name")).join(
        zones, zones.c.id == pods.c.zone_id
    )


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


def _pods(conn: Connection, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = [pods.c.removed.is_(None), *keyword(pods.c.name, args)]
    where += matching(args, {"id": pods.c.uuid, "name": pods.c.name, "zoneid": zones.c.uuid})
    rows, total = fetch(conn, _pod_query().where(*where), pods.c.id, args)
    return [pod_view(r) for r in rows], total


@command(
    "listPods",
    "Lists pods.",
    Param("id", "uuid", description="the pod's id"),
    Param("name", description="the pod's name"),
    Param("zoneid", "uuid", description="the zone's id"),
    *PAGING,
    admin=True,
    response="pod",
)
async def list_pods(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    items, total = await ctx.read(_pods, args)
    return listing("pod", items, total)


def _address(args: dict[str, Any], name: str) -> str | None:
    if name not in args:
        return None
    try:
        return str(ipaddress.ip_address(args[name]))
    except ValueError:
        raise InvalidParameter(f"parameter {name}: {args[name][:64]!r} is not an IP address") from None


def _create_pod(conn: Connection, caller: Any, args: dict[str, Any]) -> dict[str, Any]:
    zone = find(conn, caller, zones, args["zoneid"], "zone")
    if conn.scalar(
        sa.select(pods.c.id).where(
            pods.c.zone_id == zone.id, pods.c.name == args["name"], pods.c.removed.is_(None)
        )
    ):
        raise InvalidParameter(f"zone {zone.name} has a pod named {args['name']!r} already")
    pod_id = conn.execute(
        pods.insert().values(
            uuid=new_uuid(),
            zone_id=zone.id,
            name=args["name"],
            gateway=_address(args, "gateway"),
            netmask=_address(args, "netmask"),
            allocation_state=args.get("allocationstate", "Enabled"),
            created=now(),
        )
    ).inserted_primary_key[0]
    return pod_view(conn.execute(_pod_query().where(pods.c.id == pod_id)).one())


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
async def create_pod(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    pod = await ctx.run(_create_pod, ctx.caller, args)
    await ctx.event("POD.CREATE", f"created pod {pod['name']}", resource_type="Pod", resource_uuid=pod["id"])
    return {"pod": pod}


def _delete_pod(conn: Connection, caller: Any, ident: str) -> str:
    pod = find(conn, caller, pods, ident, "pod")
    for table, what in ((clusters, "clusters"), (hosts, "hosts")):
        if conn.scalar(sa.select(table.c.id).where(table.c.pod_id == pod.id, table.c.removed.is_(None))):
            raise ResourceInUse(f"pod {pod.name} still has {what}; delete them first")
    _delete(conn, pods, pod.id)
    return str(pod.name)


@command(
    "deletePod",
    "Deletes a pod that has no clusters or hosts left.",
    Param("id", "uuid", required=True, description="the pod's id"),
    admin=True,
    event="POD.DELETE",
)
async def delete_pod(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    name = await ctx.run(_delete_pod, ctx.caller, args["id"])
    await ctx.event("POD.DELETE", f"deleted pod {name}", resource_type="Pod", resource_uuid=args["id"])
    return success()


# --- clusters ----------------------------------------------------------------------------------------


def _cluster_query() -> sa.Select[Any]:
    return (
        sa.select(
            clusters,
            zones.c.uuid.label("zone_uuid"),
            zones.c.name.label("zone_name"),
            pods.c.uuid.label("pod_uuid"),
            pods.c.name.label("pod_name"),
        )
        .join(zones, zones.c.id == clusters.c.zone_id)
        .join(pods, pods.c.id == clusters.c.pod_id)
    )


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


def _clusters(conn: Connection, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = [clusters.c.removed.is_(None), *keyword(clusters.c.name, args)]
    where += matching(
        args,
        {
            "id": clusters.c.uuid,
            "name": clusters.c.name,
            "zoneid": zones.c.uuid,
            "podid": pods.c.uuid,
            "hypervisor": clusters.c.hypervisor_type,
        },
    )
    rows, total = fetch(conn, _cluster_query().where(*where), clusters.c.id, args)
    return [cluster_view(r) for r in rows], total


@command(
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
)
async def list_clusters(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    items, total = await ctx.read(_clusters, args)
    return listing("cluster", items, total)


def _create_cluster(conn: Connection, caller: Any, args: dict[str, Any]) -> dict[str, Any]:
    zone = find(conn, caller, zones, args["zoneid"], "zone")
    pod = find(conn, caller, pods, args["podid"], "pod")
    if pod.zone_id != zone.id:
        raise InvalidParameter(f"pod {pod.name} is not in zone {zone.name}")
    if conn.scalar(
        sa.select(clusters.c.id).where(
            clusters.c.zone_id == zone.id,
            clusters.c.removed.is_(None),
            clusters.c.name == args["clustername"],
        )
    ):
        raise InvalidParameter(f"zone {zone.name} has a cluster named {args['clustername']!r} already")
    cluster_id = conn.execute(
        clusters.insert().values(
            uuid=new_uuid(),
            zone_id=zone.id,
            pod_id=pod.id,
            name=args["clustername"],
            hypervisor_type=args["hypervisor"],
            allocation_state=args.get("allocationstate", "Enabled"),
            created=now(),
        )
    ).inserted_primary_key[0]
    return cluster_view(conn.execute(_cluster_query().where(clusters.c.id == cluster_id)).one())


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
async def add_cluster(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    if args["hypervisor"] not in HYPERVISORS:
        raise InvalidParameter(f"hypervisor must be one of {', '.join(HYPERVISORS)}")
    cluster = await ctx.run(_create_cluster, ctx.caller, args)
    await ctx.event(
        "CLUSTER.CREATE",
        f"created cluster {cluster['name']}",
        resource_type="Cluster",
        resource_uuid=cluster["id"],
    )
    await ctx.services.placement.load()
    return listing("cluster", [cluster], 1)


def _delete_cluster(conn: Connection, caller: Any, ident: str) -> str:
    cluster = find(conn, caller, clusters, ident, "cluster")
    for table, what in ((hosts, "hosts"), (storage_pools, "storage pools")):
        if conn.scalar(
            sa.select(table.c.id).where(table.c.cluster_id == cluster.id, table.c.removed.is_(None))
        ):
            raise ResourceInUse(f"cluster {cluster.name} still has {what}; delete them first")
    _delete(conn, clusters, cluster.id)
    return str(cluster.name)


@command(
    "deleteCluster",
    "Deletes a cluster that has no hosts or storage pools left.",
    Param("id", "uuid", required=True, description="the cluster's id"),
    admin=True,
    event="CLUSTER.DELETE",
)
async def delete_cluster(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    name = await ctx.run(_delete_cluster, ctx.caller, args["id"])
    await ctx.event(
        "CLUSTER.DELETE", f"deleted cluster {name}", resource_type="Cluster", resource_uuid=args["id"]
    )
    await ctx.services.placement.load()
    return success()


# --- storage pools -----------------------------------------------------------------------------------


def _pool_query() -> sa.Select[Any]:
    return (
        sa.select(
            storage_pools,
            zones.c.uuid.label("zone_uuid"),
            zones.c.name.label("zone_name"),
            pods.c.uuid.label("pod_uuid"),
            pods.c.name.label("pod_name"),
            clusters.c.uuid.label("cluster_uuid"),
            clusters.c.name.label("cluster_name"),
        )
        .join(zones, zones.c.id == storage_pools.c.zone_id)
        .outerjoin(pods, pods.c.id == storage_pools.c.pod_id)
        .outerjoin(clusters, clusters.c.id == storage_pools.c.cluster_id)
    )


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


def _pools(conn: Connection, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = [storage_pools.c.removed.is_(None), *keyword(storage_pools.c.name, args)]
    where += matching(
        args,
        {
            "id": storage_pools.c.uuid,
            "name": storage_pools.c.name,
            "zoneid": zones.c.uuid,
            "podid": pods.c.uuid,
            "clusterid": clusters.c.uuid,
            "scope": storage_pools.c.scope,
        },
    )
    rows, total = fetch(conn, _pool_query().where(*where), storage_pools.c.id, args)
    return [pool_view(r) for r in rows], total


@command(
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
)
async def list_storage_pools(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    items, total = await ctx.read(_pools, args)
    return listing("storagepool", items, total)


def _pool_path(url: str) -> tuple[str, str]:
    """(pool type, path) from ``nfs://server/export``, ``file:///dir`` or a plain ``/dir``."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file") and (parsed.path or "").startswith("/"):
        return "Filesystem", parsed.path
    if parsed.scheme == "nfs" and parsed.netloc and parsed.path.startswith("/"):
        return "NetworkFilesystem", f"{parsed.netloc}:{parsed.path}"
    raise InvalidParameter(f"url {url[:128]!r}: give nfs://server/export, file:///path or /path")


def _create_pool(conn: Connection, caller: Any, args: dict[str, Any]) -> dict[str, Any]:
    zone = find(conn, caller, zones, args["zoneid"], "zone")
    scope = args.get("scope", "CLUSTER" if "clusterid" in args else "ZONE").upper()
    if scope not in ("CLUSTER", "ZONE"):
        raise InvalidParameter("scope must be CLUSTER or ZONE (host-local pools come from their agents)")
    pod_id = cluster_id = None
    if scope == "CLUSTER":
        if "clusterid" not in args:
            raise InvalidParameter("a CLUSTER-scoped pool needs clusterid")
        cluster = find(conn, caller, clusters, args["clusterid"], "cluster")
        if cluster.zone_id != zone.id:
            raise InvalidParameter(f"cluster {cluster.name} is not in zone {zone.name}")
        pod_id, cluster_id = cluster.pod_id, cluster.id
    pool_type, path = _pool_path(args["url"])
    size = args.get("capacitybytes", 0)
    if size <= 0:
        raise InvalidParameter("capacitybytes must be given, a positive number of bytes")
    pool_id = conn.execute(
        storage_pools.insert().values(
            uuid=new_uuid(),
            name=args["name"],
            zone_id=zone.id,
            pod_id=pod_id,
            cluster_id=cluster_id,
            scope=scope,
            pool_type=pool_type,
            path=path,
            tags=",".join(t.strip() for t in args.get("tags", "").split(",") if t.strip()),
            status="Up",
            capacity_bytes=size,
            created=now(),
        )
    ).inserted_primary_key[0]
    return pool_view(conn.execute(_pool_query().where(storage_pools.c.id == pool_id)).one())


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
async def create_storage_pool(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    pool = await ctx.run(_create_pool, ctx.caller, args)
    await ctx.event(
        "STORAGE.POOL.CREATE",
        f"created storage pool {pool['name']}",
        resource_type="StoragePool",
        resource_uuid=pool["id"],
    )
    await ctx.services.placement.load()
    return {"storagepool": pool}


def _delete_pool(conn: Connection, caller: Any, ident: str) -> str:
    pool = find(conn, caller, storage_pools, ident, "storage pool")
    if pool.scope == "HOST":
        raise InvalidParameter(f"pool {pool.name} is a host's local storage; it goes with its host")
    if conn.scalar(sa.select(volumes.c.id).where(volumes.c.pool_id == pool.id, volumes.c.removed.is_(None))):
        raise ResourceInUse(f"storage pool {pool.name} still holds volumes")
    _delete(conn, storage_pools, pool.id)
    return str(pool.name)


@command(
    "deleteStoragePool",
    "Deletes a primary storage pool that holds no volumes.",
    Param("id", "uuid", required=True, description="the pool's id"),
    Param(
        "forced", "boolean", description="accepted for compatibility; a pool with volumes is never deleted"
    ),
    admin=True,
    event="STORAGE.POOL.DELETE",
)
async def delete_storage_pool(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    name = await ctx.run(_delete_pool, ctx.caller, args["id"])
    await ctx.event(
        "STORAGE.POOL.DELETE",
        f"deleted storage pool {name}",
        resource_type="StoragePool",
        resource_uuid=args["id"],
    )
    await ctx.services.placement.load()
    return success()


# --- hosts -------------------------------------------------------------------------------------------


def _host_query() -> sa.Select[Any]:
    return (
        sa.select(
            hosts,
            host_capacity,
            zones.c.uuid.label("zone_uuid"),
            zones.c.name.label("zone_name"),
            pods.c.uuid.label("pod_uuid"),
            pods.c.name.label("pod_name"),
            clusters.c.uuid.label("cluster_uuid"),
            clusters.c.name.label("cluster_name"),
        )
        .join(host_capacity, host_capacity.c.host_id == hosts.c.id)
        .join(zones, zones.c.id == hosts.c.zone_id)
        .join(pods, pods.c.id == hosts.c.pod_id)
        .join(clusters, clusters.c.id == hosts.c.cluster_id)
    )


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


def _hosts(conn: Connection, args: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    where = [hosts.c.removed.is_(None), *keyword(hosts.c.name, args)]
    where += matching(
        args,
        {
            "id": hosts.c.uuid,
            "name": hosts.c.name,
            "zoneid": zones.c.uuid,
            "podid": pods.c.uuid,
            "clusterid": clusters.c.uuid,
            "state": hosts.c.status,
            "type": hosts.c.type,
            "resourcestate": hosts.c.resource_state,
            "hypervisor": hosts.c.hypervisor_type,
        },
    )
    rows, total = fetch(conn, _host_query().where(*where), hosts.c.id, args)
    return [host_view(r) for r in rows], total


@command(
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
)
async def list_hosts(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    items, total = await ctx.read(_hosts, args)
    return listing("host", items, total)


def host_by_uuid(conn: Connection, ident: str) -> dict[str, Any]:
    return host_view(conn.execute(_host_query().where(hosts.c.uuid == ident)).one())


def _set_resource_state(conn: Connection, caller: Any, ident: str, allowed: tuple[str, ...], new: str) -> Any:
    host = find(conn, caller, hosts, ident, "host")
    if host.resource_state not in allowed:
        raise InvalidParameter(
            f"host {host.name} is {host.resource_state}; this needs it {' or '.join(allowed)}"
        )
    conn.execute(hosts.update().where(hosts.c.id == host.id).values(resource_state=new))
    deltas.record(conn, deltas.HostEnabled(host.id, new == "Enabled"))
    return host


def _set_tags(conn: Connection, host_id: int, tags: str) -> None:
    conn.execute(hosts.update().where(hosts.c.id == host_id).values(host_tags=tags))


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
async def update_host(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    change = args.get("allocationstate")
    if change not in (None, "Enable", "Disable"):
        raise InvalidParameter("allocationstate must be Enable or Disable")
    host = await ctx.read(find, ctx.caller, hosts, args["id"], "host")
    if change:
        new = "Enabled" if change == "Enable" else "Disabled"
        await ctx.run(_set_resource_state, ctx.caller, args["id"], ("Enabled", "Disabled"), new)
    if "hosttags" in args:
        await ctx.run(
            _set_tags, host.id, ",".join(t.strip() for t in args["hosttags"].split(",") if t.strip())
        )
        await ctx.services.placement.load()
    await ctx.event("HOST.UPDATE", f"updated host {host.name}", resource_type="Host", resource_uuid=host.uuid)
    return {"host": await ctx.read(host_by_uuid, host.uuid)}


def _running_on(conn: Connection, host_id: int) -> list[int]:
    return list(
        conn.scalars(
            sa.select(vms.c.id)
            .where(vms.c.host_id == host_id, vms.c.removed.is_(None), vms.c.state == "Running")
            .order_by(vms.c.id)
        )
    )


@command(
    "prepareHostForMaintenance",
    "Puts a host into maintenance: it takes no new VMs and its running VMs are live-migrated away.",
    Param("id", "uuid", required=True, description="the host's id"),
    admin=True,
    is_async=True,
    event="MAINT.PREPARE",
    response="host",
)
async def prepare_host_for_maintenance(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    host = await ctx.run(
        _set_resource_state,
        ctx.caller,
        args["id"],
        ("Enabled", "Disabled", "ErrorInMaintenance"),
        "PrepareForMaintenance",
    )

    async def work() -> dict[str, Any]:
        failed = []
        for vm_id in await ctx.read(_running_on, host.id):
            try:
                await ctx.services.orchestrator.migrate(vm_id)
            except CumuloError as e:
                failed.append(f"VM {vm_id}: {e}")
        state = "ErrorInMaintenance" if failed else "Maintenance"
        await ctx.run(_set_resource_state, ctx.caller, host.uuid, ("PrepareForMaintenance",), state)
        if failed:
            raise CumuloError(f"host {host.name} could not empty: {'; '.join(failed)}")
        return {"host": await ctx.read(host_by_uuid, host.uuid)}

    job = await ctx.submit(
        work,
        description=f"maintenance of host {host.name}",
        instance_type="Host",
        instance_id=host.id,
        instance_uuid=host.uuid,
    )
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
async def cancel_host_maintenance(ctx: Any, args: dict[str, Any]) -> dict[str, Any]:
    host = await ctx.read(find, ctx.caller, hosts, args["id"], "host")

    async def work() -> dict[str, Any]:
        await ctx.run(
            _set_resource_state,
            ctx.caller,
            host.uuid,
            ("Maintenance", "ErrorInMaintenance", "PrepareForMaintenance"),
            "Enabled",
        )
        return {"host": await ctx.read(host_by_uuid, host.uuid)}

    job = await ctx.submit(
        work,
        description=f"end of maintenance of host {host.name}",
        instance_type="Host",
        instance_id=host.id,
        instance_uuid=host.uuid,
    )
    return {"jobid": job}
