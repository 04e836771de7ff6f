"""VM rows: allocation (VM, NICs and volumes in one transaction), reading a VM with what it is made of,
and state transitions as conditional UPDATEs. Every function runs in the caller's transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from protocol.messages import SecurityTO

from .. import limits
from ..catalog import Snapshot
from ..db.database import inserted_id
from ..db.schema import (
    affinity_group_vms,
    affinity_groups,
    capacity_reservations,
    disk_offerings,
    instance_groups,
    networks,
    security_group_vms,
    service_offerings,
    templates,
    vms,
    zones,
)
from ..errors import InvalidParameter
from ..network import nics, security
from ..planner import capacity
from ..planner.model import DeploymentPlan, VmProfile
from ..storage import tuning, volumes
from .vm_state import Event, State, next_state, refusal

GiB = 2**30


def now() -> datetime:
    return datetime.now(UTC)


# An offering's deployment planner -> the planner's algorithm for its VMs ("": the cloud's)
PLANNER_ALGORITHMS = {"FirstFitPlanner": "", "UserDispersingPlanner": "userdispersing",
                      "UserConcentratedPodPlanner": "userconcentratedpod"}


@dataclass(frozen=True)
class DeploySpec:
    """What deployVirtualMachine asks for (ids already resolved)."""

    zone_id: int
    service_offering_id: int
    template_id: int
    network_ids: tuple[int, ...]
    account_id: int = 2
    name: str = ""
    display_name: str = ""
    host_id: int = 0  # admins may name the host
    ip_address: str = ""  # for the first network
    root_disk_bytes: int = 0  # 0: the template's size
    disk_offering_id: int = 0  # an extra data disk
    affinity_group_ids: tuple[int, ...] = ()
    ha_enabled: bool | None = None  # None: the offering's
    keypairs: str = ""  # the key pairs' names, comma-separated
    ssh_public_keys: str = ""  # their public keys, one per line
    user_data: str | None = None  # Base64
    user_data_id: int | None = None  # the registered user data it came from
    security_group_ids: tuple[int, ...] = ()
    default_security_group: bool = False  # on a network with security groups and none named: the default
    pod_id: int = 0  # admins may narrow placement to a pod or a cluster
    cluster_id: int = 0
    algorithm: str = ""  # the planner's algorithm for it ("": the offering's planner, or the cloud's)
    cpus: int | None = None  # a custom offering's values for this VM
    cpu_speed_mhz: int | None = None
    memory_mb: int | None = None
    data_disk_gb: int = 0  # a custom disk offering's size
    root_disk_offering_id: int = 0  # overridediskofferingid: the root disk's tuning from this offering
    group_name: str = ""  # its instance group (made when the account has none of that name)
    display: bool = True
    details: str = "{}"  # JSON, as given
    mac_address: str = ""  # the default NIC's
    user_id: int | None = None  # the user who deployed it


def effective(offering: Any, row: Any) -> Any:
    """The offering as it applies to the VM ``row``: a custom offering's open values are the VM's."""
    if getattr(row, "cpus", None) is None and getattr(row, "memory_mb", None) is None \
            and getattr(row, "cpu_speed_mhz", None) is None:
        return offering
    values = dict(offering._mapping) if hasattr(offering, "_mapping") else dict(vars(offering))
    for key in ("cpus", "cpu_speed_mhz", "memory_mb"):
        if getattr(row, key, None) is not None:
            values[key] = getattr(row, key)
    return SimpleNamespace(**values)


@dataclass
class VmRecord:
    """A VM with its offering and template, as the workflows need them."""

    row: Any
    offering: Any
    template: Any
    volumes: list[Any] = field(default_factory=list)
    nics: list[Any] = field(default_factory=list)
    anti_affinity_groups: tuple[int, ...] = ()
    affinity_groups: tuple[int, ...] = ()
    zone_name: str = ""
    security: SecurityTO | None = None  # what its NICs let through (None: not filtered)
    named_groups: tuple[int, ...] | None = None  # its groups that rules name (None: not known)

    @property
    def id(self) -> int:
        return int(self.row.id)

    @property
    def name(self) -> str:
        return str(self.row.instance_name)

    @property
    def state(self) -> State:
        return State(self.row.state)


def allocate(conn: Connection, spec: DeploySpec, *, vm_uuid: str = "",
             catalog: Snapshot | None = None) -> int:
    """The VM row (Stopped), its NICs with addresses and MACs, its root (and data) volume rows; its id.
    The zone, offerings, template and networks are checked in ``catalog`` when given (the catalog the
    request was admitted against), else read."""
    return allocate_record(conn, spec, vm_uuid=vm_uuid, catalog=catalog).id


def allocate_record(conn: Connection, spec: DeploySpec, *, vm_uuid: str = "",
                    catalog: Snapshot | None = None, name_later: bool = False) -> VmRecord:
    """``allocate``, answering with the VM as ``load`` would read it back (built from what was
    written, without reading it). ``name_later``: the caller writes the VM's instance and display
    names (``write_name``, or with its first state change), saving a statement."""
    if catalog is not None:
        zone = catalog.zones.by_id.get(spec.zone_id)
        offering = catalog.service_offerings.by_id.get(spec.service_offering_id)
        template = catalog.templates.by_id.get(spec.template_id)
    else:
        zone = conn.execute(
            sa.select(zones.c.id, zones.c.name).where(zones.c.id == spec.zone_id, zones.c.removed.is_(None))
        ).first()
        offering = conn.execute(
            sa.select(service_offerings).where(
                service_offerings.c.id == spec.service_offering_id, service_offerings.c.removed.is_(None)
            )
        ).first()
        template = conn.execute(
            sa.select(templates).where(templates.c.id == spec.template_id, templates.c.removed.is_(None))
        ).first()
    if zone is None:
        raise InvalidParameter(f"zone {spec.zone_id} does not exist")
    if offering is None:
        raise InvalidParameter(f"service offering {spec.service_offering_id} does not exist")
    if template is None:
        raise InvalidParameter(f"template {spec.template_id} does not exist")
    if template.zone_id is not None and template.zone_id != spec.zone_id:
        raise InvalidParameter(f"template {template.name} is not available in zone {spec.zone_id}")
    if not spec.network_ids:
        raise InvalidParameter("a VM needs at least one network (networkids)")
    network_rows = []
    for network_id in spec.network_ids:
        if catalog is not None:
            network = catalog.networks.by_id.get(network_id)
        else:
            network = conn.execute(
                sa.select(networks).where(networks.c.id == network_id, networks.c.removed.is_(None))
            ).first()
        if network is None or network.zone_id != spec.zone_id:
            raise InvalidParameter(f"network {network_id} does not exist in zone {spec.zone_id}")
        network_rows.append(network)
    root_bytes = spec.root_disk_bytes or template.size_bytes or GiB
    if root_bytes < template.size_bytes:
        raise InvalidParameter(
            f"rootdisksize {root_bytes // GiB} GB is smaller than the template's "
            f"{template.size_bytes // GiB} GB"
        )
    stamp, vm_uuid = now(), vm_uuid or str(uuid.uuid4())
    group_id = instance_group(conn, spec.account_id, spec.group_name, stamp) if spec.group_name else None
    vm_id = int(
        inserted_id(conn.execute(_INSERT, {
            "uuid": vm_uuid,
            "instance_name": f"tmp-{vm_uuid}",
            "display_name": spec.display_name or spec.name or "",
            "name": spec.name or None,
            "state": State.STOPPED,
            "update_count": 0,
            "power_state": "PowerOff",
            "zone_id": spec.zone_id,
            "service_offering_id": offering.id,
            "template_id": template.id,
            "account_id": spec.account_id,
            "ha_enabled": offering.ha_enabled if spec.ha_enabled is None else spec.ha_enabled,
            "keypairs": spec.keypairs,
            "ssh_public_keys": spec.ssh_public_keys,
            "user_data": spec.user_data,
            "user_data_id": spec.user_data_id,
            "cpus": spec.cpus,
            "cpu_speed_mhz": spec.cpu_speed_mhz,
            "memory_mb": spec.memory_mb,
            "group_id": group_id,
            "user_id": spec.user_id,
            "display": spec.display,
            "details": spec.details,
            "created": stamp,
            "state_changed": stamp,
        }))
    )
    name = f"i-{spec.account_id}-{vm_id}-VM"
    if not name_later:
        conn.execute(_NAME, {"vm": vm_id, "instance_name": name,
                             "display_name": spec.display_name or spec.name or name})
    row = SimpleNamespace(
        id=vm_id, uuid=vm_uuid, instance_name=name, display_name=spec.display_name or spec.name or name,
        name=spec.name or None, state=State.STOPPED, update_count=0, power_state="PowerOff",
        zone_id=spec.zone_id, service_offering_id=offering.id, template_id=template.id,
        account_id=spec.account_id, host_id=None, last_host_id=None, created=stamp, state_changed=stamp,
        removed=None, keypairs=spec.keypairs, ssh_public_keys=spec.ssh_public_keys, user_data=spec.user_data,
        user_data_id=spec.user_data_id, cpus=spec.cpus, cpu_speed_mhz=spec.cpu_speed_mhz,
        memory_mb=spec.memory_mb, group_id=group_id, user_id=spec.user_id, display=spec.display,
        details=spec.details,
    )
    offering = effective(offering, row)
    made_nics, made_volumes = [], []
    for device, network in enumerate(network_rows):
        nic = nics.allocate(
            conn,
            vm_id,
            network.id,
            device,
            requested_ip=spec.ip_address if device == 0 else "",
            is_default=device == 0,
            network=network,
            ranges=catalog.ranges.get(network.id, []) if catalog is not None else None,
            requested_mac=spec.mac_address if device == 0 else "",
        )
        made_nics.append(SimpleNamespace(
            id=nic.nic_id, uuid=nic.uuid, vm_id=vm_id, network_id=network.id, device_id=device,
            ip_address=nic.ip, mac_address=nic.mac, is_default=nic.is_default, state="Allocated",
            gateway=network.gateway, netmask=network.netmask, dns1=network.dns1, dns2=network.dns2,
            vlan=network.vlan, bridge=network.bridge, network_name=network.name, vni=None,
        ))

    def volume(name: str, kind: str, size: int, **values: Any) -> None:
        volume_uuid = str(uuid.uuid4())
        volume_id = volumes.allocate(conn, vm_id, name, kind, size, spec.account_id, stamp,
                                     volume_uuid=volume_uuid, **values)
        made_volumes.append(SimpleNamespace(
            id=volume_id, uuid=volume_uuid, name=name, vm_id=vm_id, type=kind, state=volumes.ALLOCATED,
            update_count=0, zone_id=None, created=stamp, removed=None,
            size_bytes=size, path="", device_id=values.get("device_id", 0), pool_id=None,
            template_id=values.get("template_id"), disk_offering_id=values.get("disk_offering_id"),
            account_id=spec.account_id, pool_uuid=None, pool_path=None, pool_scope=None, pool_cluster=None,
            pool_host=None, provisioning_type=values.get("provisioning_type", "thin"),
            cache_mode=values.get("cache_mode", "none"), iotune=values.get("iotune", "{}"), display=True,
        ))

    def disk_offering(offering_id: int) -> Any:
        if catalog is not None:
            found = catalog.disk_offerings.by_id.get(offering_id)
        else:
            found = conn.execute(sa.select(disk_offerings).where(
                disk_offerings.c.id == offering_id, disk_offerings.c.removed.is_(None))).first()
        if found is None:
            raise InvalidParameter(f"disk offering {offering_id} does not exist")
        return found

    root_tuning = disk_offering(spec.root_disk_offering_id) if spec.root_disk_offering_id else offering
    volume(f"ROOT-{vm_id}", "ROOT", root_bytes, template_id=template.id, **tuning.columns_of(root_tuning))
    if spec.disk_offering_id:
        data = disk_offering(spec.disk_offering_id)
        size_gb = data.size_gb or spec.data_disk_gb
        if not size_gb:
            raise InvalidParameter(f"disk offering {data.name} is custom: give size (GB)")
        volume(f"DATA-{vm_id}", "DATADISK", size_gb * GiB, disk_offering_id=spec.disk_offering_id,
               device_id=1, **tuning.columns_of(data))
    for group_id in spec.affinity_group_ids:
        group = conn.execute(
            sa.select(affinity_groups).where(
                affinity_groups.c.id == group_id, affinity_groups.c.removed.is_(None)
            )
        ).first()
        if group is None or group.account_id != spec.account_id:
            raise InvalidParameter(f"affinity group {group_id} does not exist")
        conn.execute(affinity_group_vms.insert().values(group_id=group_id, vm_id=vm_id))
    group_ids = list(spec.security_group_ids)
    if spec.default_security_group:
        group_ids.append(security.default_group(conn, spec.account_id))
    if group_ids:
        conn.execute(security_group_vms.insert(),
                     [{"group_id": g, "vm_id": vm_id} for g in dict.fromkeys(group_ids)])
    group_ids = list(dict.fromkeys(group_ids))
    return VmRecord(row, offering, template, made_volumes, made_nics, zone_name=zone.name,
                    security=security.security_to(conn, vm_id, group_ids) if group_ids else None,
                    named_groups=tuple(security.groups_named_by_rules(conn, vm_id, group_ids)))


def deploy_profile(conn: Connection | None, spec: DeploySpec, catalog: Snapshot | None = None,
                   ) -> tuple[VmProfile, DeploymentPlan, tuple[int, ...]] | None:
    """What the planner needs to place a VM not allocated yet (admit plans before it writes): its
    profile, where it is asked for, and its anti-affinity groups; None for unknown ids (``allocate``
    refuses them, naming them). From ``catalog`` when given; ``conn`` may then be None unless the VM
    joins affinity groups."""
    if catalog is not None:
        offering = catalog.service_offerings.by_id.get(spec.service_offering_id)
        template = catalog.templates.by_id.get(spec.template_id)
        disk_offering = catalog.disk_offerings.by_id.get(spec.disk_offering_id)
    else:
        assert conn is not None
        offering = conn.execute(sa.select(service_offerings).where(
            service_offerings.c.id == spec.service_offering_id)).first()
        template = conn.execute(sa.select(templates).where(templates.c.id == spec.template_id)).first()
        disk_offering = conn.execute(sa.select(disk_offerings).where(
            disk_offerings.c.id == spec.disk_offering_id)).first() if spec.disk_offering_id else None
    if offering is None or template is None:
        return None
    offering = effective(offering, spec)
    data_gb = (disk_offering.size_gb or spec.data_disk_gb) if disk_offering is not None else 0
    disk = (spec.root_disk_bytes or template.size_bytes or GiB) + data_gb * GiB
    anti: tuple[int, ...] = ()
    affine: tuple[int, ...] = ()
    if spec.affinity_group_ids:
        assert conn is not None
        groups = conn.execute(sa.select(affinity_groups.c.id, affinity_groups.c.type).where(
            affinity_groups.c.id.in_(spec.affinity_group_ids))).all()
        anti = tuple(g.id for g in groups if g.type == "host anti-affinity")
        affine = tuple(g.id for g in groups if g.type == "host affinity")
    profile = profile_of(
        offering, template, disk_bytes=disk, template_bytes=template.size_bytes, account_id=spec.account_id,
        anti_affinity_hosts=group_hosts(conn, anti, 0) if conn is not None else frozenset(),
        affinity_hosts=group_hosts(conn, affine, 0) if conn is not None else frozenset(),
        data_tags=disk_offering.tags if disk_offering is not None else "", algorithm=spec.algorithm,
    )
    plan = DeploymentPlan(spec.zone_id, pod_id=spec.pod_id, cluster_id=spec.cluster_id, host_id=spec.host_id)
    return profile, plan, anti


def storage_tags(offering: Any) -> frozenset[str]:
    """The pool tags a service offering asks for its root disk (kept in its details)."""
    text = getattr(offering, "details", "") or ""
    if "storagetags" not in text:  # (most offerings have none: no parse on the deploy path)
        return frozenset()
    details = orjson.loads(text)
    tags = details.get("storagetags", "") if isinstance(details, dict) else ""
    return frozenset(t for t in str(tags).split(",") if t)


def profile_of(offering: Any, template: Any, *, disk_bytes: int, template_bytes: int, account_id: int,
               vm_id: int = 0, anti_affinity_hosts: frozenset[int] = frozenset(),
               affinity_hosts: frozenset[int] = frozenset(), data_tags: str = "",
               algorithm: str = "") -> VmProfile:
    """The planner's view of a VM of this offering and template (a new one, or one being started;
    ``data_tags``: the pool tags of its data disk's offering, which goes on the same pool)."""
    return VmProfile(
        pool_tags=storage_tags(offering) | frozenset(t for t in data_tags.split(",") if t),
        local_storage=getattr(offering, "storage_type", "shared") == "local",
        algorithm=algorithm or PLANNER_ALGORITHMS.get(getattr(offering, "deployment_planner", ""), ""),
        cpus=offering.cpus,
        cpu_speed_mhz=offering.cpu_speed_mhz,
        memory_bytes=offering.memory_mb * 2**20,
        hypervisor_type=template.hypervisor_type,
        host_tags=frozenset(t for t in offering.host_tags.split(",") if t),
        disk_bytes=disk_bytes,
        template_id=template.id,
        template_bytes=template_bytes,
        account_id=account_id,
        vm_id=vm_id,
        anti_affinity_hosts=anti_affinity_hosts,
        affinity_hosts=affinity_hosts,
    )


def instance_group(conn: Connection, account_id: int, name: str, stamp: Any) -> int:
    """The id of the account's instance group of that name, made when it has none."""
    if not 1 <= len(name) <= 255:
        raise InvalidParameter("group must have 1 to 255 characters")
    found = conn.scalar(sa.select(instance_groups.c.id).where(
        instance_groups.c.account_id == account_id, instance_groups.c.name == name,
        instance_groups.c.removed.is_(None)).order_by(instance_groups.c.id).limit(1))
    if found is not None:
        return int(found)
    return int(inserted_id(conn.execute(instance_groups.insert().values(
        uuid=str(uuid.uuid4()), name=name, account_id=account_id, created=stamp))))


def load(conn: Connection, vm_id: int) -> VmRecord:
    row = conn.execute(sa.select(vms).where(vms.c.id == vm_id, vms.c.removed.is_(None))).first()
    if row is None:
        raise InvalidParameter(f"VM {vm_id} does not exist")
    offering = effective(conn.execute(
        sa.select(service_offerings).where(service_offerings.c.id == row.service_offering_id)
    ).one(), row)
    template = conn.execute(sa.select(templates).where(templates.c.id == row.template_id)).one()
    groups = conn.execute(
        sa.select(affinity_groups.c.id, affinity_groups.c.type)
        .join(affinity_group_vms, affinity_group_vms.c.group_id == affinity_groups.c.id)
        .where(affinity_group_vms.c.vm_id == vm_id)
    ).all()
    return VmRecord(
        row,
        offering,
        template,
        volumes.of_vm(conn, vm_id),
        nics.of_vm(conn, vm_id),
        tuple(g.id for g in groups if g.type == "host anti-affinity"),
        tuple(g.id for g in groups if g.type == "host affinity"),
        conn.scalar(sa.select(zones.c.name).where(zones.c.id == row.zone_id)) or "",
        security.security_to(conn, vm_id),
    )


def group_hosts(conn: Connection, group_ids: tuple[int, ...], vm_id: int) -> frozenset[int]:
    """Hosts where the other members of these groups hold running capacity."""
    if not group_ids:
        return frozenset()
    member = sa.select(affinity_group_vms.c.vm_id).where(affinity_group_vms.c.group_id.in_(group_ids))
    return frozenset(
        conn.scalars(
            sa.select(capacity_reservations.c.host_id).where(
                capacity_reservations.c.vm_id.in_(member),
                capacity_reservations.c.vm_id != vm_id,
                capacity_reservations.c.state == "Allocated",
            )
        )
    )


def account_hosts(conn: Connection, account_id: int) -> dict[int, int]:
    """How many of the account's VMs each host runs."""
    rows = conn.execute(
        sa.select(vms.c.host_id, sa.func.count())
        .where(vms.c.account_id == account_id, vms.c.host_id.is_not(None), vms.c.removed.is_(None))
        .group_by(vms.c.host_id)
    )
    return {host_id: count for host_id, count in rows}


def write_name(conn: Connection, vm: VmRecord) -> None:
    """Write the names of a VM made with ``allocate_record(name_later=True)``."""
    conn.execute(_NAME, {"vm": vm.id, "instance_name": vm.name, "display_name": vm.row.display_name})


# Statements built once, values passed at execution (see services/events.py).
_INSERT = vms.insert()
_NAME = vms.update().where(vms.c.id == sa.bindparam("vm"))
_CURRENT = sa.select(vms.c.state, vms.c.update_count, vms.c.instance_name).where(
    vms.c.id == sa.bindparam("vm"), vms.c.removed.is_(None))
_MOVE = vms.update().where(vms.c.id == sa.bindparam("vm"), vms.c.state == sa.bindparam("was"),
                           vms.c.update_count == sa.bindparam("count"))


def transition(conn: Connection, /, vm_id: int, event: Event, *, known: tuple[State, int, str] | None = None,
               **values: Any) -> State:
    """Apply ``event`` (and ``values``) to the VM in one conditional UPDATE; the new state. Raises
    InvalidParameter when the VM's state does not take the event or another writer moved it first.
    ``known``: the VM's state, update count and name, when the caller made it in this transaction."""
    row = Known(*known) if known is not None else conn.execute(_CURRENT, {"vm": vm_id}).first()
    if row is None:
        raise InvalidParameter(f"VM {vm_id} does not exist")
    state = State(row.state)
    new = next_state(state, event)
    if new is None:
        raise InvalidParameter(refusal(row.instance_name, state, event))
    changed = conn.execute(_MOVE, {"vm": vm_id, "was": row.state, "count": row.update_count, "state": new,
                                   "update_count": row.update_count + 1, "state_changed": now(),
                                   **values}).rowcount
    if changed != 1:
        raise InvalidParameter(f"VM {row.instance_name} changed while this request ran; try again")
    return new


@dataclass(frozen=True)
class Known:
    state: str
    update_count: int
    instance_name: str


def change_offering(conn: Connection, vm_id: int, offering_id: int,
                    custom: tuple[int, int, int] | None = None) -> Any:
    """Give a Stopped VM another service offering (``custom``: a custom offering's vCPUs, MHz and MiB
    for it). A hold on its last host was sized for the old one: it is released (the row released is
    returned, None when there was none)."""
    row = conn.execute(sa.select(vms).where(vms.c.id == vm_id, vms.c.removed.is_(None))).one()
    if row.state != State.STOPPED:
        raise InvalidParameter(
            f"VM {row.instance_name} is {row.state}; its service offering changes only when it is Stopped"
        )
    released = capacity.release_compute(conn, vm_id)
    changed = conn.execute(
        vms.update()
        .where(vms.c.id == vm_id, vms.c.update_count == row.update_count)
        .values(service_offering_id=offering_id, update_count=row.update_count + 1,
                cpus=custom[0] if custom else None, cpu_speed_mhz=custom[1] if custom else None,
                memory_mb=custom[2] if custom else None)
    ).rowcount
    if changed != 1:
        raise InvalidParameter(f"VM {row.instance_name} changed while this request ran; try again")
    limits.verify(conn, row.account_id, (limits.T.CPU, limits.T.MEMORY))  # (a refusal rolls it back)
    return released


def update_details(conn: Connection, /, vm_id: int, **values: Any) -> None:
    """Name, display name, HA flag: what changes without touching the guest."""
    if values:
        conn.execute(vms.update().where(vms.c.id == vm_id).values(**values))
