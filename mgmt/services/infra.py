"""Infrastructure: zones, pods, clusters, primary storage pools and (for listing) hosts, each declared
once as a ``crud.Kind``; what a create takes (a spec) and checks is each kind's own."""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.database import inserted_id
from ..db.schema import clusters, host_capacity, hosts, networks, pods, storage_pools, vms, volumes, zones
from ..errors import InvalidParameter
from .caller import Caller
from .crud import Filters, Kind, Row, creates, updates
from .queries import find, new_uuid, now
from .tags import tagged

HYPERVISORS = ("KVM", "Simulator")


def _parents(table: sa.Table, *, pod: bool = False, cluster: bool = False,
             outer: bool = False) -> sa.Select[Any]:
    columns: list[Any] = [table, zones.c.uuid.label("zone_uuid"), zones.c.name.label("zone_name")]
    if pod:
        columns += [pods.c.uuid.label("pod_uuid"), pods.c.name.label("pod_name")]
    if cluster:
        columns += [clusters.c.uuid.label("cluster_uuid"), clusters.c.name.label("cluster_name")]
    query = sa.select(*columns).join(zones, zones.c.id == table.c.zone_id)
    join = query.outerjoin if outer else query.join
    if pod:
        query = join(pods, pods.c.id == table.c.pod_id)
        join = query.outerjoin if outer else query.join
    if cluster:
        query = join(clusters, clusters.c.id == table.c.cluster_id)
    return query


def _host_query() -> sa.Select[Any]:
    return (
        sa.select(
            hosts, host_capacity,
            zones.c.uuid.label("zone_uuid"), zones.c.name.label("zone_name"),
            pods.c.uuid.label("pod_uuid"), pods.c.name.label("pod_name"),
            clusters.c.uuid.label("cluster_uuid"), clusters.c.name.label("cluster_name"),
        )
        .join(host_capacity, host_capacity.c.host_id == hosts.c.id)
        .join(zones, zones.c.id == hosts.c.zone_id)
        .join(pods, pods.c.id == hosts.c.pod_id)
        .join(clusters, clusters.c.id == hosts.c.cluster_id)
    )


def _not_host_local(pool: Row) -> None:
    if pool.scope == "HOST":
        raise InvalidParameter(f"pool {pool.name} is a host's local storage; it goes with its host")


ZONE = Kind(
    "zone", zones, lambda: sa.select(zones),
    lambda: {"id": zones.c.uuid, "ids": zones.c.uuid, "name": zones.c.name,
             "networktype": zones.c.network_type},
    conditions=lambda args: tagged(args, "Zone", zones.c.uuid),
    children=((pods, "zone_id", "zone {name} still has pods; delete them first"),
              (networks, "zone_id", "zone {name} still has networks; delete them first"),
              (storage_pools, "zone_id", "zone {name} still has storage pools; delete them first")),
    placement=True,
)
POD = Kind(
    "pod", pods, lambda: _parents(pods),
    lambda: {"id": pods.c.uuid, "name": pods.c.name, "zoneid": zones.c.uuid,
             "allocationstate": pods.c.allocation_state},
    children=((clusters, "pod_id", "pod {name} still has clusters; delete them first"),
              (hosts, "pod_id", "pod {name} still has hosts; delete them first")),
    placement=True,  # (its allocation state)
)
CLUSTER = Kind(
    "cluster", clusters, lambda: _parents(clusters, pod=True),
    lambda: {"id": clusters.c.uuid, "name": clusters.c.name, "zoneid": zones.c.uuid, "podid": pods.c.uuid,
             "hypervisor": clusters.c.hypervisor_type, "allocationstate": clusters.c.allocation_state},
    conditions=lambda args: [sa.false()] if args.get("clustertype", "CloudManaged") != "CloudManaged"
    or args.get("managedstate", "Managed") != "Managed" else [],
    children=((hosts, "cluster_id", "cluster {name} still has hosts; delete them first"),
              (storage_pools, "cluster_id", "cluster {name} still has storage pools; delete them first")),
    placement=True,
)
POOL = Kind(
    "storage pool", storage_pools, lambda: _parents(storage_pools, pod=True, cluster=True, outer=True),
    lambda: {"id": storage_pools.c.uuid, "name": storage_pools.c.name, "zoneid": zones.c.uuid,
             "podid": pods.c.uuid, "clusterid": clusters.c.uuid, "scope": storage_pools.c.scope,
             "path": storage_pools.c.path, "status": storage_pools.c.status},
    conditions=lambda args: [storage_pools.c.host_id == sa.select(hosts.c.id).where(
        hosts.c.uuid == args["hostid"]).scalar_subquery()] if "hostid" in args else [],
    children=((volumes, "pool_id", "storage pool {name} still holds volumes"),),
    placement=True,
    removable=_not_host_local,
)
HOST = Kind(
    "host", hosts, _host_query,
    lambda: {"id": hosts.c.uuid, "name": hosts.c.name, "zoneid": zones.c.uuid, "podid": pods.c.uuid,
             "clusterid": clusters.c.uuid, "state": hosts.c.status, "type": hosts.c.type,
             "resourcestate": hosts.c.resource_state, "hypervisor": hosts.c.hypervisor_type},
    conditions=lambda args: [hosts.c.id == sa.select(vms.c.host_id).where(
        vms.c.uuid == args["virtualmachineid"]).scalar_subquery()] if "virtualmachineid" in args else [],
)


# --- what each kind's create takes and checks ----------------------------------------------------------


@dataclass(frozen=True)
class ZoneSpec:
    name: str
    dns1: str | None = None
    dns2: str | None = None
    network_type: str = "Advanced"
    allocation_state: str = "Enabled"
    internal_dns1: str | None = None
    internal_dns2: str | None = None
    guest_cidr: str | None = None
    local_storage: bool = True
    security_groups: bool = False


@dataclass(frozen=True)
class PodSpec:
    zone_uuid: str
    name: str
    gateway: str | None = None
    netmask: str | None = None
    allocation_state: str = "Enabled"
    start_ip: str | None = None
    end_ip: str | None = None


@dataclass(frozen=True)
class ClusterSpec:
    zone_uuid: str
    pod_uuid: str
    name: str
    hypervisor: str
    allocation_state: str = "Enabled"


@dataclass(frozen=True)
class PoolSpec:
    zone_uuid: str
    name: str
    url: str
    capacity_bytes: int
    scope: str = ""  # CLUSTER or ZONE; empty: CLUSTER when a cluster is named, else ZONE
    cluster_uuid: str | None = None
    tags: tuple[str, ...] = ()
    details: Mapping[str, str] = field(default_factory=dict)
    pod_uuid: str | None = None  # (checked against the cluster's)


def _allocation(state: str) -> str:
    if state not in ("Enabled", "Disabled"):
        raise InvalidParameter("allocationstate must be Enabled or Disabled")
    return state


def _address(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidParameter(f"parameter {name}: {value[:64]!r} is not an IP address") from None


def _cidr(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise InvalidParameter(f"guestcidraddress {value[:64]!r} is not a CIDR (10.1.0.0/16)") from None


def _taken(conn: Connection, table: sa.Table, name: str, **scope: int) -> bool:
    where = [table.c.name == name, table.c.removed.is_(None)]
    where += [table.c[column] == value for column, value in scope.items()]
    return conn.scalar(sa.select(table.c.id).where(*where)) is not None


@creates(ZoneSpec, ZONE)
def _insert_zone(conn: Connection, caller: Caller, spec: ZoneSpec) -> int:
    if spec.network_type not in ("Advanced", "Basic"):
        raise InvalidParameter("networktype must be Advanced or Basic")
    if _taken(conn, zones, spec.name):
        raise InvalidParameter(f"a zone named {spec.name!r} exists already")
    return inserted_id(conn.execute(zones.insert().values(
        uuid=new_uuid(), name=spec.name, network_type=spec.network_type, dns1=_address(spec.dns1, "dns1"),
        dns2=_address(spec.dns2, "dns2"), allocation_state=_allocation(spec.allocation_state),
        internal_dns1=_address(spec.internal_dns1, "internaldns1"),
        internal_dns2=_address(spec.internal_dns2, "internaldns2"), guest_cidr=_cidr(spec.guest_cidr),
        local_storage=spec.local_storage, security_groups=spec.security_groups, created=now(),
    )))


@creates(PodSpec, POD)
def _insert_pod(conn: Connection, caller: Caller, spec: PodSpec) -> int:
    zone = find(conn, caller, zones, spec.zone_uuid, "zone")
    if _taken(conn, pods, spec.name, zone_id=zone.id):
        raise InvalidParameter(f"zone {zone.name} has a pod named {spec.name!r} already")
    return inserted_id(conn.execute(pods.insert().values(
        uuid=new_uuid(), zone_id=zone.id, name=spec.name, gateway=_address(spec.gateway, "gateway"),
        netmask=_address(spec.netmask, "netmask"), allocation_state=_allocation(spec.allocation_state),
        start_ip=_address(spec.start_ip, "startip"), end_ip=_address(spec.end_ip, "endip"), created=now(),
    )))


@creates(ClusterSpec, CLUSTER)
def _insert_cluster(conn: Connection, caller: Caller, spec: ClusterSpec) -> int:
    if spec.hypervisor not in HYPERVISORS:
        raise InvalidParameter(f"hypervisor must be one of {', '.join(HYPERVISORS)}")
    zone = find(conn, caller, zones, spec.zone_uuid, "zone")
    pod = find(conn, caller, pods, spec.pod_uuid, "pod")
    if pod.zone_id != zone.id:
        raise InvalidParameter(f"pod {pod.name} is not in zone {zone.name}")
    if _taken(conn, clusters, spec.name, zone_id=zone.id):
        raise InvalidParameter(f"zone {zone.name} has a cluster named {spec.name!r} already")
    return inserted_id(conn.execute(clusters.insert().values(
        uuid=new_uuid(), zone_id=zone.id, pod_id=pod.id, name=spec.name, hypervisor_type=spec.hypervisor,
        allocation_state=_allocation(spec.allocation_state), created=now(),
    )))


def pool_path(url: str) -> tuple[str, str]:
    """(pool type, path) from ``nfs://server/export``, ``file:///dir`` or a plain ``/dir``."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file") and (parsed.path or "").startswith("/"):
        return "Filesystem", parsed.path
    if parsed.scheme == "nfs" and parsed.netloc and parsed.path.startswith("/"):
        return "NetworkFilesystem", f"{parsed.netloc}:{parsed.path}"
    raise InvalidParameter(f"url {url[:128]!r}: give nfs://server/export, file:///path or /path")


@creates(PoolSpec, POOL)
def _insert_pool(conn: Connection, caller: Caller, spec: PoolSpec) -> int:
    zone = find(conn, caller, zones, spec.zone_uuid, "zone")
    scope = (spec.scope or ("CLUSTER" if spec.cluster_uuid else "ZONE")).upper()
    if scope not in ("CLUSTER", "ZONE"):
        raise InvalidParameter("scope must be CLUSTER or ZONE (host-local pools come from their agents)")
    pod_id = cluster_id = None
    if scope == "CLUSTER":
        if not spec.cluster_uuid:
            raise InvalidParameter("a CLUSTER-scoped pool needs clusterid")
        cluster = find(conn, caller, clusters, spec.cluster_uuid, "cluster")
        if cluster.zone_id != zone.id:
            raise InvalidParameter(f"cluster {cluster.name} is not in zone {zone.name}")
        if spec.pod_uuid and find(conn, caller, pods, spec.pod_uuid, "pod").id != cluster.pod_id:
            raise InvalidParameter(f"cluster {cluster.name} is not in pod {spec.pod_uuid}")
        pod_id, cluster_id = cluster.pod_id, cluster.id
    pool_type, path = pool_path(spec.url)
    if spec.capacity_bytes <= 0:
        raise InvalidParameter("capacitybytes must be a positive number of bytes")
    return inserted_id(conn.execute(storage_pools.insert().values(
        uuid=new_uuid(), name=spec.name, zone_id=zone.id, pod_id=pod_id, cluster_id=cluster_id,
        scope=scope, pool_type=pool_type, path=path, tags=",".join(spec.tags), status="Up",
        capacity_bytes=spec.capacity_bytes, details=orjson.dumps(dict(spec.details)).decode(), created=now(),
    )))


def _renamed(conn: Connection, row: Row, table: sa.Table, name: str, **scope: int) -> str:
    if not 1 <= len(name) <= 255:
        raise InvalidParameter("name must have 1 to 255 characters")
    if name != row.name and _taken(conn, table, name, **scope):
        raise InvalidParameter(f"the name {name!r} is taken")
    return name


@updates(ZONE)
def _zone_changes(conn: Connection, row: Row, args: Filters) -> dict[str, Any]:
    """updateZone: names, DNS servers, the guest CIDR, local storage and allocation state."""
    values: dict[str, Any] = {}
    if "name" in args:
        values["name"] = _renamed(conn, row, zones, args["name"])
    for param, column in (("dns1", "dns1"), ("dns2", "dns2"), ("internaldns1", "internal_dns1"),
                          ("internaldns2", "internal_dns2")):
        if param in args:
            values[column] = _address(args[param], param)
    if "guestcidraddress" in args:
        values["guest_cidr"] = _cidr(args["guestcidraddress"])
    if "localstorageenabled" in args:
        values["local_storage"] = args["localstorageenabled"]
    if "allocationstate" in args:
        values["allocation_state"] = _allocation(args["allocationstate"])
    if "sortkey" in args:
        values["sort_key"] = args["sortkey"]
    if "details" in args:  # (replacing those it had, as CloudStack's updateZone does)
        values["details"] = orjson.dumps(args["details"]).decode()
    return values


@updates(POD)
def _pod_changes(conn: Connection, row: Row, args: Filters) -> dict[str, Any]:
    """updatePod: its name, gateway, netmask, management range and allocation state."""
    values: dict[str, Any] = {}
    if "name" in args:
        values["name"] = _renamed(conn, row, pods, args["name"], zone_id=row.zone_id)
    for param, column in (("gateway", "gateway"), ("netmask", "netmask"), ("startip", "start_ip"),
                          ("endip", "end_ip")):
        if param in args:
            values[column] = _address(args[param], param)
    if "allocationstate" in args:
        values["allocation_state"] = _allocation(args["allocationstate"])
    return values


@updates(CLUSTER)
def _cluster_changes(conn: Connection, row: Row, args: Filters) -> dict[str, Any]:
    """updateCluster: its name and allocation state (its hypervisor and type are what its hosts are)."""
    values: dict[str, Any] = {}
    if "clustername" in args:
        values["name"] = _renamed(conn, row, clusters, args["clustername"], zone_id=row.zone_id)
    if "allocationstate" in args:
        values["allocation_state"] = _allocation(args["allocationstate"])
    if args.get("hypervisor", row.hypervisor_type) != row.hypervisor_type:
        raise InvalidParameter(f"cluster {row.name} is {row.hypervisor_type}: its hypervisor does not change")
    if args.get("clustertype", "CloudManaged") != "CloudManaged" or \
            args.get("managedstate", "Managed") != "Managed":
        raise InvalidParameter("clusters are CloudManaged and Managed here")
    return values


@updates(POOL)
def _pool_changes(conn: Connection, row: Row, args: Filters) -> dict[str, Any]:
    """updateStoragePool: name, tags, size, details, and enabled (Up) or disabled (Disabled: no new
    volumes)."""
    values: dict[str, Any] = {}
    if "name" in args:
        values["name"] = _renamed(conn, row, storage_pools, args["name"])
    if "tags" in args:
        values["tags"] = ",".join(t.strip() for t in args["tags"] if t.strip())
    if "capacitybytes" in args:
        if args["capacitybytes"] < row.used_bytes + row.reserved_bytes or args["capacitybytes"] <= 0:
            raise InvalidParameter(f"capacitybytes is below what pool {row.name} holds already")
        values["capacity_bytes"] = args["capacitybytes"]
    if "enabled" in args:
        if row.status not in ("Up", "Disabled"):
            raise InvalidParameter(f"pool {row.name} is {row.status}; only an Up pool is disabled, and back")
        values["status"] = "Up" if args["enabled"] else "Disabled"
    if "details" in args:
        details = orjson.loads(row.details or "{}")
        details.update(args["details"])
        values["details"] = orjson.dumps(details).decode()
    return values
