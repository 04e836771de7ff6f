"""Virtual machines as callers see them: deploy (resolve what the request names, plan, admit, then act
and settle as a job), the lifecycle operations on one VM, and its details.

A deploy resolves zones, offerings, templates and networks against the catalog (no read at all unless
it names an account, a host or affinity groups, or a weigher needs the account's VMs), plans on the
event loop, and hands the job two pieces: ``admit``, which writes the VM's rows and its reservation in
the job's own insert transaction, and ``run``, the start that follows (docs/orchestration.md).
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
import trio
from sqlalchemy.engine import Connection

from ..catalog import Snapshot
from ..db.schema import (
    accounts,
    affinity_group_vms,
    affinity_groups,
    clusters,
    domains,
    hosts,
    instance_groups,
    networks,
    nics,
    pods,
    projects,
    security_group_vms,
    security_groups,
    service_offerings,
    storage_pools,
    templates,
    user_data,
    users,
    vms,
    volumes,
    zones,
)
from ..errors import InvalidParameter, PermissionDenied
from ..orchestration import vms as vm_rows
from ..orchestration.configdrive import PASSWORD_DETAIL
from ..orchestration.engine import Scope
from ..orchestration.vm_state import State
from ..orchestration.vms import DeploySpec
from . import domains as domain_rows
from . import guest_data, offerings
from .caller import Caller
from .crud import Filters, Row
from .metrics import Latency
from .queries import acting_for, fetch, find, keyword, matching, now, owner_filter, uuids
from .settings import scoped_value
from .tags import tagged
from .templates import os_type_ids

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..db.database import Database
    from ..jobs.runner import JobRunner
    from ..orchestration.engine import Orchestrator


GIB = 2**30
VM_STATES = frozenset(s.value for s in State)


@dataclass(frozen=True)
class DeployRequest:
    """What deployVirtualMachine names, parsed but not resolved: uuids and names as given."""

    zone_uuid: str
    service_offering_uuid: str
    template_uuid: str
    network_uuids: tuple[str, ...] = ()
    ip_to_network: tuple[tuple[str, str], ...] = ()  # (network uuid, address or "")
    ip_address: str = ""
    start: bool = True
    host_uuid: str = ""  # admins only
    root_disk_gb: int = 0
    disk_offering_uuid: str = ""
    affinity_group_uuids: tuple[str, ...] = ()
    affinity_group_names: tuple[str, ...] = ()
    account_name: str = ""  # deploy for this account (admins)
    domain_uuid: str = ""
    project_uuid: str = ""  # deploy for this project (a member, or an admin above it)
    name: str = ""
    display_name: str = ""
    keypairs: tuple[str, ...] = ()  # SSH key pairs' names, in the VM's account
    user_data: str | None = None  # Base64, checked
    user_data_uuid: str = ""  # registered user data
    security_group_uuids: tuple[str, ...] = ()
    security_group_names: tuple[str, ...] = ()
    pod_uuid: str = ""  # admins: place it in this pod, or cluster
    cluster_uuid: str = ""
    deployment_planner: str = ""  # admins: the planner for this deploy (offerings.PLANNERS)
    details: tuple[tuple[str, str], ...] = ()  # kept with the VM; cpuNumber, cpuSpeed, memory, rootdisksize
    group: str = ""  # the instance group's name (made when the account has none of that name)
    display: bool = True
    mac_address: str = ""  # the default NIC's
    size_gb: int = 0  # a custom disk offering's data disk size
    override_disk_offering_uuid: str = ""  # the root disk's tuning from this disk offering
    hypervisor: str = ""  # checked against the template's
    password: str | None = None  # a password-enabled template's guest password (None: one is made)
    custom_id: str = ""  # root admins: the VM's uuid

    @property
    def needs_database(self) -> bool:
        """Whether it names something the catalog does not hold."""
        return bool(self.account_name or self.project_uuid or self.host_uuid or self.affinity_group_uuids
                    or self.affinity_group_names or self.keypairs or self.user_data_uuid
                    or self.pod_uuid or self.cluster_uuid or self.custom_id)


@dataclass
class Deployment:
    """An admitted deploy's two halves, for the job that carries it."""

    vm_uuid: str
    name: str
    admit: Callable[[Connection], int]  # in the job's insert transaction: the VM's rows; its id
    run: Callable[[], Awaitable[int]]  # the job: start it (when asked); the VM's id
    password: str | None = None  # a password-enabled template's guest password (the deploy shows it once)


class NotInCatalog(InvalidParameter):
    """An id the catalog does not hold."""


def _in_catalog(table: Any, ident: str, kind: str) -> Any:
    """``find`` for a catalog table: the live row with uuid ``ident`` (not owned by accounts)."""
    row = table.by_uuid.get(ident)
    if row is None:
        raise NotInCatalog(f"unable to find {kind} with id {ident}")
    return row


def _usable_network(catalog: Snapshot, ident: str, account_id: int) -> Any:
    """A network the VM's account may have a NIC on: a shared one or its own isolated one (another
    account's is, to it, like a missing one)."""
    network = catalog.networks.by_uuid.get(ident)
    if network is None or (network.account_id is not None and network.account_id != account_id):
        raise NotInCatalog(f"unable to find network with id {ident}")
    return network


def _resolve(conn: Connection | None, caller: Caller, request: DeployRequest,
             catalog: Snapshot) -> DeploySpec:
    """The deploy's ids, checked. Zones, offerings, templates and networks come from the catalog;
    ``conn`` is needed (not None) only for what it has not (``DeployRequest.needs_database``)."""
    zone = _in_catalog(catalog.zones, request.zone_uuid, "zone")
    offering = _in_catalog(catalog.service_offerings, request.service_offering_uuid, "service offering")
    template = _in_catalog(catalog.templates, request.template_uuid, "template")
    account_id = (acting_for(conn, caller, request.account_name, request.domain_uuid,
                             request.project_uuid) if conn is not None
                  else int(caller.account_id))
    if not template.public and not caller.is_admin and (template.account_id or 1) not in (caller.account_id,
                                                                                         account_id):
        raise PermissionDenied(f"unable to find or access template {request.template_uuid}")
    data_offering = catalog.disk_offerings.by_uuid.get(request.disk_offering_uuid) \
        if request.disk_offering_uuid else None
    for used in (offering, data_offering):
        if used is not None and (used.domain_ids or used.zone_ids):  # dedicated: to the account's domain?
            assert conn is not None
            chain = domain_rows.chain(conn, _domain_path(conn, account_id))
            if not offerings.usable(used, chain, zone.uuid):
                raise InvalidParameter(f"offering {used.name} is not for this account's domain or zone "
                                       f"{zone.name}")
    ip = request.ip_address
    network_ids = [_usable_network(catalog, n, account_id).id for n in request.network_uuids]
    for network_uuid, address in request.ip_to_network:
        network = _usable_network(catalog, network_uuid, account_id)
        if network.id not in network_ids:
            network_ids.append(network.id)
        if address and network.id == network_ids[0]:
            ip = address
    if request.hypervisor and request.hypervisor.lower() != str(template.hypervisor_type).lower():
        raise InvalidParameter(f"hypervisor {request.hypervisor} does not match template {template.name}'s "
                               f"({template.hypervisor_type})")
    pod_id, cluster_id, algorithm = _scope(conn, caller, zone.id, request.pod_uuid, request.cluster_uuid,
                                           request.deployment_planner)
    if offering.storage_type == "local" and not zone.local_storage:
        raise InvalidParameter(f"offering {offering.name} wants local storage; zone {zone.name} has it off")
    details = dict(request.details)
    sizes = {k: _whole(details[k], k) for k in ("cpuNumber", "cpuSpeed", "memory") if k in details}
    cpus, speed, memory = offerings.custom_size(offering, sizes.get("cpuNumber"), sizes.get("cpuSpeed"),
                                                sizes.get("memory"))
    custom = (cpus, speed, memory) != (offering.cpus, offering.cpu_speed_mhz, offering.memory_mb)
    root_gb = request.root_disk_gb or (_whole(details["rootdisksize"], "rootdisksize")
                                       if "rootdisksize" in details else 0) or (offering.root_disk_gb or 0)
    password = request.password
    if password is not None and not template.password_enabled:
        raise InvalidParameter(f"template {template.name} is not password enabled: it takes no password")
    if template.password_enabled:
        password = password or secrets.token_urlsafe(9)
        if not 6 <= len(password) <= 64:
            raise InvalidParameter("password must have 6 to 64 characters")
        details[PASSWORD_DETAIL] = password
    if not network_ids:  # CloudStack picks the zone's network when there is exactly one
        found = catalog.zone_networks.get(zone.id, [])
        if len(found) != 1:
            raise InvalidParameter(f"zone {zone.name} has {len(found)} networks: give networkids")
        network_ids = list(found)
    if len(set(network_ids)) != len(network_ids):
        raise InvalidParameter("networkids names a network twice")
    host_id = 0
    if request.host_uuid:
        if not caller.is_admin:
            raise PermissionDenied("only admins may choose the host")
        assert conn is not None
        host_id = find(conn, caller, hosts, request.host_uuid, "host").id
    disk_offering_id = data_gb = override_id = 0
    if request.disk_offering_uuid:
        data = _in_catalog(catalog.disk_offerings, request.disk_offering_uuid, "disk offering")
        disk_offering_id = data.id
        if data.size_gb and request.size_gb and request.size_gb != data.size_gb:
            raise InvalidParameter(f"disk offering {data.name} has a fixed size: give size only for a custom "
                                   "offering")
        if not data.size_gb:
            if not 1 <= request.size_gb <= offerings.MAX_DISK_GB:
                raise InvalidParameter(f"disk offering {data.name} is custom: give size, 1 to "
                                       f"{offerings.MAX_DISK_GB} (GB)")
            data_gb = request.size_gb
    elif request.size_gb:
        raise InvalidParameter("size is the data disk's: give it with a custom diskofferingid")
    if request.override_disk_offering_uuid:
        if "diskofferingstrictness" in (offering.details or ""):
            raise InvalidParameter(f"offering {offering.name} keeps its root disk offering (strictness)")
        override_id = _in_catalog(catalog.disk_offerings, request.override_disk_offering_uuid,
                                  "disk offering").id
    group_ids = []
    for ident in request.affinity_group_uuids:
        assert conn is not None
        group_ids.append(find(conn, caller, affinity_groups, ident, "affinity group", owned=True).id)
    for name in request.affinity_group_names:
        assert conn is not None
        found_id = conn.scalar(
            sa.select(affinity_groups.c.id).where(
                affinity_groups.c.name == name,
                affinity_groups.c.account_id == account_id,
                affinity_groups.c.removed.is_(None),
            )
        )
        if found_id is None:
            raise InvalidParameter(f"unable to find affinity group {name!r}")
        group_ids.append(found_id)
    keypair_names, public_keys = "", ""
    if request.keypairs:
        assert conn is not None
        keypair_names, public_keys = guest_data.keys_for(conn, account_id, list(request.keypairs))
    text, user_data_id = request.user_data, None
    if request.user_data_uuid:
        if text is not None:
            raise InvalidParameter("give userdata or userdataid, not both")
        assert conn is not None
        registered = guest_data.owned_user_data(conn, caller, request.user_data_uuid, account_id)
        text, user_data_id = registered.user_data, registered.id
        if "userdatadetails" in details:
            _check_user_data_details(orjson.loads(details["userdatadetails"]), registered.params or "")
    elif "userdatadetails" in details:
        raise InvalidParameter("userdatadetails are the values of a registered user data's parameters: "
                               "give userdataid")
    network_offerings = [catalog.network_offerings.by_id.get(catalog.networks.by_id[n].network_offering_id)
                         for n in network_ids]
    # a network with security groups
    filtered = any(o is not None and o.security_groups for o in network_offerings)
    security_group_ids: list[int] = []
    wants_default = False
    if request.security_group_uuids or request.security_group_names:
        if not filtered:
            raise InvalidParameter("security groups apply only to VMs on a network with security groups "
                                   "(DefaultSharedNetworkOfferingWithSGService)")
        for ident in request.security_group_uuids:  # the catalog holds the groups: no read
            group = catalog.security_groups.by_uuid.get(ident)
            if group is None or group.account_id != account_id:
                raise InvalidParameter(f"unable to find security group with id {ident}")
            security_group_ids.append(group.id)
        for name in request.security_group_names:
            if name == "default":  # made, if need be, with the VM
                wants_default = True
                continue
            named = catalog.group_names.get((account_id, name))
            if named is None:
                raise InvalidParameter(f"unable to find security group {name!r}")
            security_group_ids.append(named)
    return DeploySpec(
        security_group_ids=tuple(dict.fromkeys(security_group_ids)),
        default_security_group=wants_default or (filtered and not security_group_ids),
        keypairs=keypair_names,
        ssh_public_keys=public_keys,
        user_data=text,
        user_data_id=user_data_id,
        zone_id=zone.id,
        service_offering_id=offering.id,
        template_id=template.id,
        network_ids=tuple(network_ids),
        account_id=account_id,
        name=request.name,
        display_name=request.display_name,
        host_id=host_id,
        ip_address=ip,
        root_disk_bytes=root_gb * GIB,
        disk_offering_id=disk_offering_id,
        affinity_group_ids=tuple(dict.fromkeys(group_ids)),
        pod_id=pod_id,
        cluster_id=cluster_id,
        algorithm=algorithm,
        cpus=cpus if custom else None,
        cpu_speed_mhz=speed if custom else None,
        memory_mb=memory if custom else None,
        data_disk_gb=data_gb,
        root_disk_offering_id=override_id,
        group_name=request.group,
        display=request.display,
        details=orjson.dumps(details).decode(),
        mac_address=request.mac_address,
        user_id=caller.user_id or None,
    )


HIDDEN_DETAILS = frozenset({PASSWORD_DETAIL})


def _domain_path(conn: Connection, account_id: int) -> str:
    return str(conn.scalar(sa.select(domains.c.path).join(accounts, accounts.c.domain_id == domains.c.id)
                           .where(accounts.c.id == account_id)) or "/")


def _whole(text: str, key: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidParameter(f"details {key} must be a whole number, not {text!r}") from None


def _scope(conn: Connection | None, caller: Caller, zone_id: int, pod_uuid: str, cluster_uuid: str,
           planner: str) -> tuple[int, int, str]:
    """The pod, cluster and planner algorithm an admin's deploy or start asks for (0, 0, "": any)."""
    if (pod_uuid or cluster_uuid or planner) and not caller.is_admin:
        raise PermissionDenied("only root admins may choose the pod, cluster or deployment planner")
    pod_id = cluster_id = 0
    if pod_uuid:
        assert conn is not None
        pod = find(conn, caller, pods, pod_uuid, "pod")
        if zone_id and pod.zone_id != zone_id:
            raise InvalidParameter(f"pod {pod.name} is not in the VM's zone")
        pod_id = pod.id
    if cluster_uuid:
        assert conn is not None
        cluster = find(conn, caller, clusters, cluster_uuid, "cluster")
        if (zone_id and cluster.zone_id != zone_id) or (pod_id and cluster.pod_id != pod_id):
            raise InvalidParameter(f"cluster {cluster.name} is not in the VM's zone and pod")
        cluster_id = cluster.id
    if planner and planner not in offerings.PLANNERS:
        raise InvalidParameter(f"deploymentplanner must be one of {', '.join(offerings.PLANNERS)}")
    return pod_id, cluster_id, offerings.PLANNERS.get(planner, "")


def _resolve_and_profile(conn: Connection | None, caller: Caller, request: DeployRequest, spread: bool,
                         catalog: Snapshot) -> tuple[DeploySpec, Any]:
    """The deploy's ids and, to start it, what the planner needs (at most one read; ``spread``: the
    account's VMs per host too, for the weighers that use them)."""
    spec = _resolve(conn, caller, request, catalog)
    if not request.start:
        return spec, None
    planned = vm_rows.deploy_profile(conn, spec, catalog)
    if planned is None:
        return spec, None
    spread_counts = vm_rows.account_hosts(conn, spec.account_id) if spread and conn is not None else None
    return spec, (*planned, spread_counts)


def _host_uuid(conn: Connection, host_id: int) -> str | None:
    return conn.scalar(sa.select(hosts.c.uuid).where(hosts.c.id == host_id))


# --- what lists show ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VmListing:
    """A VM with its zone, host, template, offering and owner, its live NICs (with their networks) and
    its affinity groups."""

    row: Row
    nics: list[Row]
    groups: list[Row]
    security_groups: list[Row] = field(default_factory=list)


def _query() -> sa.Select[Any]:
    return (
        sa.select(
            # (user data is read by getVirtualMachineUserData alone; a custom offering's values are the VM's)
            *[c for c in vms.c if c.name not in ("user_data", "cpus", "cpu_speed_mhz", "memory_mb")],
            user_data.c.uuid.label("user_data_uuid"),
            user_data.c.name.label("user_data_name"),
            zones.c.uuid.label("zone_uuid"),
            zones.c.name.label("zone_name"),
            hosts.c.uuid.label("host_uuid"),
            hosts.c.name.label("host_name"),
            hosts.c.hypervisor_type.label("host_hypervisor"),
            templates.c.uuid.label("template_uuid"),
            templates.c.name.label("template_name"),
            templates.c.display_text.label("template_text"),
            templates.c.hypervisor_type.label("template_hypervisor"),
            service_offerings.c.uuid.label("offering_uuid"),
            service_offerings.c.name.label("offering_name"),
            sa.func.coalesce(vms.c.cpus, service_offerings.c.cpus).label("cpus"),
            sa.func.coalesce(vms.c.cpu_speed_mhz, service_offerings.c.cpu_speed_mhz).label("cpu_speed_mhz"),
            sa.func.coalesce(vms.c.memory_mb, service_offerings.c.memory_mb).label("memory_mb"),
            users.c.uuid.label("user_uuid"),
            users.c.username.label("user_name"),
            instance_groups.c.uuid.label("group_uuid"),
            instance_groups.c.name.label("group_name"),
            accounts.c.name.label("account_name"),
            domains.c.uuid.label("domain_uuid"),
            domains.c.name.label("domain_name"),
            projects.c.uuid.label("project_uuid"),
            projects.c.name.label("project_name"),
        )
        .join(zones, zones.c.id == vms.c.zone_id)
        .outerjoin(hosts, hosts.c.id == vms.c.host_id)
        .join(templates, templates.c.id == vms.c.template_id)
        .join(service_offerings, service_offerings.c.id == vms.c.service_offering_id)
        .join(accounts, accounts.c.id == vms.c.account_id)
        .join(domains, domains.c.id == accounts.c.domain_id)
        .outerjoin(user_data, user_data.c.id == vms.c.user_data_id)
        .outerjoin(instance_groups, instance_groups.c.id == vms.c.group_id)
        .outerjoin(users, users.c.id == vms.c.user_id)
        .outerjoin(projects, projects.c.account_id == vms.c.account_id)
    )


# Built once, values passed at execution: a VM's listing is read after every job.
_ONE = _query().where(vms.c.id == sa.bindparam("vm"))
_NICS = (
    sa.select(nics, networks.c.uuid.label("network_uuid"), networks.c.name.label("network_name"),
              networks.c.gateway, networks.c.netmask, networks.c.vlan)
    .join(networks, networks.c.id == nics.c.network_id)
    .where(nics.c.vm_id.in_(sa.bindparam("vms", expanding=True)), nics.c.state != "Released")
    .order_by(nics.c.device_id)
)
_GROUPS = (
    sa.select(affinity_group_vms.c.vm_id, affinity_groups)
    .join(affinity_groups, affinity_groups.c.id == affinity_group_vms.c.group_id)
    .where(affinity_group_vms.c.vm_id.in_(sa.bindparam("vms", expanding=True)))
)


_SECURITY_GROUPS = (
    sa.select(security_group_vms.c.vm_id, security_groups)
    .join(security_groups, security_groups.c.id == security_group_vms.c.group_id)
    .where(security_group_vms.c.vm_id.in_(sa.bindparam("vms", expanding=True)))
    .order_by(security_groups.c.id)
)


def _listings(conn: Connection, rows: list[Row]) -> list[VmListing]:
    ids = [r.id for r in rows]
    nics_of: dict[int, list[Row]] = {i: [] for i in ids}
    groups_of: dict[int, list[Row]] = {i: [] for i in ids}
    security_of: dict[int, list[Row]] = {i: [] for i in ids}
    if ids:
        for n in conn.execute(_NICS, {"vms": ids}):
            nics_of[n.vm_id].append(n)
        for g in conn.execute(_GROUPS, {"vms": ids}):
            groups_of[g.vm_id].append(g)
        for g in conn.execute(_SECURITY_GROUPS, {"vms": ids}):
            security_of[g.vm_id].append(g)
    return [VmListing(r, nics_of[r.id], groups_of[r.id], security_of[r.id]) for r in rows]


def _listing(conn: Connection, vm_id: int) -> VmListing:
    return _listings(conn, [conn.execute(_ONE, {"vm": vm_id}).one()])[0]


def _list(conn: Connection, caller: Caller, args: Filters) -> tuple[list[VmListing], int]:
    where = [vms.c.removed.is_(None), *owner_filter(conn, caller, args, vms.c.account_id)]
    if "keyword" in args:
        where.append(
            sa.or_(
                *keyword(vms.c.display_name, args),
                *keyword(vms.c.name, args),
                *keyword(vms.c.instance_name, args),
            )
        )
    if "name" in args:
        where.append(sa.or_(vms.c.name == args["name"], vms.c.display_name == args["name"]))
    ids = uuids(args, "ids") + ([args["id"]] if "id" in args else [])
    if ids:
        where.append(vms.c.uuid.in_(ids))
    where += matching(
        args,
        {
            "state": vms.c.state,
            "zoneid": zones.c.uuid,
            "templateid": templates.c.uuid,
            "serviceofferingid": service_offerings.c.uuid,
        },
    )
    if "hostid" in args:
        if not caller.is_admin:
            raise PermissionDenied("only admins may list VMs by host")
        where.append(hosts.c.uuid == args["hostid"])
    if "networkid" in args:
        on_network = (
            sa.select(nics.c.vm_id)
            .join(networks, networks.c.id == nics.c.network_id)
            .where(networks.c.uuid == args["networkid"], nics.c.state != "Released")
        )
        where.append(vms.c.id.in_(on_network))
    if "affinitygroupid" in args:
        member = (
            sa.select(affinity_group_vms.c.vm_id)
            .join(affinity_groups, affinity_groups.c.id == affinity_group_vms.c.group_id)
            .where(affinity_groups.c.uuid == args["affinitygroupid"])
        )
        where.append(vms.c.id.in_(member))
    where += _more_filters(caller, args)
    rows, total = fetch(conn, _query().where(*where), vms.c.id, args)
    return _listings(conn, rows), total


_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
# details that are not free-form: a custom offering's sizes (changed with changeServiceForVirtualMachine)
# and the guest's password
_KEPT_DETAILS = frozenset({"cpuNumber", "cpuSpeed", "memory", PASSWORD_DETAIL})


def _check_user_data_details(values: dict[str, str], params: str) -> None:
    declared = {p.strip() for p in params.split(",") if p.strip()}
    unknown = set(values) - declared
    if unknown:
        raise InvalidParameter(f"userdatadetails names parameters the user data does not declare: "
                               f"{', '.join(sorted(unknown))}")


def _user_data_params(conn: Connection, vm_id: int) -> str | None:
    return conn.scalar(sa.select(user_data.c.params).join(vms, vms.c.user_data_id == user_data.c.id)
                       .where(vms.c.id == vm_id))


def _update_vm(conn: Connection, caller: Caller, vm_id: int, values: dict[str, Any], group: str | None,
               group_uuids: list[str] | None, group_names: list[str] | None) -> None:
    row = conn.execute(sa.select(vms).where(vms.c.id == vm_id)).one()
    if "uuid" in values and conn.scalar(sa.select(vms.c.id).where(vms.c.uuid == values["uuid"])):
        raise InvalidParameter(f"the id {values['uuid']} is taken")
    if "instance_name" in values and conn.scalar(sa.select(vms.c.id).where(
            vms.c.instance_name == values["instance_name"], vms.c.id != vm_id)):
        raise InvalidParameter(f"the instance name {values['instance_name']} is taken")
    if group is not None:
        values["group_id"] = vm_rows.instance_group(conn, row.account_id, group, now()) if group else None
    if group_uuids is not None or group_names is not None:
        wanted = [find(conn, caller, security_groups, g, "security group", owned=True).id
                  for g in group_uuids or []]
        for name in group_names or []:
            found = conn.scalar(sa.select(security_groups.c.id).where(
                security_groups.c.account_id == row.account_id, security_groups.c.name == name,
                security_groups.c.removed.is_(None)))
            if found is None:
                raise InvalidParameter(f"unable to find security group {name!r}")
            wanted.append(found)
        if not conn.scalar(sa.select(security_group_vms.c.vm_id).where(security_group_vms.c.vm_id == vm_id)):
            raise InvalidParameter("security groups apply only to VMs on a network with security groups")
        conn.execute(security_group_vms.delete().where(security_group_vms.c.vm_id == vm_id))
        conn.execute(security_group_vms.insert(), [{"group_id": g, "vm_id": vm_id}
                                                   for g in dict.fromkeys(wanted)])
    vm_rows.update_details(conn, vm_id, **values)


def _more_filters(caller: Caller, args: Filters) -> list[Any]:
    """listVirtualMachines' other filters: where it runs, its flags, groups, keys, networks, storage."""
    where: list[Any] = tagged(args, "UserVm", vms.c.uuid)
    for param, column in (("podid", hosts.c.pod_id), ("clusterid", hosts.c.cluster_id)):
        if param in args:
            if not caller.is_admin:
                raise PermissionDenied(f"only admins may list VMs by {param[:-2]}")
            table = pods if param == "podid" else clusters
            where.append(column == sa.select(table.c.id).where(table.c.uuid == args[param]).scalar_subquery())
    if "userid" in args:
        where.append(users.c.uuid == args["userid"])
    if "displayvm" in args:
        where.append(vms.c.display.is_(args["displayvm"]))
    if "haenable" in args:
        where.append(vms.c.ha_enabled.is_(args["haenable"]))
    if "groupid" in args:
        where.append(instance_groups.c.uuid == args["groupid"])
    if "hypervisor" in args:
        hypervisor = sa.func.coalesce(hosts.c.hypervisor_type, templates.c.hypervisor_type)
        where.append(hypervisor == args["hypervisor"])
    if "keypair" in args:
        name = args["keypair"]
        where.append(sa.or_(vms.c.keypairs == name, vms.c.keypairs.startswith(name + ",", autoescape=True),
                            vms.c.keypairs.endswith("," + name, autoescape=True),
                            vms.c.keypairs.contains("," + name + ",", autoescape=True)))
    if "securitygroupid" in args:
        members = (sa.select(security_group_vms.c.vm_id)
                   .join(security_groups, security_groups.c.id == security_group_vms.c.group_id)
                   .where(security_groups.c.uuid == args["securitygroupid"]))
        where.append(vms.c.id.in_(members))
    if "storageid" in args:
        where.append(vms.c.id.in_(sa.select(volumes.c.vm_id).join(storage_pools, storage_pools.c.id
                                                                   == volumes.c.pool_id)
                                  .where(storage_pools.c.uuid == args["storageid"],
                                         volumes.c.removed.is_(None))))
    if "forvirtualnetwork" in args:  # on an isolated (CloudStack's "virtual") network, or on shared ones
        isolated = (sa.select(nics.c.vm_id).join(networks, networks.c.id == nics.c.network_id)
                    .where(nics.c.is_default.is_(True), networks.c.guest_type == "Isolated"))
        where.append(vms.c.id.in_(isolated) if args["forvirtualnetwork"] else vms.c.id.not_in(isolated))
    return where


def _user_data_of(conn: Connection, vm_id: int) -> str | None:
    return conn.scalar(sa.select(vms.c.user_data).where(vms.c.id == vm_id))


def _reset_keys(conn: Connection, vm_id: int, account_id: int, names: list[str]) -> None:
    names_kept, keys = guest_data.keys_for(conn, account_id, names)
    row = conn.execute(sa.select(vms.c.state, vms.c.instance_name).where(vms.c.id == vm_id)).one()
    if row.state != State.STOPPED:
        raise InvalidParameter(
            f"VM {row.instance_name} is {row.state}; its SSH keys are reset only when it is Stopped"
        )
    changed = conn.execute(
        vms.update().where(vms.c.id == vm_id, vms.c.state == State.STOPPED)
        .values(keypairs=names_kept, ssh_public_keys=keys)
    ).rowcount
    if changed != 1:
        raise InvalidParameter(f"VM {row.instance_name} changed while this request ran; try again")


class VirtualMachines:
    def __init__(self, db: Database, orchestrator: Orchestrator, catalog: Catalog, jobs: JobRunner) -> None:
        self.db, self.orchestrator, self.catalog, self.jobs = db, orchestrator, catalog, jobs
        self.deploy_latency = Latency()  # from a deploy's job start to its VM running (for metrics)

    async def listing(self, vm_id: int) -> VmListing:
        """The VM as lists show it (removed ones too: ``row.removed`` says so)."""
        return await self.db.read(_listing, vm_id)

    async def matching(self, caller: Caller, args: Filters) -> tuple[list[VmListing], int]:
        """One page of the VMs ``args`` asks for that the caller may see, and the total."""
        return await self.db.read(_list, caller, args)

    async def find(self, caller: Caller, ident: str) -> Row:
        """The VM's row, when the caller may see it (another account's is like a missing one)."""
        return await self.db.read(find, caller, vms, ident, "virtual machine", owned=True)

    async def deploy(self, caller: Caller, request: DeployRequest) -> Deployment:
        """Resolve and plan a deploy; its admission and run, for one job to carry."""
        orchestrator = self.orchestrator
        catalog = await self.catalog.current()
        offering = catalog.service_offerings.by_uuid.get(request.service_offering_uuid)
        algorithm = offerings.PLANNERS.get(request.deployment_planner or (
            offering.deployment_planner if offering is not None else ""), "")
        spread = orchestrator.placement.settings.needs_counts(algorithm)
        data = catalog.disk_offerings.by_uuid.get(request.disk_offering_uuid)
        dedicated = any(o is not None and (o.domain_ids or o.zone_ids) for o in (offering, data))
        for fresh in (False, True):
            try:
                if spread or request.needs_database or dedicated:
                    spec, planned = await self.db.read(_resolve_and_profile, caller, request, spread, catalog)
                else:  # everything it names is in the catalog: no read at all
                    spec, planned = _resolve_and_profile(None, caller, request, False, catalog)
                break
            except NotInCatalog:
                # Several servers: what a peer made a moment ago reaches this catalog through the change
                # journal, within a fraction of a second; an id it does not know is looked for afresh.
                if fresh or not self.catalog.shared:
                    raise
                catalog = await self.catalog.current(fresh=True)
        tentative = orchestrator.tentative(*planned) if planned is not None else None
        vm_uuid = request.custom_id or str(uuid.uuid4())
        admitted: list[Any] = []

        def admit(conn: Connection) -> int:
            vm_id, admission = orchestrator.admit(conn, spec, vm_uuid, tentative, catalog)
            admitted[:] = [vm_id, admission]
            return int(vm_id)

        async def run() -> int:
            vm_id, admission = admitted
            if request.start:
                began = trio.current_time()
                await orchestrator.first_start(vm_id, host_id=spec.host_id, admission=admission,
                                               scope=Scope(spec.pod_id, spec.cluster_id))
                self.deploy_latency.observe(trio.current_time() - began)
            return int(vm_id)

        password = orjson.loads(spec.details).get(PASSWORD_DETAIL) if PASSWORD_DETAIL in spec.details \
            else None
        return Deployment(vm_uuid, spec.name or vm_uuid, admit, run, password)

    async def _host_id(self, caller: Caller, host_uuid: str) -> int:
        return int((await self.db.read(find, caller, hosts, host_uuid, "host")).id) if host_uuid else 0

    async def start(self, caller: Caller, vm_id: int, host_uuid: str = "", *, pod_uuid: str = "",
                    cluster_uuid: str = "", last_host: bool = True, planner: str = "") -> None:
        """Start it (on ``host_uuid``, or in ``pod_uuid`` or ``cluster_uuid``, when an admin names one;
        with ``last_host``, on the host it last ran on when that one has room)."""
        if host_uuid and not caller.is_admin:
            raise PermissionDenied("only admins may choose the host")
        host_id = await self._host_id(caller, host_uuid)
        pod_id, cluster_id, algorithm = 0, 0, ""
        if pod_uuid or cluster_uuid or planner:
            pod_id, cluster_id, algorithm = await self.db.read(_scope, caller, 0, pod_uuid, cluster_uuid,
                                                               planner)
        await self.orchestrator.start(vm_id, host_id=host_id, scope=Scope(pod_id, cluster_id, algorithm),
                                      last_host=last_host)

    async def stop(self, vm_id: int, *, forced: bool = False) -> None:
        await self.orchestrator.stop(vm_id, forced=forced)

    async def reboot(self, vm_id: int) -> None:
        await self.orchestrator.reboot(vm_id)

    async def may_expunge_or_recover(self, caller: Caller, what: str) -> None:
        """Admins may; a user when allow.user.expunge.recover.vm is true for its account (CloudStack's)."""
        allowed: object = caller.manages_accounts or await self.db.read(
            scoped_value, "allow.user.expunge.recover.vm", "Account", caller.account_id)
        if allowed:
            return
        raise PermissionDenied(f"users may not {what} VMs here (allow.user.expunge.recover.vm is false for "
                               "their account)")

    async def destroy(self, caller: Caller, vm_id: int, *, expunge: bool = False) -> None:
        if expunge:
            await self.may_expunge_or_recover(caller, "expunge")
        await self.orchestrator.destroy(vm_id, expunge=expunge)

    def _not_busy(self, vm: Row) -> None:
        if self.jobs.busy("VirtualMachine", vm.id):
            raise InvalidParameter(f"VM {vm.uuid} is busy with a job; try again when it ends")

    async def recover(self, vm: Row) -> None:
        self._not_busy(vm)
        await self.orchestrator.recover(vm.id)

    async def expunge(self, vm_id: int) -> None:
        await self.orchestrator.expunge(vm_id)

    async def migrate(self, caller: Caller, vm_id: int, host_uuid: str = "") -> None:
        await self.orchestrator.migrate(vm_id, host_id=await self._host_id(caller, host_uuid))

    async def console_log(self, vm_id: int, lines: int) -> tuple[str, str | None]:
        """The last ``lines`` of its console and the uuid of the host they came from."""
        text, host_id = await self.orchestrator.console_log(vm_id, lines)
        host_uuid = await self.db.read(_host_uuid, host_id) if host_id is not None else None
        return text, host_uuid

    async def update(self, caller: Caller, vm: Row, *, name: str | None = None,
                     display_name: str | None = None, ha_enabled: bool | None = None,
                     user_data: str | None = None, user_data_uuid: str = "", group: str | None = None,
                     display: bool | None = None, details: dict[str, str] | None = None,
                     cleanup_details: bool = False, user_data_details: dict[str, str] | None = None,
                     os_type_uuid: str = "", instance_name: str = "", custom_id: str = "",
                     security_group_uuids: list[str] | None = None,
                     security_group_names: list[str] | None = None) -> list[str]:
        """Change its details; the names of those changed (as columns). New user data reaches the guest
        when it next starts (its config drive is made then), as do a new OS type and security groups."""
        values: dict[str, Any] = {}
        if user_data is not None and user_data_uuid:
            raise InvalidParameter("give userdata or userdataid, not both")
        if user_data is not None:
            values.update(user_data=guest_data.check_user_data(user_data), user_data_id=None)
        registered = None
        if user_data_uuid:
            registered = await self.db.read(guest_data.owned_user_data, caller, user_data_uuid, vm.account_id)
            values.update(user_data=registered.user_data, user_data_id=registered.id)
        stopped_only = [k for k, v in (("name", name), ("instancename", instance_name),
                                       ("ostypeid", os_type_uuid),
                                       ("securitygroupids", security_group_uuids),
                                       ("securitygroupnames", security_group_names)) if v]
        if stopped_only and vm.state != State.STOPPED:
            raise InvalidParameter(
                f"VM {vm.uuid} is {vm.state}; its {', '.join(stopped_only)} change only when it is Stopped")
        if name is not None:
            values["name"] = name
        if display_name is not None:
            values["display_name"] = display_name
        if ha_enabled is not None:
            values["ha_enabled"] = ha_enabled
        if display is not None:
            values["display"] = display
        if instance_name:
            if not _INSTANCE_NAME.match(instance_name):
                raise InvalidParameter("instancename: letters, digits, '-' and '_', at most 63 characters")
            values["instance_name"] = instance_name
        if custom_id:
            values["uuid"] = custom_id
        kept = orjson.loads(vm.details or "{}")
        if cleanup_details:
            kept = {k: v for k, v in kept.items() if k in _KEPT_DETAILS}
        if details is not None:
            kept.update({k: v for k, v in details.items() if k not in _KEPT_DETAILS})
        if os_type_uuid:
            if os_type_uuid not in os_type_ids():
                raise InvalidParameter(f"unable to find OS type {os_type_uuid}")
            kept["guest.os.type"] = os_type_uuid
        if user_data_details is not None:
            params = (registered.params if registered is not None else
                      await self.db.read(_user_data_params, vm.id)) or ""
            _check_user_data_details(user_data_details, params)
            kept["userdatadetails"] = orjson.dumps(user_data_details).decode()
        if cleanup_details or details is not None or os_type_uuid or user_data_details is not None:
            values["details"] = orjson.dumps(kept).decode()
        await self.db.run(_update_vm, caller, vm.id, values, group, security_group_uuids,
                          security_group_names)
        groups_changed = security_group_uuids is not None or security_group_names is not None
        return list(values) + (["group"] if group is not None else []) + (
            ["securitygroups"] if groups_changed else [])

    async def user_data(self, vm: Row) -> str | None:
        """Its user data (Base64), None when it has none."""
        return await self.db.read(_user_data_of, vm.id)

    async def reset_keys(self, vm: Row, names: list[str]) -> None:
        """Give a stopped VM these key pairs' public keys (its guest gets them when it next starts); run
        as the VM's job."""
        await self.db.run(_reset_keys, vm.id, vm.account_id, names)

    async def change_offering(self, caller: Caller, vm: Row, offering_uuid: str,
                              details: dict[str, str] | None = None) -> Row:
        """Give a stopped VM another service offering (a custom one sized by ``details``' cpuNumber,
        cpuSpeed and memory); the offering's row."""
        offering = await self.db.read(find, caller, service_offerings, offering_uuid, "service offering")
        self._not_busy(vm)
        given = details or {}
        sizes = {k: _whole(given[k], k) for k in ("cpuNumber", "cpuSpeed", "memory") if k in given}
        cpus, speed, memory = offerings.custom_size(offering, sizes.get("cpuNumber"), sizes.get("cpuSpeed"),
                                                    sizes.get("memory"))
        custom = (cpus, speed, memory) != (offering.cpus, offering.cpu_speed_mhz, offering.memory_mb)
        await self.db.run(vm_rows.change_offering, vm.id, offering.id,
                          (cpus, speed, memory) if custom else None)
        return offering
