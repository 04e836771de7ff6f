"""Service offerings (the CPU and memory of a VM, how its root disk is made and driven, where the planner
puts it) and disk offerings (the size, provisioning, cache mode and I/O limits of a data disk), each
declared once as a ``crud.Kind``. A deleted offering is marked removed; what was made from it keeps it.

A custom service offering leaves its vCPUs, speed or memory to the deploy (``details[0].cpuNumber``...),
within its bounds; a custom disk offering leaves the size to the volume (``size``). The cloud has one
custom disk offering from the start, "Custom", as CloudStack has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.database import inserted_id
from ..db.schema import disk_offerings, service_offerings, vms, zones
from ..errors import InvalidParameter
from ..orchestration.vms import PLANNER_ALGORITHMS
from ..storage import tuning
from .caller import Caller
from .crud import Filters, Kind, Row, creates, updates
from .queries import domain_in_reach, find, new_uuid, now

MAX_SIZE = 1_048_576  # vCPUs, MHz and MiB an offering may ask for, at most
MAX_DISK_GB = 65536
# CloudStack's deployment planners -> the planner's algorithm for a VM of the offering ("" : the cloud's
# vm.allocation.algorithm, which is what FirstFitPlanner orders hosts by)
PLANNERS = PLANNER_ALGORITHMS
STORAGE_TYPES = ("shared", "local")
# (for the API, which reaches storage through the services only)
view_tuning = tuning.view
IO_PARAMS = {param: field for param, (_, field) in tuning.IOTUNE.items()}  # API parameter -> response field


def dedicated_to(column: Any, uuids: list[str]) -> Any:
    """The offerings public or dedicated to one of ``uuids`` (a domain and those above it, or a zone)."""
    return sa.or_(column == "", *[column.contains(f",{u},", autoescape=True) for u in uuids])


def _dedication(table: sa.Table, args: Filters) -> list[Any]:
    """The internal filters the API adds: ``domains`` (the caller's or a domainid's chain: offerings
    they may use) and ``zone`` (offerings of that zone)."""
    where = []
    if "domains" in args:
        where.append(dedicated_to(table.c.domain_ids, list(args["domains"])))
    if "zone" in args:
        where.append(dedicated_to(table.c.zone_ids, [args["zone"]]))
    return where


def _other_than_the_vms(args: Filters) -> list[Any]:
    """With ``virtualmachineid``: the offerings that VM could change to (every other one)."""
    if "virtualmachineid" not in args:
        return []
    current = sa.select(vms.c.service_offering_id).where(vms.c.uuid == args["virtualmachineid"])
    return [service_offerings.c.id.not_in(current)]


def _service_conditions(args: Filters) -> list[Any]:
    """CloudStack's list filters: the offerings that give at least the vCPUs, speed and memory asked
    (a custom offering whose bounds reach them), and by storage type."""
    where = _other_than_the_vms(args) + _dedication(service_offerings, args)
    t = service_offerings.c
    if "template_bytes" in args:  # (the API's: templateid, read) a root disk the template fits on
        where.append(sa.or_(t.root_disk_gb.is_(None), t.root_disk_gb * 2**30 >= args["template_bytes"]))
    for param, column, most in (("cpunumber", t.cpus, t.max_cpus), ("cpuspeed", t.cpu_speed_mhz, None),
                                ("memory", t.memory_mb, t.max_memory_mb)):
        if param in args:
            fixed = column >= args[param]
            where.append(sa.or_(fixed, column == 0) if most is None else
                         sa.or_(fixed, sa.and_(column == 0, sa.or_(most.is_(None), most >= args[param]))))
    return where


SERVICE_OFFERING = Kind(
    "service offering", service_offerings, lambda: sa.select(service_offerings),
    lambda: {"id": service_offerings.c.uuid, "name": service_offerings.c.name,
             "storagetype": service_offerings.c.storage_type},
    conditions=_service_conditions,
)


DISK_OFFERING = Kind(
    "disk offering", disk_offerings, lambda: sa.select(disk_offerings),
    # ("display" is not a parameter: the API adds it for callers who see only displayed offerings)
    lambda: {"id": disk_offerings.c.uuid, "name": disk_offerings.c.name,
             "storagetype": disk_offerings.c.storage_type, "display": disk_offerings.c.display},
    conditions=lambda args: _dedication(disk_offerings, args),
)


@dataclass(frozen=True)
class DiskTuning:
    """How disks of an offering are made and driven (see ``storage/tuning.py``)."""

    provisioning_type: str = "thin"
    cache_mode: str = "none"
    iotune: Mapping[str, int] = field(default_factory=dict)
    storage_type: str = "shared"

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> DiskTuning:
        storage = str(args.get("storagetype", "shared")).lower()
        if storage not in STORAGE_TYPES:
            raise InvalidParameter("storagetype must be shared or local")
        return cls(tuning.provisioning(args.get("provisioningtype", "thin")),
                   tuning.cache_mode(args.get("cachemode", "none")), tuning.iotune_of(args), storage)

    def columns(self) -> dict[str, Any]:
        return {"provisioning_type": self.provisioning_type, "cache_mode": self.cache_mode,
                "iotune": orjson.dumps(dict(self.iotune)).decode(), "storage_type": self.storage_type}


@dataclass(frozen=True)
class ServiceOfferingSpec:
    name: str
    cpus: int  # 0: given at deploy (a custom offering), as are cpu_speed_mhz and memory_mb
    cpu_speed_mhz: int
    memory_mb: int
    display_text: str = ""  # default: the name
    host_tags: tuple[str, ...] = ()
    ha_enabled: bool = False
    min_cpus: int | None = None
    max_cpus: int | None = None
    min_memory_mb: int | None = None
    max_memory_mb: int | None = None
    root_disk_gb: int | None = None
    deployment_planner: str = ""
    limit_cpu_use: bool = False
    is_volatile: bool = False
    network_rate: int | None = None
    disk: DiskTuning = field(default_factory=DiskTuning)
    details: Mapping[str, str] = field(default_factory=dict)
    domain_uuids: tuple[str, ...] = ()  # dedicated to these domains (and their subdomains); (): public
    zone_uuids: tuple[str, ...] = ()  # offered in these zones; (): every zone


@dataclass(frozen=True)
class DiskOfferingSpec:
    name: str
    size_gb: int  # 0: custom (the volume gives its size)
    display_text: str = ""
    tags: tuple[str, ...] = ()
    size_strict: bool = False
    display: bool = True
    disk: DiskTuning = field(default_factory=DiskTuning)
    details: Mapping[str, str] = field(default_factory=dict)
    domain_uuids: tuple[str, ...] = ()
    zone_uuids: tuple[str, ...] = ()


def _check_bounds(spec: ServiceOfferingSpec) -> None:
    for key, value, low in (("cpunumber", spec.cpus, 1), ("cpuspeed", spec.cpu_speed_mhz, 1),
                            ("memory", spec.memory_mb, 32)):
        if value and not low <= value <= MAX_SIZE:
            raise InvalidParameter(f"{key} must be between {low} and {MAX_SIZE}")
    for key, lo, hi, fixed in (("cpunumber", spec.min_cpus, spec.max_cpus, spec.cpus),
                               ("memory", spec.min_memory_mb, spec.max_memory_mb, spec.memory_mb)):
        if (lo is not None or hi is not None) and fixed:
            raise InvalidParameter(f"min{key} and max{key} are for custom offerings (without {key})")
        if lo is not None and hi is not None and lo > hi:
            raise InvalidParameter(f"min{key} is above max{key}")
        for bound in (lo, hi):
            if bound is not None and not 1 <= bound <= MAX_SIZE:
                raise InvalidParameter(f"the bounds of {key} must be between 1 and {MAX_SIZE}")
    if spec.root_disk_gb is not None and not 1 <= spec.root_disk_gb <= MAX_DISK_GB:
        raise InvalidParameter(f"rootdisksize must be between 1 and {MAX_DISK_GB} (GB)")
    if spec.deployment_planner not in PLANNERS and spec.deployment_planner:
        raise InvalidParameter(f"deploymentplanner must be one of {', '.join(PLANNERS)}")
    if spec.network_rate is not None and not -1 <= spec.network_rate <= 1_000_000:
        raise InvalidParameter("networkrate must be between -1 and 1000000 (Mb/s)")


@creates(ServiceOfferingSpec, SERVICE_OFFERING)
def _insert_service_offering(conn: Connection, caller: Caller, spec: ServiceOfferingSpec) -> int:
    _check_bounds(spec)
    return inserted_id(conn.execute(service_offerings.insert().values(
        uuid=new_uuid(), name=spec.name, display_text=spec.display_text or spec.name, cpus=spec.cpus,
        cpu_speed_mhz=spec.cpu_speed_mhz, memory_mb=spec.memory_mb, host_tags=",".join(spec.host_tags),
        ha_enabled=spec.ha_enabled, min_cpus=spec.min_cpus, max_cpus=spec.max_cpus,
        min_memory_mb=spec.min_memory_mb, max_memory_mb=spec.max_memory_mb, root_disk_gb=spec.root_disk_gb,
        deployment_planner=spec.deployment_planner, limit_cpu_use=spec.limit_cpu_use,
        is_volatile=spec.is_volatile, network_rate=spec.network_rate if spec.network_rate != -1 else None,
        details=orjson.dumps(dict(spec.details)).decode(), created=now(), **spec.disk.columns(),
        **dedication(conn, caller, spec.domain_uuids, spec.zone_uuids),
    )))


def _ids(uuids: tuple[str, ...] | list[str]) -> str:
    return f",{','.join(uuids)}," if uuids else ""


def dedication(conn: Connection, caller: Caller, domain_uuids: tuple[str, ...] | list[str],
               zone_uuids: tuple[str, ...] | list[str]) -> dict[str, str]:
    """The columns of an offering dedicated to these domains and zones (checked: they exist, and the
    domains are in the caller's reach)."""
    for ident in domain_uuids:
        domain_in_reach(conn, caller, ident)
    for ident in zone_uuids:
        find(conn, caller, zones, ident, "zone")
    return {"domain_ids": _ids(list(dict.fromkeys(domain_uuids))),
            "zone_ids": _ids(list(dict.fromkeys(zone_uuids)))}


def usable(offering: Any, domain_chain: list[str], zone_uuid: str) -> bool:
    """Whether an account of a domain (``domain_chain``: its uuid and those above) may use the offering
    in that zone."""
    domains_ok = not offering.domain_ids or any(f",{u}," in offering.domain_ids for u in domain_chain)
    return domains_ok and (not offering.zone_ids or f",{zone_uuid}," in offering.zone_ids)


@creates(DiskOfferingSpec, DISK_OFFERING)
def _insert_disk_offering(conn: Connection, caller: Caller, spec: DiskOfferingSpec) -> int:
    if spec.size_gb and not 1 <= spec.size_gb <= MAX_DISK_GB:
        raise InvalidParameter(f"disksize must be between 1 and {MAX_DISK_GB} GB")
    return inserted_id(conn.execute(disk_offerings.insert().values(
        uuid=new_uuid(), name=spec.name, display_text=spec.display_text or spec.name, size_gb=spec.size_gb,
        tags=",".join(spec.tags), size_strict=spec.size_strict, display=spec.display,
        details=orjson.dumps(dict(spec.details)).decode(), created=now(), **spec.disk.columns(),
        **dedication(conn, caller, spec.domain_uuids, spec.zone_uuids),
    )))


def _common_changes(row: Row, args: Filters) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if "sortkey" in args:
        values["sort_key"] = args["sortkey"]
    if "domainid" in args or "zoneid" in args:  # ("public": every domain, or every zone)
        current = {"domain_ids": [u for u in row.domain_ids.split(",") if u],
                   "zone_ids": [u for u in row.zone_ids.split(",") if u]}
        for param, column in (("domainid", "domain_ids"), ("zoneid", "zone_ids")):
            if param in args:
                given = [u.strip() for u in args[param].split(",") if u.strip()]
                current[column] = [] if given == ["public"] else given
        values["_dedication"] = (current["domain_ids"], current["zone_ids"])
    if "name" in args:
        values["name"] = args["name"]
    if "displaytext" in args:
        values["display_text"] = args["displaytext"]
    return values


def _with_dedication(conn: Connection, caller: Caller, values: dict[str, Any]) -> dict[str, Any]:
    if "_dedication" in values:
        domain_uuids, zone_uuids = values.pop("_dedication")
        values.update(dedication(conn, caller, domain_uuids, zone_uuids))
    return values


@updates(SERVICE_OFFERING)
def _service_offering_changes(conn: Connection, row: Row, args: Filters) -> dict[str, Any]:
    """updateServiceOffering: the names, host and storage tags, HA flag, and the domains and zones it is
    for (what CloudStack lets change: VMs of it keep what they were made with)."""
    values = _common_changes(row, args)
    if "storagetags" in args:
        details = orjson.loads(row.details or "{}")
        details["storagetags"] = ",".join(t.strip() for t in args["storagetags"].split(",") if t.strip())
        if not details["storagetags"]:
            del details["storagetags"]
        values["details"] = orjson.dumps(details).decode()
    if "hosttags" in args:
        values["host_tags"] = ",".join(t.strip() for t in args["hosttags"].split(",") if t.strip())
    if "offerha" in args:
        values["ha_enabled"] = args["offerha"]
    return _with_dedication(conn, args["_caller"], values)


@updates(DISK_OFFERING)
def _disk_offering_changes(conn: Connection, row: Row, args: Filters) -> dict[str, Any]:
    """updateDiskOffering: the names, storage tags, whether users see it and the I/O limits and cache
    mode of volumes made from it later."""
    values = _common_changes(row, args)
    if "tags" in args:
        values["tags"] = ",".join(t.strip() for t in args["tags"].split(",") if t.strip())
    if "displayoffering" in args:
        values["display"] = args["displayoffering"]
    if "cachemode" in args:
        values["cache_mode"] = tuning.cache_mode(args["cachemode"])
    if any(p in args for p in tuning.IOTUNE):
        merged = {p: v for p, (element, _) in tuning.IOTUNE.items()
                  if (v := tuning.loads(row.iotune).get(element)) is not None}
        merged.update({p: args[p] for p in tuning.IOTUNE if p in args})
        values["iotune"] = orjson.dumps(tuning.iotune_of(merged)).decode()
    return _with_dedication(conn, args["_caller"], values)


def custom_size(offering: Any, cpus: int | None, speed: int | None, memory: int | None
                ) -> tuple[int, int, int]:
    """The vCPUs, MHz and MiB a VM of ``offering`` gets: the offering's, or for what it leaves open the
    values the deploy gives (``details[0].cpuNumber``, ``cpuSpeed``, ``memory``), within its bounds."""
    out = []
    for key, fixed, given, lo, hi, least in (
            ("cpuNumber", offering.cpus, cpus, offering.min_cpus, offering.max_cpus, 1),
            ("cpuSpeed", offering.cpu_speed_mhz, speed, None, None, 1),
            ("memory", offering.memory_mb, memory, offering.min_memory_mb, offering.max_memory_mb, 32)):
        if fixed:
            if given is not None and given != fixed:
                raise InvalidParameter(f"offering {offering.name} fixes {key} at {fixed}; it is not custom")
            out.append(int(fixed))
            continue
        if given is None:
            raise InvalidParameter(f"offering {offering.name} is custom: give details[0].{key}")
        low, high = lo or least, hi or MAX_SIZE
        if not low <= given <= high:
            raise InvalidParameter(f"{key} must be between {low} and {high} for offering {offering.name}")
        out.append(int(given))
    return out[0], out[1], out[2]
