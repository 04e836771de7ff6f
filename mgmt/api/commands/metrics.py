"""CloudStack's metrics commands: the lists of VMs, hosts, clusters, zones, pools and volumes with what
they use (from the VM statistics the hosts report every ``vm.stats.interval``) in the units CloudStack's
UI shows, and the counts of the whole infrastructure, the management servers and the database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...services.metrics import Capacity
from ..registry import command
from .common import date, listing
from .infra import (
    CLUSTER_FILTERS,
    HOST_FILTERS,
    POOL_FILTERS,
    ZONE_FILTERS,
    list_clusters,
    list_hosts,
    list_storage_pools,
    list_zones,
)
from .vms import VM_FILTERS, list_vms
from .volumes import VOLUME_FILTERS, list_volumes

if TYPE_CHECKING:
    from ..app import Context

GB = 1024**3
EMPTY = Capacity()  # (a cluster or zone without hosts)


def _gb(n: float) -> str:
    return f"{n / GB:.2f} GB"


def _ghz(mhz: float) -> str:
    return f"{mhz / 1000:.2f} Ghz"


def _mb(kb: float) -> str:
    return f"{kb / 1024:.2f} MB"


@command("listVirtualMachinesMetrics", "Lists VMs with what they use: CPU, memory, disk and network, from "
         "their hosts' latest report.", *VM_FILTERS, response="virtualmachine",
         schema="virtualmachinemetrics")
async def list_vm_metrics(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = await list_vms(ctx, args, metrics=True)
    for vm in answer.get("virtualmachine", []):
        default = next((n for n in vm.get("nic", []) if n.get("isdefault")), None)
        vm.update(
            ipaddress=default["ipaddress"] if default else None,
            cputotal=_ghz(vm.get("cpunumber", 0) * vm.get("cpuspeed", 0)),
            memorytotal=_gb(vm.get("memory", 0) * 1024**2),
            networkread=_mb(vm.get("networkkbsread", 0)),
            networkwrite=_mb(vm.get("networkkbswrite", 0)),
            diskread=_mb(vm.get("diskkbsread", 0)),
            diskwrite=_mb(vm.get("diskkbswrite", 0)),
            diskiopstotal=vm.get("diskioread", 0) + vm.get("diskiowrite", 0),
        )
        if vm["ipaddress"] is None:
            del vm["ipaddress"]
    return answer


def _thresholds(used: float, allocated: float, total: float, kind: str,
                values: dict[str, Any]) -> dict[str, Any]:
    """CloudStack's threshold flags: in use or allocated past the notification (0.75) and disable
    thresholds (cluster.<kind>.allocated.capacity.disablethreshold)."""
    notify = float(values.get(f"cluster.{kind}.allocated.capacity.notificationthreshold", 0.75))
    disable = float(values.get(f"cluster.{kind}.allocated.capacity.disablethreshold", 0.85))
    share_used = used / total if total else 0.0
    share_allocated = allocated / total if total else 0.0
    return {f"{kind}threshold": share_used > notify, f"{kind}disablethreshold": share_used > disable,
            f"{kind}allocatedthreshold": share_allocated > notify,
            f"{kind}allocateddisablethreshold": share_allocated > disable}


@command("listHostsMetrics", "Lists hosts with what they have, give out and use (their VMs' latest "
         "statistics).", *HOST_FILTERS, admin=True, response="host", schema="hostmetrics")
async def list_host_metrics(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = await list_hosts(ctx, args)
    hosts = answer.get("host", [])
    usage = await ctx.services.metrics.host_usage([h["id"] for h in hosts])
    values = ctx.services.values
    for host in hosts:
        u = usage.get(host["id"])
        total_mhz = host.get("cpunumber", 0) * host.get("cpuspeed", 0)
        used_mhz = u.cpu_mhz if u else 0.0
        memory_used = u.memory_bytes if u else 0
        host.update(
            powerstate="On" if host["state"] == "Up" else "Unknown",
            instances=f"{u.running if u else 0} / {u.total if u else 0}",
            systeminstances="0 / 0",
            cputotalghz=_ghz(total_mhz),
            cpuusedghz=_ghz(used_mhz),
            cpuallocatedghz=_ghz(host.get("cpuallocatedvalue", 0)),
            cpuused=f"{100 * used_mhz / total_mhz:.2f}%" if total_mhz else "0%",
            memorytotalgb=_gb(host.get("memorytotal", 0)),
            memoryusedgb=_gb(memory_used),
            memoryallocatedgb=_gb(host.get("memoryallocated", 0)),
            networkread=_mb((u.net_rx_bytes if u else 0) / 1024),
            networkwrite=_mb((u.net_tx_bytes if u else 0) / 1024),
            networkkbsread=(u.net_rx_bytes if u else 0) // 1024,
            networkkbswrite=(u.net_tx_bytes if u else 0) // 1024,
            **_thresholds(used_mhz, host.get("cpuallocatedvalue", 0), total_mhz, "cpu", values),
            **_thresholds(memory_used, host.get("memoryallocated", 0), host.get("memorytotal", 0), "memory",
                          values),
        )
    return answer


async def _aggregate(ctx: Context, answer: dict[str, Any], key: str, level: str) -> dict[str, Any]:
    capacities = await ctx.services.metrics.capacities(level)
    values = ctx.services.values
    for item in answer.get(key, []):
        cap = capacities.get(item["id"]) or EMPTY
        counted = "hosts" if level == "cluster" else "clusters"
        item.update(
            state=item.get("allocationstate", "Enabled"),
            cputotal=_ghz(cap.cpu_mhz),
            cpuused=_ghz(cap.usage.cpu_mhz),
            cpuallocated=_ghz(cap.cpu_allocated_mhz),
            memorytotal=_gb(cap.memory_bytes),
            memoryused=_gb(cap.usage.memory_bytes),
            memoryallocated=_gb(cap.memory_allocated_bytes),
            **{counted: f"{cap.hosts_up} / {cap.hosts}" if level == "cluster" else str(cap.hosts)},
            **_thresholds(cap.usage.cpu_mhz, cap.cpu_allocated_mhz, cap.cpu_mhz, "cpu", values),
            **_thresholds(cap.usage.memory_bytes, cap.memory_allocated_bytes, cap.memory_bytes, "memory",
                          values),
        )
    return answer


@command("listClustersMetrics", "Lists clusters with what their hosts have, give out and use.",
         *CLUSTER_FILTERS, admin=True, response="cluster", schema="clustermetrics")
async def list_cluster_metrics(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _aggregate(ctx, await list_clusters(ctx, args), "cluster", "cluster")


@command("listZonesMetrics", "Lists zones with what their hosts have, give out and use.", *ZONE_FILTERS,
         admin=True, response="zone", schema="zonemetrics")
async def list_zone_metrics(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await _aggregate(ctx, await list_zones(ctx, args), "zone", "zone")


@command("listStoragePoolsMetrics", "Lists storage pools with their space in GB and its thresholds.",
         *POOL_FILTERS, admin=True, response="storagepool", schema="storagepoolmetrics")
async def list_pool_metrics(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = await list_storage_pools(ctx, args)
    values = ctx.services.values
    notify = float(values.get("cluster.storage.capacity.notificationthreshold", 0.75))
    disable = float(values.get("pool.storage.capacity.disablethreshold", 0.85))
    allocated_disable = float(values.get("pool.storage.allocated.capacity.disablethreshold", 0.85))
    for pool in answer.get("storagepool", []):
        total, used, allocated = pool["disksizetotal"], pool["disksizeused"], pool["disksizeallocated"]
        factor = float(pool.get("overprovisionfactor", "1"))
        pool.update(
            disksizetotalgb=_gb(total), disksizeusedgb=_gb(used), disksizeallocatedgb=_gb(allocated),
            disksizeunallocatedgb=_gb(max(0.0, total * factor - allocated)),
            storageusagethreshold=bool(total) and used / total > notify,
            storageusagedisablethreshold=bool(total) and used / total > disable,
            storageallocatedthreshold=bool(total) and allocated / (total * factor) > notify,
            storageallocateddisablethreshold=bool(total) and allocated / (total * factor) > allocated_disable,
        )
    return answer


@command("listVolumesMetrics", "Lists volumes with their size in GB.", *VOLUME_FILTERS, response="volume",
         schema="volumemetrics")
async def list_volume_metrics(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = await list_volumes(ctx, args)
    for volume in answer.get("volume", []):
        volume["sizegb"] = _gb(volume.get("size", 0))
    return answer


@command("listInfrastructure", "Counts the cloud's infrastructure: zones, pods, clusters, hosts, pools, "
         "management servers and alerts.", admin=True, response="infrastructure")
async def list_infrastructure(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    counts = await ctx.services.metrics.infrastructure()
    return {"infrastructure": {**counts, "imagestores": 0, "objectstores": 0, "systemvms": 0, "routers": 0,
                               "ilbvms": 0}}


@command("listManagementServersMetrics", "Lists the management servers; this one with its process's and "
         "machine's figures.", *(p for p in HOST_FILTERS if p.name in ("id", "name", "page", "pagesize",
                                                                        "keyword")),
         admin=True, response="managementserver", schema="managementservermetrics")
async def list_management_server_metrics(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    found = await ctx.services.management_servers.list()
    here = process_here(ctx)
    items = []
    word = args.get("keyword", "").lower()
    for s in found:
        if args.get("id", s.uuid) != s.uuid or args.get("name", s.name) != s.name or (
                word and word not in s.name.lower() and word not in s.address.lower()):
            continue
        item: dict[str, Any] = {"id": s.uuid, "name": s.name, "state": s.state, "version": s.version,
                                "serviceip": s.address, "lastserverstart": date(s.started)}
        if s.stopped is not None:
            item["lastserverstop"] = date(s.stopped)
        if s.msid == ctx.services.msid:
            item.update(here)
        items.append(item)
    return listing("managementserver", items, len(items))


def process_here(ctx: Context) -> dict[str, Any]:
    figures = ctx.services.metrics.process()
    agents = ctx.services.agents
    figures.update(agentcount=len(agents.hosts), collectiontime=date(ctx.services.metrics.clock()),
                   dbislocal=ctx.services.db.dialect == "sqlite")
    if "lastboottime" in figures:
        figures["lastboottime"] = date(figures["lastboottime"])
    return figures


@command("listDbMetrics", "The database's figures: its server, version, connections, queries, uptime.",
         admin=True, response="dbMetrics")
async def list_db_metrics(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return {"dbMetrics": {**await ctx.services.metrics.database(),
                          "collectiontime": date(ctx.services.metrics.clock())}}
