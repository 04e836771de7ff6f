"""Service offerings (the CPU and memory a VM gets) and disk offerings (the size of a data disk), each
declared once as a ``crud.Kind``. A deleted offering is marked removed; what was made from it keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db.database import inserted_id
from ..db.schema import disk_offerings, service_offerings, vms
from ..errors import InvalidParameter
from .caller import Caller
from .crud import Filters, Kind, creates
from .queries import new_uuid, now

MAX_SIZE = 1_048_576  # vCPUs, MHz and MiB an offering may ask for, at most


def _other_than_the_vms(args: Filters) -> list[Any]:
    """With ``virtualmachineid``: the offerings that VM could change to (every other one)."""
    if "virtualmachineid" not in args:
        return []
    current = sa.select(vms.c.service_offering_id).where(vms.c.uuid == args["virtualmachineid"])
    return [service_offerings.c.id.not_in(current)]


SERVICE_OFFERING = Kind(
    "service offering", service_offerings, lambda: sa.select(service_offerings),
    lambda: {"id": service_offerings.c.uuid, "name": service_offerings.c.name},
    conditions=_other_than_the_vms,
)
DISK_OFFERING = Kind(
    "disk offering", disk_offerings, lambda: sa.select(disk_offerings),
    lambda: {"id": disk_offerings.c.uuid, "name": disk_offerings.c.name},
)


@dataclass(frozen=True)
class ServiceOfferingSpec:
    name: str
    cpus: int
    cpu_speed_mhz: int
    memory_mb: int
    display_text: str = ""  # default: the name
    host_tags: tuple[str, ...] = ()
    ha_enabled: bool = False


@dataclass(frozen=True)
class DiskOfferingSpec:
    name: str
    size_gb: int
    display_text: str = ""
    tags: tuple[str, ...] = ()


@creates(ServiceOfferingSpec, SERVICE_OFFERING)
def _insert_service_offering(conn: Connection, caller: Caller, spec: ServiceOfferingSpec) -> int:
    for key, value, low in (("cpunumber", spec.cpus, 1), ("cpuspeed", spec.cpu_speed_mhz, 1),
                            ("memory", spec.memory_mb, 32)):
        if not low <= value <= MAX_SIZE:
            raise InvalidParameter(f"{key} must be between {low} and {MAX_SIZE}")
    return inserted_id(conn.execute(service_offerings.insert().values(
        uuid=new_uuid(), name=spec.name, display_text=spec.display_text or spec.name, cpus=spec.cpus,
        cpu_speed_mhz=spec.cpu_speed_mhz, memory_mb=spec.memory_mb, host_tags=",".join(spec.host_tags),
        ha_enabled=spec.ha_enabled, created=now(),
    )))


@creates(DiskOfferingSpec, DISK_OFFERING)
def _insert_disk_offering(conn: Connection, caller: Caller, spec: DiskOfferingSpec) -> int:
    if not 1 <= spec.size_gb <= 65536:
        raise InvalidParameter("disksize must be given, between 1 and 65536 GB")
    return inserted_id(conn.execute(disk_offerings.insert().values(
        uuid=new_uuid(), name=spec.name, display_text=spec.display_text or spec.name, size_gb=spec.size_gb,
        tags=",".join(spec.tags), created=now(),
    )))
