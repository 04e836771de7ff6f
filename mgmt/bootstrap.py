"""Inventory bootstrap: a zone description file (TOML) creates zones, pods, clusters, primary storage,
templates, offerings and shared guest networks, idempotently (by name: running it again updates what
changed and creates what is new; it never deletes). Hosts are not described: they appear when their
agents connect. The format is documented, with an example, in docs/zone-file.md.
"""

from __future__ import annotations

import ipaddress
import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .db.database import inserted_id
from .db.schema import (
    clusters,
    disk_offerings,
    ip_ranges,
    networks,
    pods,
    service_offerings,
    storage_pools,
    templates,
    zones,
)

GIB = 1024**3


class ZoneFileError(ValueError):
    """The zone file is wrong; the message names the place."""


def load(path: str | Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ZoneFileError(f"{path}: {e}") from None


def _need(item: dict[str, Any], key: str, where: str) -> Any:
    if key not in item:
        raise ZoneFileError(f"{where}: '{key}' is required")
    return item[key]


def _upsert(conn: Connection, table: sa.Table, match: dict[str, Any], values: dict[str, Any]) -> int:
    """Update the row matching ``match`` (not removed) with ``values``, or insert it; returns its id."""
    where = [table.c[k] == v for k, v in match.items()]
    if "removed" in table.c:
        where.append(table.c.removed.is_(None))
    row_id = conn.scalar(sa.select(table.c.id).where(*where))
    if row_id is not None:
        if values:
            conn.execute(table.update().where(table.c.id == row_id).values(**values))
        return int(row_id)
    extra: dict[str, Any] = {}
    if "uuid" in table.c:
        extra["uuid"] = str(uuid.uuid4())
    if "created" in table.c:
        extra["created"] = datetime.now(UTC)
    return inserted_id(conn.execute(table.insert().values(**match, **values, **extra)))


def apply(conn: Connection, doc: dict[str, Any]) -> dict[str, int]:
    """Apply a parsed zone file in the caller's transaction; returns how many of each kind it holds."""
    counts = dict.fromkeys(("zones", "pods", "clusters", "pools", "networks", "templates",
                            "service_offerings", "disk_offerings"), 0)
    for zi, zone in enumerate(doc.get("zone", [])):
        zname = _need(zone, "name", f"zone {zi + 1}")
        zone_id = _upsert(conn, zones, {"name": zname}, {
            "network_type": zone.get("network_type", "Advanced"), "dns1": zone.get("dns1"),
            "dns2": zone.get("dns2"), "allocation_state": "Enabled"})
        counts["zones"] += 1
        cluster_ids: dict[str, tuple[int, int]] = {}
        for pi, pod in enumerate(zone.get("pod", [])):
            pname = _need(pod, "name", f"zone {zname}, pod {pi + 1}")
            pod_id = _upsert(conn, pods, {"zone_id": zone_id, "name": pname}, {
                "gateway": pod.get("gateway"), "netmask": pod.get("netmask"), "allocation_state": "Enabled"})
            counts["pods"] += 1
            for ci, cluster in enumerate(pod.get("cluster", [])):
                cname = _need(cluster, "name", f"zone {zname}, pod {pname}, cluster {ci + 1}")
                cluster_ids[cname] = (pod_id, _upsert(conn, clusters, {"zone_id": zone_id, "name": cname}, {
                    "pod_id": pod_id, "hypervisor_type": cluster.get("hypervisor", "Simulator"),
                    "allocation_state": "Enabled", "cpu_overcommit": cluster.get("cpu_overcommit"),
                    "mem_overcommit": cluster.get("mem_overcommit")}))
                counts["clusters"] += 1
        for si, pool in enumerate(zone.get("storage_pool", [])):
            where = f"zone {zname}, storage pool {si + 1}"
            name = _need(pool, "name", where)
            scope: dict[str, int | None] = {"pod_id": None, "cluster_id": None}
            if "cluster" in pool:
                if pool["cluster"] not in cluster_ids:
                    raise ZoneFileError(f"{where}: no cluster named {pool['cluster']!r} in zone {zname}")
                scope["pod_id"], scope["cluster_id"] = cluster_ids[pool["cluster"]]
            _upsert(conn, storage_pools, {"zone_id": zone_id, "name": name}, {
                **scope, "scope": "CLUSTER" if "cluster" in pool else "ZONE",
                "pool_type": pool.get("type", "NetworkFilesystem"), "path": _need(pool, "path", where),
                "tags": ",".join(pool.get("tags", [])), "status": "Up",
                "capacity_bytes": int(float(_need(pool, "capacity_gb", where)) * GIB)})
            counts["pools"] += 1
        for ni, net in enumerate(zone.get("network", [])):
            where = f"zone {zname}, network {ni + 1}"
            try:
                cidr = ipaddress.ip_network(_need(net, "cidr", where))
                gateway = ipaddress.ip_address(_need(net, "gateway", where))
                ranges = [(ipaddress.ip_address(a), ipaddress.ip_address(b))
                          for a, b in net.get("ip_ranges", [])]
            except ValueError as e:
                raise ZoneFileError(f"{where}: {e}") from None
            outside = any(a not in cidr or b not in cidr or int(a) > int(b) for a, b in ranges)
            if gateway not in cidr or outside:
                raise ZoneFileError(f"{where}: the gateway and every IP range must lie inside {cidr}")
            dns = net.get("dns", [])
            net_id = _upsert(conn, networks, {"zone_id": zone_id, "name": _need(net, "name", where)}, {
                "guest_type": "Shared", "cidr": str(cidr), "gateway": str(gateway),
                "netmask": str(cidr.netmask), "dns1": dns[0] if dns else None,
                "dns2": dns[1] if len(dns) > 1 else None, "vlan": str(net.get("vlan", "untagged")),
                "bridge": net.get("bridge", ""), "state": "Setup"})
            conn.execute(ip_ranges.delete().where(ip_ranges.c.network_id == net_id))
            if ranges:
                conn.execute(ip_ranges.insert(), [{"network_id": net_id, "start_ip": str(a), "end_ip": str(b)}
                                                  for a, b in ranges])
            counts["networks"] += 1
    for ti, tmpl in enumerate(doc.get("template", [])):
        where = f"template {ti + 1}"
        _upsert(conn, templates, {"name": _need(tmpl, "name", where)}, {
            "display_text": tmpl.get("display_text", tmpl["name"]), "format": tmpl.get("format", "QCOW2"),
            "hypervisor_type": tmpl.get("hypervisor", "Simulator"), "os_type": tmpl.get("os_type", ""),
            "url": _need(tmpl, "url", where), "size_bytes": int(float(tmpl.get("size_gb", 2)) * GIB),
            "public": True, "featured": bool(tmpl.get("featured", True)), "state": "Ready"})
        counts["templates"] += 1
    for oi, offering in enumerate(doc.get("service_offering", [])):
        where = f"service offering {oi + 1}"
        _upsert(conn, service_offerings, {"name": _need(offering, "name", where)}, {
            "display_text": offering.get("display_text", offering["name"]),
            "cpus": int(_need(offering, "cpus", where)),
            "cpu_speed_mhz": int(_need(offering, "cpu_speed_mhz", where)),
            "memory_mb": int(_need(offering, "memory_mb", where)),
            "host_tags": ",".join(offering.get("host_tags", [])),
            "ha_enabled": bool(offering.get("ha", False))})
        counts["service_offerings"] += 1
    for di, offering in enumerate(doc.get("disk_offering", [])):
        where = f"disk offering {di + 1}"
        _upsert(conn, disk_offerings, {"name": _need(offering, "name", where)}, {
            "display_text": offering.get("display_text", offering["name"]),
            "size_gb": int(_need(offering, "size_gb", where)), "tags": ",".join(offering.get("tags", []))})
        counts["disk_offerings"] += 1
    return counts
